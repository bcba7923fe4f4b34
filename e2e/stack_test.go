package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/internal/proc"
	"github.com/ioproxy/ioproxy/server"
	"github.com/ioproxy/ioproxy/sessions"
)

// freePorts are n distinct loopback ports (proc's), held open at once
// while chosen: ports chosen one at a time may repeat.
func freePorts(t *testing.T, n int) []int { t.Helper(); return proc.FreePorts(t, n) }

// localSettings are the top-level settings of a test configuration: a
// fresh data dir, loopback listeners, the local atmosphere as identity
// service (http://, hence allow_insecure) and the admin listener on admin
// ("" for none).
func localSettings(t *testing.T, a *atmo.Atmosphere, httpPort, httpsPort int, admin string) string {
	return fmt.Sprintf(`
data_dir = %q
ingress {
  http  = "127.0.0.1:%d"
  https = "127.0.0.1:%d"
}
identity {
  plc_url         = %q
  handle_resolver = %q
  allow_insecure  = true
}
admin { listen = %q }
`, filepath.Join(t.TempDir(), "data"), httpPort, httpsPort, a.PLCURL, a.PDSURL, admin)
}

// startProxy runs ioproxy in-process with the given HCL configuration.
func startProxy(t *testing.T, src string) *server.Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "io.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, diags := config.Load(path, config.Options{})
	if diags.HasErrors() {
		var b bytes.Buffer
		_ = config.WriteDiagnostics(&b, diags)
		t.Fatalf("config:\n%s\n%s", src, b.String())
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: log, ShutdownTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("start ioproxy: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("ioproxy: %s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// whoBackend is the app behind the proxy in these tests: it shows who the
// proxy says is signed in, and writes a status record through the calling
// port on demand, as an app would.
type whoBackend struct {
	*httptest.Server
	callPort int

	mu   sync.Mutex
	seen []http.Header
}

func newWhoBackend(t *testing.T, callPort int) *whoBackend {
	b := &whoBackend{callPort: callPort}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.seen = append(b.seen, r.Header.Clone())
		b.mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>who</title><p id=did>%s</p><p id=handle>%s</p><p id=scope>%s</p><p id=session>%t</p><p id=cookie>%s</p>",
			r.Header.Get("User-Did"), r.Header.Get("User-Handle"), html.EscapeString(r.Header.Get("User-Scope")), r.Header.Get("Proxy-Session") != "", r.Header.Get("Cookie"))
	})
	mux.HandleFunc("/post", func(w http.ResponseWriter, r *http.Request) {
		did := r.Header.Get("User-Did")
		body, _ := json.Marshal(map[string]any{
			"repo":       did,
			"collection": "xyz.statusphere.status",
			"record": map[string]any{
				"$type":     "xyz.statusphere.status",
				"status":    "🦋",
				"createdAt": time.Now().UTC().Format(time.RFC3339Nano),
			},
		})
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, "http://127.0.0.1:"+strconv.Itoa(b.callPort)+"/xrpc/com.atproto.repo.createRecord", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Did", did)
		req.Header.Set("Proxy-Session", r.Header.Get("Proxy-Session"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>post</title><p id=status>%d</p><pre id=result>%s</pre>", resp.StatusCode, out)
	})
	b.Server = httptest.NewServer(mux)
	t.Cleanup(b.Close)
	return b
}

// testCA makes a CA and a leaf certificate for names, written as PEM files
// in dir; it returns the CA file and the leaf's certificate and key files.
func testCA(t *testing.T, dir string, names ...string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ioproxy e2e test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(leafKey)
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("cert.pem", "CERTIFICATE", leafDER), write("key.pem", "EC PRIVATE KEY", keyDER)
}

// getJSON fetches a URL and decodes its JSON answer.
func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("GET %s: %v: %s", url, err, b)
		}
	}
	return resp.StatusCode
}

// getSession is a store lookup as the tests read it: found or not.
func getSession(store sessions.Store, id string) (sessions.Session, bool) {
	sess, err := store.Get(context.Background(), id)
	return sess, err == nil
}

// listSessions is every live session.
func listSessions(store sessions.Store) []sessions.Session {
	all, _ := store.List(context.Background())
	return all
}
