package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/proc"
)

// TestACMEPebble obtains certificates from a real ACME server, Pebble, on
// loopback: one name through TLS-ALPN-01 (Pebble connects to the HTTPS
// listener) and one through HTTP-01 (TLS-ALPN-01 is refused for it, so
// autocert falls back and Pebble fetches the token from the HTTP listener).
// Then Pebble is stopped and a new Manager on the same data dir serves the
// same certificates from its cache.
func TestACMEPebble(t *testing.T) {
	requirePebble(t)
	ctx := t.Context()
	const (
		alpnHost = "alpn.ioproxy.test"
		httpHost = "http01.ioproxy.test"
	)

	// Pebble validates challenges on the ports of these two listeners,
	// resolving every name to 127.0.0.1 through our DNS server.
	httpLn := listen(t)
	tlsLn := listen(t)
	dnsAddr := serveDNS(t)
	peb := startPebble(t, port(httpLn), port(tlsLn), dnsAddr)

	cfg := Config{
		DataDir: t.TempDir(),
		TLS: config.TLS{ACME: config.ACME{
			Email:     "ops@ioproxy.test",
			Directory: peb.directory,
			CAFile:    peb.caFile, // Pebble's HTTPS listener, not its issuing root
		}},
		Hosts: []config.Host{
			host(alpnHost, config.TLSACME),
			host(httpHost, config.TLSACME),
			host("localhost", config.TLSSelfSigned),
		},
		Logger: testLogger(t),
	}
	m, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}

	var http01 sync.Map // host -> *atomic.Int32: challenge requests seen
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "fallback", http.StatusMisdirectedRequest)
	})
	acmeHTTP := m.HTTPHandler(fallback)
	serveHTTP(t, httpLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			n, _ := http01.LoadOrStore(config.NormalizeHost(r.Host), new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
		}
		acmeHTTP.ServeHTTP(w, r)
	}))

	var alpn01 sync.Map // host -> *atomic.Int32: acme-tls/1 handshakes seen
	tlsCfg := m.TLSConfig()
	getCert := tlsCfg.GetCertificate
	tlsCfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if wantsChallengeCert(hello) {
			n, _ := alpn01.LoadOrStore(hello.ServerName, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			if hello.ServerName == httpHost {
				return nil, errors.New("test: TLS-ALPN-01 disabled for this name")
			}
		}
		return getCert(hello)
	}
	addr := serveTLSOn(t, tlsLn, tlsCfg, nil)

	// Prefetch obtains both certificates before any visitor asks, so the
	// handshakes below are served without waiting for issuance.
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	m.Prefetch(pctx)
	cancel()
	for _, name := range []string{alpnHost, httpHost} {
		if found, _ := filepath.Glob(filepath.Join(cfg.DataDir, "certs", "acme", "*", name)); len(found) != 1 {
			t.Errorf("Prefetch did not obtain a certificate for %s\npebble output:\n%s", name, peb.output())
		}
	}

	roots := pool(t, peb.root(ctx, t))
	serials := map[string]string{}
	for _, name := range []string{alpnHost, httpHost} {
		start := time.Now()
		ictx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		leaf, err := handshake(ictx, addr, name, roots, time.Time{})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v\npebble output:\n%s", name, err, peb.output())
		}
		t.Logf("%s: issued by %q in %v, serial %x", name, leaf.Issuer.CommonName, time.Since(start).Round(time.Millisecond), leaf.SerialNumber)
		serials[name] = leaf.SerialNumber.String()
		if body, err := get(ctx, addr, name, roots); err != nil || body != "hello "+name {
			t.Errorf("GET https://%s/ = %q, %v", name, body, err)
		}
	}
	if count(&alpn01, alpnHost) == 0 || count(&http01, alpnHost) != 0 {
		t.Errorf("%s: %d TLS-ALPN-01 and %d HTTP-01 validations, want TLS-ALPN-01 only", alpnHost, count(&alpn01, alpnHost), count(&http01, alpnHost))
	}
	if count(&http01, httpHost) == 0 {
		t.Errorf("%s: no HTTP-01 validation reached the HTTP listener", httpHost)
	}
	// The local host is served beside the ACME ones.
	if _, err := handshake(ctx, addr, "localhost", pool(t, m.LocalCAPEM()), time.Time{}); err != nil {
		t.Errorf("localhost: %v", err)
	}
	// Names outside the configuration are refused before any ACME traffic.
	if _, err := handshake(ctx, addr, "other.ioproxy.test", roots, time.Time{}); err == nil {
		t.Error("other.ioproxy.test got a certificate")
	}
	// autocert deactivates leftover authorizations in the background; let
	// that traffic finish before counting.
	requests := peb.settled()
	if requests == 0 {
		t.Fatalf("no requests in Pebble's log; has its format changed?\n%s", peb.output())
	}
	for _, name := range []string{alpnHost, httpHost} {
		if found, _ := filepath.Glob(filepath.Join(cfg.DataDir, "certs", "acme", "*", name)); len(found) != 1 {
			t.Errorf("no cached certificate for %s under the data dir", name)
		}
	}

	// A restart serves the certificates from the cache in the data dir:
	// first with Pebble still up, counting its requests (none), then with
	// Pebble gone, where any question to the CA would fail the handshake.
	restart := func(when string) {
		t.Helper()
		m, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		addr := serveTLS(t, m.TLSConfig(), nil)
		for name, serial := range serials {
			leaf, err := handshake(ctx, addr, name, roots, time.Time{})
			if err != nil {
				t.Fatalf("restart %s, %s: %v", when, name, err)
			}
			if leaf.SerialNumber.String() != serial {
				t.Errorf("restart %s, %s has serial %x, want the cached certificate", when, name, leaf.SerialNumber)
			}
		}
	}
	restart("with Pebble running")
	if n := peb.requests(); n != requests {
		t.Errorf("the restarted Manager made %d requests to Pebble, want none", n-requests)
	}
	peb.stop()
	restart("with Pebble stopped")
}

