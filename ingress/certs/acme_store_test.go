package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/ioproxy/ioproxy/internal/clocktest"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// replicaCaches returns two caches over one store, as two replicas on
// one Redis have: the bbolt store's locks are in-process, and both caches
// are in this process. They share the clock.
func replicaCaches(t *testing.T) (a, b *storeCache, clk *clocktest.Clock) {
	t.Helper()
	clk = clocktest.New(time.Now())
	store, err := boltstore.Open(boltstore.Config{
		Path:    filepath.Join(t.TempDir(), "data", "ioproxy.db"),
		Options: sessions.Options{Now: clk.Now},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	const dir = "https://acme.test/dir"
	log := slog.New(slog.DiscardHandler)
	return newStoreCache(store, dir, clk.Now, log), newStoreCache(store, dir, clk.Now, log), clk
}

// certData is a certificate as autocert stores it: key, then chain.
func certData(t *testing.T, notBefore, notAfter time.Time) []byte {
	t.Helper()
	certPEM, keyPEM := newTestCA(t, "acme test CA").issue(t, []string{"a.test"}, leafOpts{notBefore: notBefore, notAfter: notAfter})
	return append(keyPEM, certPEM...)
}

// getAsync runs c.Get in the background.
func getAsync(c *storeCache, key string) <-chan getResult {
	out := make(chan getResult, 1)
	go func() {
		data, err := c.Get(context.Background(), key)
		out <- getResult{data, err}
	}()
	return out
}

type getResult struct {
	data []byte
	err  error
}

// stillWaiting fails the test when r has an answer already. A Get that
// wrongly did not wait answers at once; one that waits never fails this.
func stillWaiting(t *testing.T, r <-chan getResult, what string) {
	t.Helper()
	select {
	case got := <-r:
		t.Fatalf("%s: Get returned %q, %v while the other replica orders; want it to wait", what, got.data, got.err)
	case <-time.After(50 * time.Millisecond):
	}
}

func answer(t *testing.T, r <-chan getResult) getResult {
	t.Helper()
	select {
	case got := <-r:
		return got
	case <-time.After(10 * time.Second):
		t.Fatal("Get still waits after 10 s")
		return getResult{}
	}
}

// TestStoreCacheOneOrder: the replica that finds no certificate orders
// it; another that asks meanwhile is told so at once (its handshake
// waits outside autocert, see TestStoreCacheDoesNotBlockAutocert), and
// reads what the first stored. The account key's readers wait.
func TestStoreCacheOneOrder(t *testing.T) {
	ctx := t.Context()
	a, b, clk := replicaCaches(t)
	issued := certData(t, clk.Now().Add(-time.Hour), clk.Now().Add(89*24*time.Hour))
	for _, key := range []string{"a.test", "a.test+rsa"} {
		if _, err := a.Get(ctx, key); !errors.Is(err, autocert.ErrCacheMiss) || !a.holds(key) {
			t.Fatalf("%s: first Get = %v, holds %v; want a miss and the lock", key, err, a.holds(key))
		}
		// Another handshake on the same replica does not wait for itself.
		if _, err := a.Get(ctx, key); !errors.Is(err, autocert.ErrCacheMiss) {
			t.Fatalf("%s: the holder's second Get = %v, want a miss", key, err)
		}
		if _, err := b.Get(ctx, key); !errors.Is(err, errIssuingElsewhere) || b.holds(key) {
			t.Fatalf("%s: Get while the other replica orders = %v, holds %v; want errIssuingElsewhere", key, err, b.holds(key))
		}
		if err := a.Put(ctx, key, issued); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Get(ctx, key); err != nil || string(got) != string(issued) || a.holds(key) || b.holds(key) {
			t.Errorf("%s: after the Put: %v, holds %v/%v; want the stored certificate, no lock", key, err, a.holds(key), b.holds(key))
		}
	}
	// The account key: read under autocert's client lock only, so the
	// reader waits, and finds the other's key.
	if _, err := a.Get(ctx, accountKey); !errors.Is(err, autocert.ErrCacheMiss) || !a.holds(accountKey) {
		t.Fatalf("account key: %v, holds %v", err, a.holds(accountKey))
	}
	if _, err := a.Get(ctx, legacyAccountKey); !errors.Is(err, autocert.ErrCacheMiss) || a.holds(legacyAccountKey) {
		t.Errorf("the legacy account key name: %v, holds %v; want a miss and no lock", err, a.holds(legacyAccountKey))
	}
	waiting := getAsync(b, accountKey)
	stillWaiting(t, waiting, "account key")
	if err := a.Put(ctx, accountKey, []byte("account")); err != nil {
		t.Fatal(err)
	}
	if got := answer(t, waiting); got.err != nil || string(got.data) != "account" || b.holds(accountKey) {
		t.Errorf("the waiting replica got %q, %v; want the other's account key", got.data, got.err)
	}
}

// TestStoreCacheOrderEnds: when autocert's call that took the lock ends
// without a Put (the order failed), the lock goes at once, and the next
// replica to ask orders.
func TestStoreCacheOrderEnds(t *testing.T) {
	a, b, _ := replicaCaches(t)
	call, end := context.WithCancel(t.Context())
	if _, err := a.Get(call, "a.test"); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Fatal(err)
	}
	end()
	deadline := time.Now().Add(5 * time.Second)
	for a.holds("a.test") {
		if time.Now().After(deadline) {
			t.Fatal("the lock is held after the call that took it ended")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := b.Get(t.Context(), "a.test"); !errors.Is(err, autocert.ErrCacheMiss) || !b.holds("a.test") {
		t.Errorf("after the first order ended: %v, holds %v; want a miss and the lock", err, b.holds("a.test"))
	}
}

// TestStoreCacheLeaseLapses: a replica that died mid-order holds the
// lock no longer than issueLease.
func TestStoreCacheLeaseLapses(t *testing.T) {
	ctx := t.Context()
	a, b, clk := replicaCaches(t)
	if _, err := a.Get(ctx, "a.test"); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Fatal(err)
	}
	clk.Add(issueLease + time.Second)
	if a.holds("a.test") {
		t.Error("a lapsed lease is still held")
	}
	if _, err := b.Get(ctx, "a.test"); !errors.Is(err, autocert.ErrCacheMiss) || !b.holds("a.test") {
		t.Errorf("after the lease lapsed: %v, holds %v; want a miss and the lock", err, b.holds("a.test"))
	}
}

// TestStoreCacheRenewal: a certificate in its last third of life is
// renewed by one replica. A replica that serves it already (its renewal
// reads) waits for the renewed one; one that reads it for a handshake
// serves it as it is meanwhile.
func TestStoreCacheRenewal(t *testing.T) {
	ctx := t.Context()
	a, b, clk := replicaCaches(t)
	now := clk.Now()
	fresh := certData(t, now.Add(-time.Hour), now.Add(89*24*time.Hour))
	due := certData(t, now.Add(-80*24*time.Hour), now.Add(10*24*time.Hour))
	if err := a.Put(ctx, "a.test", fresh); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*storeCache{a, b} {
		if got, err := c.Get(ctx, "a.test"); err != nil || string(got) != string(fresh) || c.holds("a.test") {
			t.Fatalf("a fresh certificate: %v, holds %v; want it, and no lock", err, c.holds("a.test"))
		}
	}
	if err := a.Put(ctx, "a.test", due); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Get(ctx, "a.test"); err != nil || string(got) != string(due) || !a.holds("a.test") {
		t.Fatalf("a certificate due for renewal: %v, holds %v; want it, and the lock to renew", err, a.holds("a.test"))
	}
	c := newStoreCache(a.store, "https://acme.test/dir", clk.Now, slog.New(slog.DiscardHandler))
	if got, err := c.Get(ctx, "a.test"); err != nil || string(got) != string(due) || c.holds("a.test") {
		t.Errorf("a handshake's read while another replica renews: %v, holds %v; want the valid certificate as it is", err, c.holds("a.test"))
	}
	waiting := getAsync(b, "a.test") // b serves it: this is b's renewal
	stillWaiting(t, waiting, "renewal")
	renewed := certData(t, now, now.Add(90*24*time.Hour))
	if err := a.Put(ctx, "a.test", renewed); err != nil {
		t.Fatal(err)
	}
	if got := answer(t, waiting); got.err != nil || string(got.data) != string(renewed) || b.holds("a.test") {
		t.Errorf("b's renewal: %v, holds %v; want the renewed certificate, no order", got.err, b.holds("a.test"))
	}

	// Not valid on this clock, or not parsing: ordered anew, under the
	// lock (autocert treats both as missing).
	for key, data := range map[string][]byte{
		"b.test": []byte("garbage"),
		"c.test": certData(t, now.Add(time.Hour), now.Add(90*24*time.Hour)),
	} {
		if err := a.Put(ctx, key, data); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Get(ctx, key); err != nil || !c.holds(key) {
			t.Errorf("%s: %v, holds %v; want the lock to order anew", key, err, c.holds(key))
		}
	}
}

// TestStoreCacheDoesNotBlockAutocert: autocert reads the cache under a
// lock that every handshake needs, so while another replica orders one
// name, handshakes for the others go on (found in review: a read that
// waited froze the replica's TLS).
func TestStoreCacheDoesNotBlockAutocert(t *testing.T) {
	ctx := t.Context()
	a, b, clk := replicaCaches(t)
	if err := a.Put(ctx, "a.test", certData(t, clk.Now().Add(-time.Hour), clk.Now().Add(89*24*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, "b.test"); err != nil && !errors.Is(err, autocert.ErrCacheMiss) {
		t.Fatal(err) // replica a orders b.test
	}
	m := &autocert.Manager{Prompt: autocert.AcceptTOS, Cache: b, HostPolicy: autocert.HostWhitelist("a.test", "b.test")}
	hello := func(name string) *tls.ClientHelloInfo {
		return &tls.ClientHelloInfo{ServerName: name, SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
			SupportedCurves: []tls.CurveID{tls.CurveP256}, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}
	}
	done := make(chan error, 2)
	go func() { _, err := m.GetCertificate(hello("b.test")); done <- err }()
	go func() { _, err := m.GetCertificate(hello("a.test")); done <- err }()
	for range 2 {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, errIssuingElsewhere) {
				t.Errorf("GetCertificate: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a handshake is blocked behind another replica's order")
		}
	}
	if _, err := m.GetCertificate(hello("b.test")); !errors.Is(err, errIssuingElsewhere) {
		t.Errorf("b.test while another replica orders it: %v, want errIssuingElsewhere", err)
	}
}

// TestStoreCacheChallengesNotLocked: challenge answers are read and
// written by whichever replica the CA asks, without a lock.
func TestStoreCacheChallengesNotLocked(t *testing.T) {
	ctx := t.Context()
	a, b, _ := replicaCaches(t)
	for _, key := range []string{"a.test+token", "tok123+http-01"} {
		if _, err := a.Get(ctx, key); !errors.Is(err, autocert.ErrCacheMiss) || a.holds(key) {
			t.Errorf("%s: %v, holds %v; want a miss and no lock", key, err, a.holds(key))
		}
		if err := a.Put(ctx, key, []byte("answer")); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Get(ctx, key); err != nil || string(got) != "answer" {
			t.Errorf("%s through the other replica: %q, %v", key, got, err)
		}
		if err := b.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Get(ctx, key); !errors.Is(err, autocert.ErrCacheMiss) {
			t.Errorf("%s after Delete: %v, want a miss", key, err)
		}
	}
}

// TestStoreCacheDirectoriesApart: a staging directory's certificate is
// not served for production.
func TestStoreCacheDirectoriesApart(t *testing.T) {
	ctx := t.Context()
	a, _, clk := replicaCaches(t)
	other := newStoreCache(a.store, "https://other.test/dir", clk.Now, slog.New(slog.DiscardHandler))
	if err := a.Put(ctx, "a.test+token", []byte("staging")); err != nil {
		t.Fatal(err)
	}
	if got, err := other.Get(ctx, "a.test+token"); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Errorf("another directory's value: %q, %v; want a miss", got, err)
	}
}

// TestStoreCacheStoreDown: a store that fails is an error, not a miss (a
// miss would order a certificate that exists), takes no lock, and tells
// autocert (which shows its errors to clients) nothing of the store.
func TestStoreCacheStoreDown(t *testing.T) {
	c := newStoreCache(downStore{}, "https://acme.test/dir", time.Now, slog.New(slog.DiscardHandler))
	for _, key := range []string{"a.test", accountKey, "a.test+token", "tok123+http-01"} {
		_, err := c.Get(t.Context(), key)
		if !errors.Is(err, errCacheUnavailable) || c.holds(key) || strings.Contains(err.Error(), errDown.Error()) {
			t.Errorf("%s: Get = %v, holds %v; want errCacheUnavailable, saying nothing of the store", key, err, c.holds(key))
		}
	}
	if err := c.Put(t.Context(), "a.test", []byte("x")); !errors.Is(err, errCacheUnavailable) {
		t.Errorf("Put on a store that is down: %v", err)
	}
	// Keys no order could have written are not asked for at all.
	for _, key := range []string{"a b+http-01", "tok/../x+http-01", strings.Repeat("a", maxKeyLen) + "+http-01", "", `a.test\x`} {
		if _, err := c.Get(t.Context(), key); !errors.Is(err, autocert.ErrCacheMiss) {
			t.Errorf("Get(%.40q) = %v; want a miss without asking the store", key, err)
		}
	}
}

func TestCacheKeys(t *testing.T) {
	for _, tc := range []struct {
		key          string
		cert, orders bool
	}{
		{"a.test", true, true},
		{"a.test+rsa", true, true},
		{accountKey, false, true},
		{"a.test+token", false, false},
		{"abc+http-01", false, false},
		{"+rsa", false, false},
		{legacyAccountKey, false, false},
		{"", false, false},
	} {
		if got := isCertKey(tc.key); got != tc.cert {
			t.Errorf("isCertKey(%q) = %v", tc.key, got)
		}
		if got := ordersOnMiss(tc.key); got != tc.orders {
			t.Errorf("ordersOnMiss(%q) = %v", tc.key, got)
		}
	}
}

type downStore struct{}

var errDown = errors.New("store down")

func (downStore) LoadSecret(context.Context, string) ([]byte, error)          { return nil, errDown }
func (downStore) StoreSecret(context.Context, string, []byte) error           { return errDown }
func (downStore) DeleteSecret(context.Context, string) error                  { return errDown }
func (downStore) Lock(context.Context, string, time.Duration) (func(), error) { return nil, errDown }
