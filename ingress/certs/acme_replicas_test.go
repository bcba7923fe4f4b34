package certs

import (
	"context"
	"crypto/tls"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/sessions/redisstore"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// TestACMEPebbleReplicas: two replicas on one Redis ask for the same
// certificate at once; Pebble sees one account and one order. The CA's
// validation reaches the replica that did not order (a load balancer
// sends it anywhere), which answers from the shared store. Both serve
// the one certificate, and so does a third replica started later on an
// empty data dir, without asking the CA.
func TestACMEPebbleReplicas(t *testing.T) {
	requirePebble(t)
	ctx := t.Context()
	const name = "replicas.ioproxy.test"
	httpLn, tlsLn := listen(t), listen(t)
	peb := startPebble(t, port(httpLn), port(tlsLn), serveDNS(t))
	srv := redistest.Start(t, redistest.Options{})
	keys, err := sealed.ParseKeys([]string{sealed.Generate()})
	if err != nil {
		t.Fatal(err)
	}

	var orderer atomic.Int32 // 1 + the index of the replica that took the issuance lock first
	newReplica := func(i int) *Manager {
		store, err := redisstore.Open(ctx, redisstore.Config{URL: srv.URL(), Prefix: "acme-replicas:", Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close() })
		m, err := New(ctx, Config{
			DataDir: t.TempDir(),
			TLS:     config.TLS{ACME: config.ACME{Email: "ops@ioproxy.test", Directory: peb.directory, CAFile: peb.caFile}},
			Hosts:   []config.Host{host(name, config.TLSACME)},
			Logger:  testLogger(t),
			Store:   lockSpy{Store: store, took: func() { orderer.CompareAndSwap(0, int32(i+1)) }},
		})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	ms := []*Manager{newReplica(0), newReplica(1)}

	// The load balancer: validations go to the replica that is not
	// ordering; other handshakes to either.
	var answered [2]atomic.Int32
	other := func() int { return int(orderer.Load()) % 2 } // orderer 1 → replica 1, 2 → replica 0
	tlsCfg := ms[0].TLSConfig()
	tlsCfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		i := other()
		if wantsChallengeCert(hello) {
			answered[i].Add(1)
		}
		return ms[i].TLSConfig().GetCertificate(hello)
	}
	serveTLSOn(t, tlsLn, tlsCfg, nil)
	serveHTTP(t, httpLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms[other()].HTTPHandler(nil).ServeHTTP(w, r)
	}))

	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			m.Prefetch(pctx)
		})
	}
	wg.Wait()
	requests := peb.settled()
	if n := peb.calls("POST /order-plz"); n != 1 {
		t.Errorf("%d orders from two replicas, want 1\npebble output:\n%s", n, peb.output())
	}
	if n := peb.calls("POST /sign-me-up"); n != 1 {
		t.Errorf("%d ACME accounts made by two replicas, want 1", n)
	}
	o := orderer.Load()
	if o == 0 {
		t.Fatal("no replica took the issuance lock")
	}
	if n := answered[other()].Load(); n == 0 {
		t.Errorf("no validation reached replica %d, the one that did not order", other())
	}
	t.Logf("replica %d ordered; replica %d answered %d validations", o-1, other(), answered[other()].Load())

	roots := pool(t, peb.root(ctx, t))
	serials := map[string]bool{}
	for _, m := range append(ms, newReplica(2)) {
		addr := serveTLS(t, m.TLSConfig(), nil)
		leaf, err := handshake(ctx, addr, name, roots, time.Time{})
		if err != nil {
			t.Fatalf("handshake: %v\npebble output:\n%s", err, peb.output())
		}
		serials[leaf.SerialNumber.String()] = true
	}
	if len(serials) != 1 {
		t.Errorf("the replicas serve %d certificates, want one: %v", len(serials), serials)
	}
	if n := peb.requests(); n != requests {
		t.Errorf("the third replica made %d requests to Pebble, want none: the certificate is in the store", n-requests)
	}
}

// lockSpy reports the first issuance lock its replica takes.
type lockSpy struct {
	Store
	took func()
}

func (s lockSpy) Lock(ctx context.Context, name string, lease time.Duration) (func(), error) {
	release, err := s.Store.Lock(ctx, name, lease)
	if err == nil && !strings.HasSuffix(name, accountKey) {
		s.took()
	}
	return release, err
}