// requirePebble skips the test when Pebble is not installed, or fails it
// under IOPROXY_REQUIRE_PEBBLE (./scripts/test).
func requirePebble(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("pebble"); err != nil {
		if os.Getenv("IOPROXY_REQUIRE_PEBBLE") != "" {
			t.Fatal("pebble is not installed: apt-get install pebble")
		}
		t.Skip("pebble is not installed (apt-get install pebble); set IOPROXY_REQUIRE_PEBBLE=1 to make this a failure")
	}
}

func count(m *sync.Map, host string) int32 {
	n, ok := m.Load(host)
	if !ok {
		return 0
	}
	return n.(*atomic.Int32).Load()
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// freePorts are n distinct free ports (proc's), held open at once while
// chosen so that no two are the same.
func freePorts(t *testing.T, n int) []int { t.Helper(); return proc.FreePorts(t, n) }

func serveHTTP(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve http: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
}

// serveDNS answers every A query with 127.0.0.1 and every other query with
// no records, which is all Pebble's validation authority asks.
func serveDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n]); resp != nil {
				_, _ = pc.WriteTo(resp, from)
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc.LocalAddr().String()
}

// dnsAnswer builds the response to a one-question DNS query (RFC 1035
// section 4.1).
func dnsAnswer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:]) != 1 {
		return nil
	}
	i := 12
	for i < len(q) && q[i] != 0 {
		if q[i]&0xc0 != 0 {
			return nil
		}
		i += int(q[i]) + 1
	}
	if i+5 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i+1:])
	end := i + 5
	var ancount byte
	if qtype == 1 { // A
		ancount = 1
	}
	resp := []byte{q[0], q[1], 0x84 | q[2]&0x01, 0, 0, 1, 0, ancount, 0, 0, 0, 0}
	resp = append(resp, q[12:end]...)
	if ancount == 1 {
		// Name (pointer to the question), A, IN, TTL 60, 4 bytes: 127.0.0.1.
		resp = append(resp, 0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1)
	}
	return resp
}

type pebble struct {
	directory string // ACME directory URL
	mgmt      string // management API base URL
	caFile    string // the CA of Pebble's own HTTPS listener
	client    *http.Client

	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// startPebble runs Pebble on loopback with a listener certificate from a
// throwaway CA (the Debian package ships none), validating challenges on
// httpPort and tlsPort and resolving names through dnsAddr.
func startPebble(t *testing.T, httpPort, tlsPort int, dnsAddr string) *pebble {
	t.Helper()
	dir := t.TempDir()
	minica := newTestCA(t, "pebble listener CA")
	certFile, keyFile := minica.writePair(t, dir, "listener", "localhost", "127.0.0.1")
	caFile := filepath.Join(dir, "listener-ca.pem")
	writeFile(t, caFile, minica.pem)

	ps := freePorts(t, 2)
	listenAddr := fmt.Sprintf("127.0.0.1:%d", ps[0])
	mgmtAddr := fmt.Sprintf("127.0.0.1:%d", ps[1])
	cfg, err := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress":                  listenAddr,
		"managementListenAddress":        mgmtAddr,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "pebble-config.json")
	writeFile(t, cfgFile, cfg)

	p := &pebble{
		directory: "https://" + listenAddr + "/dir",
		mgmt:      "https://" + mgmtAddr,
		caFile:    caFile,
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool(t, minica.pem)},
		}},
		out:  &lockedBuffer{},
		done: make(chan struct{}),
	}
	p.cmd = exec.Command("pebble", "-config", cfgFile, "-dnsserver", dnsAddr)
	p.cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",      // validate at once
		"PEBBLE_WFE_NONCEREJECT=0", // no spurious badNonce retries
		"PEBBLE_AUTHZREUSE=0",      // every order proves control afresh
	)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start pebble: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.stop)

	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := p.client.Get(p.directory)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("pebble exited:\n%s", p.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble not ready after 20s (%v):\n%s", err, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// root fetches the root that Pebble generated at start for this run.
func (p *pebble) root(ctx context.Context, t *testing.T) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.mgmt+"/roots/0", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("pebble root: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pebble root: %s, %v", resp.Status, err)
	}
	return b
}

// stop kills Pebble (a process this test started) and waits for it.
func (p *pebble) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

func (p *pebble) output() string { return p.out.String() }

// requests counts the requests to Pebble's ACME API, which it logs as
// "POST /order-plz -> calling handler()".
func (p *pebble) requests() int {
	return strings.Count(p.output(), "-> calling handler()")
}

// calls counts the requests to one ACME endpoint, such as
// "POST /order-plz" (new orders) or "POST /sign-me-up" (new accounts).
func (p *pebble) calls(endpoint string) int {
	return strings.Count(p.output(), endpoint+" -> calling handler()")
}

// settled waits until Pebble has seen no request for half a second and
// returns the count.
func (p *pebble) settled() int {
	n := p.requests()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		m := p.requests()
		if m == n {
			break
		}
		n = m
	}
	return n
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
