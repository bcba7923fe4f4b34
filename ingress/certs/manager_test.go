package certs

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/config"
)

func host(name string, mode config.TLSMode) config.Host {
	return config.Host{Hostname: name, ShortName: name, TLS: config.HostTLS{Mode: mode}}
}

// parsedHost is a host as config builds it from a host block that says
// nothing about TLS, so that config chooses its mode.
func parsedHost(t *testing.T, name string) config.Host {
	t.Helper()
	cfg, diags := config.Parse([]byte(fmt.Sprintf("host %q { backend = \"localhost:3000\" }\n", name)), "test.hcl", config.Options{})
	if diags.HasErrors() {
		t.Fatalf("config: %v", diags)
	}
	return cfg.Hosts[0]
}

func filesHost(name, certFile, keyFile string) config.Host {
	return config.Host{Hostname: name, ShortName: name, TLS: config.HostTLS{Mode: config.TLSFiles, CertFile: certFile, KeyFile: keyFile}}
}

func TestSelfSigned(t *testing.T) {
	ctx := t.Context()
	dataDir := t.TempDir()
	hosts := []config.Host{
		host("localhost", config.TLSSelfSigned),
		parsedHost(t, "app.localhost"), // the default for local names
		host("192.0.2.10", config.TLSSelfSigned),
		host("dev.internal", config.TLSSelfSigned),
		host("plain.localhost", config.TLSOff),
	}
	m, err := New(ctx, Config{DataDir: dataDir, Hosts: hosts, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	caPEM := m.LocalCAPEM()
	roots := pool(t, caPEM)
	addr := serveTLS(t, m.TLSConfig(), nil)

	serials := map[string]string{}
	for _, name := range []string{"localhost", "app.localhost", "dev.internal", "LOCALHOST"} {
		leaf, err := handshake(ctx, addr, name, roots, time.Time{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		serials[strings.ToLower(name)] = leaf.SerialNumber.String()
	}
	if body, err := get(ctx, addr, "app.localhost", roots); err != nil || body != "hello app.localhost" {
		t.Fatalf("GET https://app.localhost/ = %q, %v", body, err)
	}

	// Clients send no SNI to an IP address: the loopback address falls
	// back to localhost's certificate, which lists 127.0.0.1.
	if leaf, err := handshake(ctx, addr, "127.0.0.1", roots, time.Time{}); err != nil {
		t.Fatalf("127.0.0.1 through localhost's certificate: %v", err)
	} else if leaf.SerialNumber.String() != serials["localhost"] {
		t.Fatalf("127.0.0.1 got %v, want localhost's certificate", leaf.DNSNames)
	}

	// A host in mode off and an unknown name get no certificate at all.
	for _, name := range []string{"plain.localhost", "other.example", "evil.localhost"} {
		if _, err := handshake(ctx, addr, name, roots, time.Time{}); err == nil {
			t.Errorf("%s: handshake succeeded, want refusal", name)
		}
	}

	// Files: the CA key and the leaf keys are private.
	for _, f := range []string{localCAKeyFile(dataDir), filepath.Join(dataDir, "certs", "local", "localhost-key.pem")} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	if got, err := LocalCA(dataDir); err != nil || string(got) != string(caPEM) {
		t.Fatalf("LocalCA(dataDir) = %q, %v; want the Manager's CA", got, err)
	}

	// A restart reuses the CA and the certificates.
	m2, err := New(ctx, Config{DataDir: dataDir, Hosts: hosts, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if string(m2.LocalCAPEM()) != string(caPEM) {
		t.Fatal("restart created a new CA")
	}
	addr2 := serveTLS(t, m2.TLSConfig(), nil)
	for name, serial := range serials {
		leaf, err := handshake(ctx, addr2, name, roots, time.Time{})
		if err != nil {
			t.Fatalf("after restart, %s: %v", name, err)
		}
		if leaf.SerialNumber.String() != serial {
			t.Errorf("after restart, %s has a new certificate", name)
		}
	}
}

func TestSelfSignedIPHost(t *testing.T) {
	ctx := t.Context()
	m, err := New(ctx, Config{DataDir: t.TempDir(), Hosts: []config.Host{host("127.0.0.1", config.TLSSelfSigned)}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, m.TLSConfig(), nil)
	leaf, err := handshake(ctx, addr, "127.0.0.1", pool(t, m.LocalCAPEM()), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(leaf.IPAddresses) != 1 || len(leaf.DNSNames) != 0 {
		t.Errorf("IP host's certificate: DNS %v, IPs %v", leaf.DNSNames, leaf.IPAddresses)
	}
	// localhost is not configured: a name gets nothing.
	if _, err := handshake(ctx, addr, "localhost", pool(t, m.LocalCAPEM()), time.Time{}); err == nil {
		t.Error("localhost served without being configured")
	}
}

func TestSelfSignedReissueBeforeExpiry(t *testing.T) {
	ctx := t.Context()
	dataDir := t.TempDir()
	now := time.Now()
	clock := func() time.Time { return now }
	hosts := []config.Host{host("localhost", config.TLSSelfSigned)}
	m, err := New(ctx, Config{DataDir: dataDir, Hosts: hosts, Logger: testLogger(t), Now: func() time.Time { return clock() }})
	if err != nil {
		t.Fatal(err)
	}
	roots := pool(t, m.LocalCAPEM())
	addr := serveTLS(t, m.TLSConfig(), nil)
	first, err := handshake(ctx, addr, "localhost", roots, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if d := first.NotAfter.Sub(first.NotBefore); d > 398*24*time.Hour {
		t.Errorf("leaf valid for %v, want at most 398 days", d)
	}

	// Ten days before expiry, a running Manager re-issues on the next handshake.
	later := first.NotAfter.Add(-10 * 24 * time.Hour)
	clock = func() time.Time { return later }
	second, err := handshake(ctx, addr, "localhost", roots, later)
	if err != nil {
		t.Fatal(err)
	}
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("certificate not re-issued before expiry")
	}
	if !second.NotAfter.After(first.NotAfter) {
		t.Errorf("re-issued certificate ends %v, not after %v", second.NotAfter, first.NotAfter)
	}
	// And a new process at that time finds the new one on disk.
	m2, err := New(ctx, Config{DataDir: dataDir, Hosts: hosts, Logger: testLogger(t), Now: func() time.Time { return later }})
	if err != nil {
		t.Fatal(err)
	}
	third, err := handshake(ctx, serveTLS(t, m2.TLSConfig(), nil), "localhost", roots, later)
	if err != nil {
		t.Fatal(err)
	}
	if third.SerialNumber.Cmp(second.SerialNumber) != 0 {
		t.Error("restart did not reuse the re-issued certificate")
	}
}

func TestLocalCAWithoutProxy(t *testing.T) {
	dataDir := t.TempDir()
	a, err := LocalCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LocalCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Fatal("LocalCA created a second CA")
	}
	onDisk, err := os.ReadFile(LocalCAFile(dataDir))
	if err != nil || string(onDisk) != string(a) {
		t.Fatalf("LocalCAFile holds %q, %v", onDisk, err)
	}
	// The Manager then uses that same CA.
	m, err := New(t.Context(), Config{DataDir: dataDir, Hosts: []config.Host{host("localhost", config.TLSSelfSigned)}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if string(m.LocalCAPEM()) != string(a) {
		t.Fatal("Manager made its own CA")
	}
}

func TestStaticFiles(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	ca := newTestCA(t, "static test CA")
	ownCert, ownKey := ca.writePair(t, dir, "own", "own.example")
	globalCert, globalKey := ca.writePair(t, dir, "global", "a.example", "b.example")
	hosts := []config.Host{
		filesHost("own.example", ownCert, ownKey),
		// As config builds them: hosts without files of their own carry the global pair.
		filesHost("a.example", globalCert, globalKey),
		filesHost("b.example", globalCert, globalKey),
		host("c.example", config.TLSFiles), // left empty: falls back to Config.TLS
	}
	m, err := New(ctx, Config{
		DataDir: t.TempDir(),
		TLS:     config.TLS{CertFile: globalCert, KeyFile: globalKey},
		Hosts:   hosts,
		Logger:  testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.pairs) != 2 {
		t.Errorf("%d pairs loaded, want 2 (the global pair once)", len(m.pairs))
	}
	roots := pool(t, ca.pem)
	addr := serveTLS(t, m.TLSConfig(), nil)
	for _, name := range []string{"own.example", "a.example", "b.example"} {
		if body, err := get(ctx, addr, name, roots); err != nil || body != "hello "+name {
			t.Errorf("GET https://%s/ = %q, %v", name, body, err)
		}
	}
	// c.example is configured but the global certificate does not cover it:
	// the client's verification fails, but the handshake is not refused.
	if _, err := handshake(ctx, addr, "c.example", roots, time.Time{}); err == nil || !strings.Contains(err.Error(), "c.example") {
		t.Errorf("c.example: %v, want a name mismatch", err)
	}
	// Unknown names get a handshake error, not another host's certificate.
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "unknown.example", InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Fatal("unknown SNI got a certificate")
	}
	// No SNI on a non-loopback name: refused as well.
	conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Fatal("handshake without SNI got a certificate")
	}
	// Old protocol versions are refused.
	conn, err = tls.Dial("tcp", addr, &tls.Config{ServerName: "own.example", RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
	if err == nil {
		conn.Close()
		t.Fatal("TLS 1.1 accepted")
	} else if !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1: %v, want a protocol version alert", err)
	}
}

func TestStaticFilesBrokenAtStart(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "CA")
	certFile, _ := ca.writePair(t, dir, "a", "a.example")
	_, otherKey := ca.writePair(t, dir, "b", "a.example")
	_, err := New(t.Context(), Config{DataDir: t.TempDir(), Hosts: []config.Host{filesHost("a.example", certFile, otherKey)}, Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("New with a mismatched key: %v, want an error naming %s", err, certFile)
	}
}

func TestReload(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	ca := newTestCA(t, "reload CA")
	certFile, keyFile := ca.writePair(t, dir, "site", "site.example")
	m, err := New(ctx, Config{DataDir: t.TempDir(), Hosts: []config.Host{filesHost("site.example", certFile, keyFile)}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	roots := pool(t, ca.pem)
	addr := serveTLS(t, m.TLSConfig(), nil)
	serial := func() string {
		t.Helper()
		leaf, err := handshake(ctx, addr, "site.example", roots, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	first := serial()

	// New files, then Reload (SIGHUP): the new certificate is served.
	c2, k2 := ca.issue(t, []string{"site.example"}, leafOpts{})
	writeFile(t, certFile, c2)
	writeFile(t, keyFile, k2)
	if err := m.Reload(); err != nil {
		t.Fatal(err)
	}
	second := serial()
	if second == first {
		t.Fatal("Reload kept the old certificate")
	}

	// A broken certificate: Reload fails and the old one stays.
	writeFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"))
	if err := m.Reload(); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("Reload of a broken file: %v, want an error naming it", err)
	}
	if serial() != second {
		t.Fatal("a broken file replaced the served certificate")
	}
	// A key from another certificate: also refused.
	c3, _ := ca.issue(t, []string{"site.example"}, leafOpts{})
	writeFile(t, certFile, c3)
	if err := m.Reload(); err == nil {
		t.Fatal("Reload accepted a certificate with another certificate's key")
	}
	if serial() != second {
		t.Fatal("a mismatched pair replaced the served certificate")
	}
}

func TestWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	dir := t.TempDir()
	ca := newTestCA(t, "watch CA")
	certFile, keyFile := ca.writePair(t, dir, "site", "site.example")
	m, err := New(ctx, Config{
		DataDir: t.TempDir(), Hosts: []config.Host{filesHost("site.example", certFile, keyFile)},
		Logger: testLogger(t), PollInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { m.Watch(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	roots := pool(t, ca.pem)
	addr := serveTLS(t, m.TLSConfig(), nil)
	waitSerial := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			leaf, err := handshake(ctx, addr, "site.example", roots, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if leaf.SerialNumber.String() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("still serving %s, want %s", leaf.SerialNumber, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// Replace the certificate first and the key a moment later, as a
	// renewal script would: the half-written state keeps the old
	// certificate, the complete pair is picked up.
	old := m.files["site.example"].current().Leaf.SerialNumber.String()
	c2, k2 := ca.issue(t, []string{"site.example"}, leafOpts{})
	writeFile(t, certFile, c2)
	time.Sleep(100 * time.Millisecond)
	waitSerial(old)
	writeFile(t, keyFile, k2)
	want, err := tls.X509KeyPair(c2, k2)
	if err != nil {
		t.Fatal(err)
	}
	waitSerial(want.Leaf.SerialNumber.String())

	// A renewal of the same size with the same modification time (within
	// the file system's timestamp resolution) is still noticed.
	fi, err := os.Stat(certFile)
	if err != nil {
		t.Fatal(err)
	}
	kfi, _ := os.Stat(keyFile)
	for {
		c3, k3 := ca.issue(t, []string{"site.example"}, leafOpts{})
		if len(c3) != len(c2) || len(k3) != len(k2) {
			continue // ECDSA signatures vary in length; find a same-size pair
		}
		writeFile(t, certFile, c3)
		writeFile(t, keyFile, k3)
		_ = os.Chtimes(certFile, fi.ModTime(), fi.ModTime())
		_ = os.Chtimes(keyFile, kfi.ModTime(), kfi.ModTime())
		third, err := tls.X509KeyPair(c3, k3)
		if err != nil {
			t.Fatal(err)
		}
		waitSerial(third.Leaf.SerialNumber.String())
		break
	}
}

func TestHTTPHandler(t *testing.T) {
	dataDir := t.TempDir()
	ca := newTestCA(t, "CA")
	certFile, keyFile := ca.writePair(t, t.TempDir(), "f", "files.example")
	m, err := New(t.Context(), Config{
		DataDir: dataDir,
		TLS:     config.TLS{ACME: config.ACME{Directory: "https://acme.invalid/directory"}},
		Hosts: []config.Host{
			host("public.example", config.TLSACME),
			filesHost("files.example", certFile, keyFile),
		},
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})
	h := m.HTTPHandler(fallback)
	for _, tc := range []struct {
		host, path string
		want       int
	}{
		{"public.example", "/", http.StatusTeapot},
		{"public.example", "/.well-known/acme-challenge/unknown-token", http.StatusNotFound},
		{"public.example:80", "/.well-known/acme-challenge/unknown-token", http.StatusNotFound},
		{"files.example", "/.well-known/acme-challenge/x", http.StatusTeapot},
		{"other.example", "/.well-known/acme-challenge/x", http.StatusTeapot},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "http://"+tc.host+tc.path, nil)
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("%s%s: %d, want %d", tc.host, tc.path, rec.Code, tc.want)
		}
	}
}

func TestACMERefusesOtherNames(t *testing.T) {
	// No ACME server is reachable: a name outside the configured hosts
	// must fail at once on our side, never reach autocert's issuance.
	m, err := New(t.Context(), Config{
		DataDir: t.TempDir(),
		TLS:     config.TLS{ACME: config.ACME{Directory: "https://127.0.0.1:1/dir"}},
		Hosts:   []config.Host{host("public.example", config.TLSACME)},
		Logger:  testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, m.TLSConfig(), nil)
	start := time.Now()
	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "attacker.example", InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Fatal("certificate for an unconfigured name")
	}
	if time.Since(start) > 2*time.Second {
		t.Error("refusal took long: did it try to issue?")
	}
	// A TLS-ALPN-01 handshake with no challenge pending gets nothing.
	if _, err := m.getCertificate(&tls.ClientHelloInfo{ServerName: "public.example", SupportedProtos: []string{"acme-tls/1"}}); err == nil {
		t.Error("challenge handshake without a pending challenge succeeded")
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no data dir", Config{}, "DataDir"},
		{"duplicate host", Config{DataDir: t.TempDir(), Hosts: []config.Host{host("localhost", config.TLSSelfSigned), host("LOCALHOST", config.TLSSelfSigned)}}, "twice"},
		// config decides "auto"; certs does not decide it a second time.
		{"mode auto", Config{DataDir: t.TempDir(), Hosts: []config.Host{host("localhost", config.TLSAuto)}}, "no TLS mode"},
		{"files without files", Config{DataDir: t.TempDir(), Hosts: []config.Host{host("a.example", config.TLSFiles)}}, "cert_file"},
		{"missing ca_file", Config{DataDir: t.TempDir(), TLS: config.TLS{ACME: config.ACME{CAFile: "/nonexistent/ca.pem"}}, Hosts: []config.Host{host("a.example", config.TLSACME)}}, "ca_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(t.Context(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %s", err, tc.want)
			}
		})
	}
}

func TestACMEFailureIsNotRetriedAtOnce(t *testing.T) {
	var requests atomic.Int32
	ca := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, `{"type":"urn:ietf:params:acme:error:malformed","detail":"not today"}`, http.StatusNotFound)
	}))
	defer ca.Close()
	m, err := New(t.Context(), Config{
		DataDir:        t.TempDir(),
		TLS:            config.TLS{ACME: config.ACME{Directory: ca.URL + "/dir"}},
		Hosts:          []config.Host{host("public.example", config.TLSACME)},
		Logger:         testLogger(t),
		ACMEHTTPClient: ca.Client(),
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, m.TLSConfig(), nil)
	attempt := func() int32 {
		t.Helper()
		before := requests.Load()
		if _, err := handshake(t.Context(), addr, "public.example", nil, time.Time{}); err == nil {
			t.Fatal("handshake succeeded without a certificate")
		}
		return requests.Load() - before
	}
	if n := attempt(); n == 0 {
		t.Fatal("first handshake did not reach the ACME server")
	}
	// autocert holds a failed name for a minute: handshakes in between
	// fail without a new order, sparing the CA's failed-validation limit.
	for range 3 {
		if n := attempt(); n != 0 {
			t.Fatalf("handshake right after the failure made %d ACME requests, want none", n)
		}
	}
}
