package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/ingress"
	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/server"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// tunnelRecheck is how often the replicas of TestWebSocketClosedOnSignOut
// judge an open WebSocket again: short, so that the test waits seconds,
// not the default 30 s.
const tunnelRecheck = 200 * time.Millisecond

// startProxyWith is startProxy with server.Options of the test's own
// (the logger and shutdown timeout are startProxy's unless set).
func startProxyWith(t *testing.T, src string, opts server.Options) *server.Server {
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
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	srv, err := server.Start(context.Background(), cfg, opts)
	if err != nil {
		t.Fatalf("start ioproxy: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// socketBackend is the app behind the replicas of
// TestWebSocketClosedOnSignOut: "/" shows who ioproxy says is signed in
// (as whoBackend does), and "/ws" accepts a WebSocket, sends first the
// User-Did of its upgrade request, then echoes every message.
type socketBackend struct {
	url     string
	sockets atomic.Int32 // WebSockets accepted
}

func newSocketBackend(t *testing.T) *socketBackend {
	t.Helper()
	b := &socketBackend{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>who</title><p id=did>%s</p>", html.EscapeString(r.Header.Get("User-Did")))
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		b.sockets.Add(1)
		ctx := r.Context()
		if err := c.Write(ctx, websocket.MessageText, []byte("did:"+r.Header.Get("User-Did"))); err != nil {
			return
		}
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux) // on 127.0.0.1
	t.Cleanup(srv.Close)
	b.url = srv.URL
	return b
}

// startSocketReplicas is startReplicas with a socketBackend behind every
// replica, require_atproto on the host (a signed-out browser is refused,
// not passed on as nobody), no calling port, no admin listener, and
// server.Options.TunnelRecheck set to recheck.
func startSocketReplicas(t *testing.T, a *atmo.Atmosphere, redisURL, certFile, keyFile string, httpsPort, n int, recheck time.Duration) ([]*replicaProxy, []*socketBackend) {
	t.Helper()
	key := sealed.Generate()
	var rs []*replicaProxy
	var bs []*socketBackend
	for i := range n {
		httpPort := freePorts(t, 1)[0]
		r := &replicaProxy{https: fmt.Sprintf("127.0.0.%d:%d", i+2, httpsPort)}
		backend := newSocketBackend(t)
		local := fmt.Sprintf("https = \"127.0.0.1:%d\"", httpsPort)
		settings := localSettings(t, a, httpPort, httpsPort, "")
		if !strings.Contains(settings, local) {
			t.Fatalf("localSettings no longer writes %s", local)
		}
		cfg := strings.Replace(settings, local, fmt.Sprintf("https = %q", r.https), 1) + fmt.Sprintf(`
sessions {
  store          = "redis"
  url            = %q
  encryption_key = %q
}
host %q {
  backend = %q
  atproto {
    name   = "Statusphere (websockets)"
    scopes = ["atproto", "transition:generic"]
  }
  require_atproto {}
  tls {
    cert_file = %q
    key_file  = %q
  }
}
`, redisURL, key, confHost, backend.url, certFile, keyFile)
		r.srv = startProxyWith(t, cfg, server.Options{TunnelRecheck: recheck})
		rs = append(rs, r)
		bs = append(bs, backend)
	}
	return rs, bs
}

// replicaClient is an HTTPS client for the replicas that trusts the test
// CA alone and checks the certificate names confHost; it follows no
// redirects.
func replicaClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: confHost}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// dialSocket opens a WebSocket to /ws on replica r, as the browser whose
// session cookie is cookie, within 10 s. On a refused upgrade the
// response is returned with the error.
func dialSocket(ctx context.Context, client *http.Client, r *replicaProxy, cookie string) (*websocket.Conn, *http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return websocket.Dial(ctx, "wss://"+r.https+"/ws", &websocket.DialOptions{
		HTTPClient: client,
		Host:       confHost,
		HTTPHeader: http.Header{"Cookie": {ingress.SecureCookieName + "=" + cookie}},
	})
}

// readSocket reads one text message within d.
func readSocket(ctx context.Context, c *websocket.Conn, d time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	_, msg, err := c.Read(ctx)
	return string(msg), err
}

// echo sends msg on c and reads it back, within 5 s.
func echo(ctx context.Context, t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err := c.Write(wctx, websocket.MessageText, []byte(msg))
	cancel()
	if err != nil {
		t.Fatalf("write %q on the WebSocket: %v", msg, err)
	}
	got, err := readSocket(ctx, c, 5*time.Second)
	if err != nil || got != msg {
		t.Fatalf("the echo of %q: %q, %v", msg, got, err)
	}
}

// secureSessionCookie is the value of ioproxy's https session cookie in
// the browser for base, or "".
func secureSessionCookie(ctx context.Context, t *testing.T, base string) string {
	t.Helper()
	res, err := chromedp.Call(withTimeout(ctx, t, 10*time.Second), network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatalf("read the browser's cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == ingress.SecureCookieName {
			return c.Value
		}
	}
	return ""
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]*)"`)

// signOutAt signs the browser whose session cookie is cookie out through
// replica r, as its /@/signout form does: GET the form, POST its CSRF
// token back.
func signOutAt(ctx context.Context, t *testing.T, client *http.Client, r *replicaProxy, cookie string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	do := func(req *http.Request) (*http.Response, string) {
		req.Host = confHost
		req.Header.Set("Cookie", ingress.SecureCookieName+"="+cookie)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return resp, string(body)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+r.https+"/@/signout", nil)
	resp, form := do(req)
	m := csrfField.FindStringSubmatch(form)
	if resp.StatusCode != http.StatusOK || m == nil || m[1] == "" {
		t.Fatalf("GET /@/signout: %d, no CSRF token in the form:\n%s", resp.StatusCode, form)
	}
	fields := url.Values{"csrf": {html.UnescapeString(m[1])}, "redirect": {"/"}}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, "https://"+r.https+"/@/signout", strings.NewReader(fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body := do(req)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /@/signout: %d, want 303:\n%s", resp.StatusCode, body)
	}
}

// TestWebSocketClosedOnSignOut signs alice in through Chromium on two
// replicas that share one Redis, opens a WebSocket through replica A with
// her session cookie, and signs her out through replica B: replica A
// closes the open WebSocket at its next recheck, and refuses a new one
// with the same cookie.
func TestWebSocketClosedOnSignOut(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := testCA(t, dir, confHost)
	a := atmo.Start(t, atmo.Options{
		Accounts:    []atmo.Account{{Handle: "alice.test", Password: alicePassword}},
		HostAliases: []string{confHost},
		ExtraCAFile: caFile,
	})
	alice := a.Accounts[0]
	redis := redistest.Start(t, redistest.Options{})
	lb := startSwitchboard(t)
	rs, backends := startSocketReplicas(t, a, redis.URL(), certFile, keyFile, lb.port, 2, tunnelRecheck)
	replicaA, replicaB := rs[0], rs[1]
	base := fmt.Sprintf("https://%s:%d", confHost, lb.port)

	// alice signs in in Chromium through replica A.
	b := browser.Start(t, browser.Options{HostResolverRules: map[string]string{confHost: "127.0.0.1"}, IgnoreCertErrors: true})
	bctx := b.Ctx()
	lb.route(replicaA.https)
	signInThroughProxy(bctx, t, b, base, "alice.test", alicePassword, "/")
	if got := text(bctx, t, "#did"); got != alice.DID {
		t.Fatalf("after the sign-in the backend saw User-Did %q, want %q", got, alice.DID)
	}
	cookie := secureSessionCookie(bctx, t, base)
	if cookie == "" {
		t.Fatalf("no %s cookie in the browser after the sign-in", ingress.SecureCookieName)
	}
	if sess := onlySession(t, replicaA.srv.Store()); sess.ID != cookie || sess.DID != alice.DID {
		t.Fatalf("the store's one session is %s of %s; the browser's cookie %s, alice %s", sess.ID, sess.DID, cookie, alice.DID)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := replicaClient(t, caFile)

	// A WebSocket through replica A, as alice; it stays open over several
	// rechecks while she is signed in.
	ws, resp, err := dialSocket(ctx, client, replicaA, cookie)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("open a WebSocket through replica A with alice's cookie: %v (status %d)", err, status)
	}
	defer ws.CloseNow()
	if got, err := readSocket(ctx, ws, 5*time.Second); err != nil || got != "did:"+alice.DID {
		t.Fatalf("the backend's first message: %q, %v; want did:%s", got, err, alice.DID)
	}
	echo(ctx, t, ws, "hello")
	time.Sleep(time.Second) // five rechecks at 200 ms
	echo(ctx, t, ws, "still here")

	// Sign out through replica B: the session leaves the shared store.
	signOutAt(ctx, t, client, replicaB, cookie)
	signedOut := time.Now()
	if _, found := getSession(replicaA.srv.Store(), cookie); found {
		t.Fatal("alice's session is still in the store after the sign-out on replica B")
	}

	// Replica A closes the open WebSocket at a recheck: the read ends
	// with the connection, well before its own deadline.
	const closeWithin = 5 * time.Second
	msg, err := readSocket(ctx, ws, closeWithin)
	switch {
	case err == nil:
		t.Fatalf("a message %q on the WebSocket after the sign-out, want it closed", msg)
	case errors.Is(err, context.DeadlineExceeded):
		t.Fatalf("the WebSocket through replica A is still open %v after the sign-out on replica B (recheck every %v)", time.Since(signedOut).Round(time.Millisecond), tunnelRecheck)
	}
	t.Logf("the WebSocket through replica A closed %v after the sign-out on replica B: %v", time.Since(signedOut).Round(time.Millisecond), err)

	// A new WebSocket with the same cookie is refused before the backend.
	before := backends[0].sockets.Load()
	ws2, resp, err := dialSocket(ctx, client, replicaA, cookie)
	if err == nil {
		ws2.CloseNow()
		t.Fatal("a new WebSocket through replica A after the sign-out was opened, want it refused")
	}
	if resp == nil {
		t.Fatalf("a new WebSocket after the sign-out: no answer: %v", err)
	}
	loc := resp.Header.Get("Location")
	refused := resp.StatusCode == http.StatusUnauthorized ||
		(resp.StatusCode >= 300 && resp.StatusCode < 400 && strings.HasPrefix(loc, "/@/signin"))
	if !refused {
		t.Fatalf("a new WebSocket after the sign-out: %d (Location %q), want 401 or a redirect to /@/signin", resp.StatusCode, loc)
	}
	if got := backends[0].sockets.Load(); got != before {
		t.Fatalf("the backend accepted %d WebSockets after the sign-out, want none", got-before)
	}
	t.Logf("a new WebSocket after the sign-out: %d %q", resp.StatusCode, loc)
}
