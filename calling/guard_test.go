package calling

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/admin"
	"github.com/ioproxy/ioproxy/atproto/atprototest"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/httpguard/guardtest"
)

func urlCall(t *testing.T, raw string) config.Call {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return config.Call{Label: "api", Endpoint: config.Endpoint{Kind: config.EndpointURL, URL: u, Raw: raw}, MaxBodyBytes: 1 << 20, Timeout: 5 * time.Second}
}

func urlPort(t *testing.T, c config.Call) http.Handler {
	t.Helper()
	h, err := New(Config{Call: c})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestCallUpgradeRefused: a URL endpoint is a reverse proxy, and a
// lenient upstream that answers 101 to h2c would turn the call into a
// tunnel. Nothing but a WebSocket upgrade passes, and the upstream never
// sees the request.
func TestCallUpgradeRefused(t *testing.T) {
	backend := guardtest.NewLenientUpgradeBackend(t)
	srv := httptest.NewServer(urlPort(t, urlCall(t, "http://"+backend.Addr())))
	defer srv.Close()
	for _, tc := range guardtest.SmuggleAttempts {
		t.Run(tc.Name, func(t *testing.T) {
			resp, body := guardtest.Send(t, srv.Listener.Addr().String(), "127.0.0.1", "/v1/things", tc.Headers)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"InvalidRequest"`) {
				t.Errorf("%d %s, want a 400 XRPC error", resp.StatusCode, body)
			}
			if !resp.Close {
				t.Error("the connection stays open after the refusal; the rest of what was sent would be read as requests")
			}
		})
	}
	if got := backend.Received(); got != "" {
		t.Errorf("the upstream received %d bytes, want none:\n%s", len(got), got)
	}
}

// normalizingUpstream serves what a lenient server would: it decodes the
// path and removes dot segments before routing, and records what it
// served.
type normalizingUpstream struct {
	mu     sync.Mutex
	served []string
}

func (u *normalizingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, _ := url.PathUnescape(r.URL.EscapedPath())
	p = path.Clean(strings.ReplaceAll(p, "\\", "/"))
	u.mu.Lock()
	u.served = append(u.served, r.Method+" "+p)
	u.mu.Unlock()
	_, _ = io.WriteString(w, p)
}

// TestOperationsOnlyOnePathReading: a prefix operation must not be a way
// to reach another path of a normalizing upstream ("/v1/public/..%2fadmin"
// is "/v1/admin" to it).
func TestOperationsOnlyOnePathReading(t *testing.T) {
	up := &normalizingUpstream{}
	upstream := httptest.NewServer(up)
	defer upstream.Close()
	c := urlCall(t, upstream.URL)
	c.OperationsOnly = true
	c.Operations = []config.Operation{{Name: "Public", Method: "GET", Path: "/v1/public/"}}
	h := urlPort(t, c)
	for _, p := range []string{
		"/v1/public/../admin", "/v1/public/..%2fadmin", "/v1/public/..%2Fadmin", "/v1/public/%2e%2e/admin",
		"/v1/public/%2e%2e%2fadmin", "/v1/public/.%2e/admin", "/v1/public/..\\admin", "/v1/public/..%5cadmin",
		"/v1/public//../admin", "/v1/public/;/../admin", "/v1/public/%252e%252e/admin", "/v1/public/./../admin",
		"/v1/public/.. /admin", "/v1/public/%c0%ae%c0%ae/admin",
	} {
		req := httptest.NewRequest("GET", "http://127.0.0.1:7000/", nil)
		req.URL = mustRequestURI(t, p)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 400 || rec.Code > 403 {
			t.Errorf("%s: %d %s, want a refusal", p, rec.Code, rec.Body)
		}
	}
	if len(up.served) != 0 {
		t.Errorf("the upstream served %q", up.served)
	}
	if rec := call(h, "GET", "/v1/public/page", "", as{}); rec.Code != 200 || rec.Body.String() != "/v1/public/page" {
		t.Errorf("plain path: %d %s", rec.Code, rec.Body)
	}
}

func mustRequestURI(t *testing.T, p string) *url.URL {
	t.Helper()
	u, err := url.ParseRequestURI(p)
	if err != nil {
		// Go refuses some raw spellings (a space); build the URL as the
		// server would have read it from a request line.
		return &url.URL{Path: p, RawPath: p}
	}
	return u
}

// TestOverridesStrippedTowardsURLEndpoints: the app's upstream must not
// learn another method or URL from headers a caller set.
func TestOverridesStrippedTowardsURLEndpoints(t *testing.T) {
	got := make(chan http.Header, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() }))
	defer upstream.Close()
	h := urlPort(t, urlCall(t, upstream.URL))
	names := []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override", "X-Original-Method", "X-Override-URL", "X-Scheme", "X_HTTP_Method_Override", "HTTP2-Settings"}
	var hdr []string
	for _, n := range names {
		hdr = append(hdr, n, "DELETE")
	}
	if rec := call(h, "POST", "/v1/things", "{}", as{}, hdr...); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	seen := <-got
	for _, n := range names {
		for k := range seen {
			if strings.EqualFold(strings.ReplaceAll(k, "_", "-"), strings.ReplaceAll(n, "_", "-")) {
				t.Errorf("upstream saw %s", k)
			}
		}
	}
	if seen.Get("Content-Type") != "application/json" {
		t.Errorf("ordinary headers lost: %v", seen)
	}
}

// TestCallingPortHostGuard: a web page on a name that resolves to this
// machine (DNS rebinding) must not be able to make calls as a user.
func TestCallingPortHostGuard(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	c := pdsCall()
	c.Hosts = []string{"ioproxy.service.consul"}
	h := e.port(t, c)
	for _, tc := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:7000", 200},
		{"[::1]:7000", 200},
		{"localhost:7000", 200},
		{"ioproxy.service.consul:7000", 200},
		{"rebind.attacker.example:7000", 403},
		{"localhost.attacker.example", 403},
		{"127.0.0.1.nip.io:7000", 403},
	} {
		before := e.srv.Counts().XRPC
		req := httptest.NewRequest("GET", "http://127.0.0.1:7000/xrpc/com.example.echo", nil)
		req.Host = tc.host
		req.Header.Set("User-Did", sess.DID)
		req.Header.Set("Proxy-Session", sess.ProxyKey)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("Host %s: %d %s, want %d", tc.host, rec.Code, rec.Body, tc.want)
		}
		if tc.want == 403 {
			if code := xrpcError(t, rec); code != "HostNotAllowed" || !strings.Contains(rec.Body.String(), "hosts = [") {
				t.Errorf("Host %s: %s", tc.host, rec.Body)
			}
			if e.srv.Counts().XRPC != before {
				t.Errorf("Host %s: the refused call reached the PDS", tc.host)
			}
		}
	}
}

// TestServiceProxiesAllowList: Atproto-Proxy makes the PDS mint a token
// for another service on the user's behalf; a call block may name the
// services it allows.
func TestServiceProxiesAllowList(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	const appview = "did:web:api.bsky.app#bsky_appview"
	for _, tc := range []struct {
		name    string
		list    []string
		set     bool
		proxy   string
		allowed bool
	}{
		{"no list forwards any", nil, false, "did:web:evil.example#svc", true},
		{"listed", []string{appview}, true, appview, true},
		{"not listed", []string{appview}, true, "did:web:evil.example#bsky_appview", false},
		{"other fragment", []string{appview}, true, "did:web:api.bsky.app#atproto_labeler", false},
		{"empty list allows none", []string{}, true, appview, false},
		{"no header is fine with a list", []string{appview}, true, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := pdsCall()
			c.ServiceProxies, c.ServiceProxiesSet = tc.list, tc.set
			h := e.port(t, c)
			before := e.srv.Counts().XRPC
			var hdr []string
			if tc.proxy != "" {
				hdr = []string{"Atproto-Proxy", tc.proxy}
			}
			rec := call(h, "GET", "/xrpc/app.bsky.actor.getProfile", "", who(sess), hdr...)
			if !tc.allowed {
				if rec.Code != http.StatusForbidden || xrpcError(t, rec) != "ServiceProxyNotAllowed" || !strings.Contains(rec.Body.String(), tc.proxy) {
					t.Errorf("%d %s, want 403 ServiceProxyNotAllowed naming %s", rec.Code, rec.Body, tc.proxy)
				}
				if e.srv.Counts().XRPC != before {
					t.Error("the refused call reached the PDS")
				}
				return
			}
			if rec.Code != 200 || echoOf(t, rec).ServiceProxy != tc.proxy {
				t.Errorf("%d %s, want the call forwarded with Atproto-Proxy %q", rec.Code, rec.Body, tc.proxy)
			}
		})
	}
	// Two headers: each must be allowed.
	c := pdsCall()
	c.ServiceProxies, c.ServiceProxiesSet = []string{appview}, true
	req := httptest.NewRequest("GET", "http://127.0.0.1:7000/xrpc/app.bsky.actor.getProfile", nil)
	req.Header.Set("User-Did", sess.DID)
	req.Header.Set("Proxy-Session", sess.ProxyKey)
	req.Header["Atproto-Proxy"] = []string{appview, "did:web:evil.example#svc"}
	rec := httptest.NewRecorder()
	e.port(t, c).ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("a second, unlisted Atproto-Proxy: %d %s", rec.Code, rec.Body)
	}
}

// TestFailedCallsLogNoQueryOrToken: a call to a PDS that is down logs the
// failure, but not the call's query (cursors, search terms, repo names)
// nor any token, through the process logger.
func TestFailedCallsLogNoQueryOrToken(t *testing.T) {
	e := newCallEnv(t)
	sess, dead := e.signInOnDeadPDS(t)
	carol := e.srv.AddAccount(atprototest.Account{Handle: "carol.test", PDS: dead})
	for _, format := range []string{"text", "json"} {
		var logs bytes.Buffer
		h, err := New(Config{Call: pdsCall(), Sessions: e.tokens, Identity: e.resolver, PDSClient: e.pdsClient, Nonces: e.nonces,
			Logger: admin.NewLogger(&logs, config.Log{Level: slog.LevelDebug, Format: format})})
		if err != nil {
			t.Fatal(err)
		}
		for _, who := range []as{who(sess), {did: carol.DID}} {
			if rec := call(h, "GET", "/xrpc/com.atproto.repo.listRecords?repo=SECRETREPO&cursor=SECRETCURSOR", "", who); rec.Code != http.StatusBadGateway {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
		out := logs.String()
		if !strings.Contains(out, "PDS call failed") {
			t.Fatalf("%s: the failure was not logged:\n%s", format, out)
		}
		for _, secret := range []string{"SECRETREPO", "SECRETCURSOR", sess.AccessToken, sess.RefreshToken} {
			if strings.Contains(out, secret) {
				t.Errorf("%s: the log shows %q:\n%s", format, secret, out)
			}
		}
	}
}
