package ingress

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// echoBackend answers with what it received, as JSON.
type seen struct {
	Host    string
	Path    string
	Query   string
	Headers http.Header
	Body    string
}

func echoBackend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		_ = json.NewEncoder(w).Encode(seen{Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery, Headers: r.Header, Body: string(b)})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func mustConfig(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, diags := config.Parse([]byte(src), "test.hcl", config.Options{LookupEnv: func(string) (string, bool) { return "", false }})
	if diags.HasErrors() {
		t.Fatalf("config: %v", diags)
	}
	return cfg
}

func openStore(t *testing.T) sessions.Store {
	t.Helper()
	s, err := boltstore.Open(boltstore.Config{Path: filepath.Join(t.TempDir(), "data", "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newRouter(t *testing.T, cfg *config.Config, store sessions.Store) *Router {
	t.Helper()
	var life *sessions.Lifecycle
	if store != nil {
		life = sessions.NewLifecycle(sessions.LifecycleConfig{Store: store})
	}
	rt, err := New(Config{Config: cfg, Sessions: life, Nomad: NewNomad(NomadConfig{Nomad: cfg.Nomad})})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func get(t *testing.T, h http.Handler, host, path string, hdr http.Header) (*http.Response, seen) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://"+host+path, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var s seen
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && rec.Header().Get("X-Backend") != "" {
		_ = json.Unmarshal(rec.Body.Bytes(), &s)
	}
	return rec.Result(), s
}

func TestRoutesByHost(t *testing.T) {
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	cfg := mustConfig(t, fmt.Sprintf(`
host "a.example.com" { backend = %q }
host "b.example.com" { backend = %q }
`, a.URL, strings.TrimPrefix(b.URL, "http://")))
	rt := newRouter(t, cfg, nil)
	for _, tt := range []struct{ host, want string }{
		{"a.example.com", "a"},
		{"A.Example.COM:8443", "a"},
		{"b.example.com.", "b"},
	} {
		resp, s := get(t, rt, tt.host, "/x?q=1", nil)
		if got := resp.Header.Get("X-Backend"); got != tt.want {
			t.Errorf("host %s went to %q, want %q", tt.host, got, tt.want)
		}
		if s.Path != "/x" || s.Query != "q=1" || s.Host != tt.host {
			t.Errorf("backend saw %+v", s)
		}
	}
	resp, _ := get(t, rt, "evil.example.com", "/", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 404 || resp.Header.Get("X-Backend") != "" || !strings.Contains(string(body), "Unknown host") {
		t.Errorf("unknown host: %d %q", resp.StatusCode, body)
	}
}

func TestAtPathsNeverReachBackend(t *testing.T) {
	a := echoBackend(t, "a")
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "a.example.com" { backend = %q }`, a.URL)), nil)
	for _, p := range []string{"/@", "/@/", "/@/signin", "/@/anything/else"} {
		resp, _ := get(t, rt, "a.example.com", p, nil)
		if resp.StatusCode != 404 || resp.Header.Get("X-Backend") != "" {
			t.Errorf("%s: status %d, backend %q", p, resp.StatusCode, resp.Header.Get("X-Backend"))
		}
	}
	if resp, _ := get(t, rt, "a.example.com", "/@alice", nil); resp.Header.Get("X-Backend") != "a" {
		t.Error("/@alice is an app path and must reach the backend")
	}
}

// A hostile client tries every spelling of the identity headers; none may
// reach the backend, signed in or not.
func TestHostileClientCannotSetIdentityHeaders(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	cfg := mustConfig(t, fmt.Sprintf(`
host "a.example.com" {
  backend = %q
  atproto {}
  tls { mode = "off" }
}`, a.URL))
	rt := newRouter(t, cfg, store)
	sess := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "a.example.com", DID: "did:plc:real", Handle: "real.test",
		Scope: "atproto repo:xyz.statusphere.status", CreatedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}
	if _, err := store.Create(context.Background(), sess); err != nil {
		t.Fatal(err)
	}
	hostile := http.Header{
		"User-Scope":    {"atproto transition:generic"},
		"User_scope":    {"atproto transition:generic"},
		"User-Did":      {"did:plc:evil"},
		"user-did":      {"did:plc:evil2"},
		"User_did":      {"did:plc:evil3"},
		"USER_DID":      {"did:plc:evil4"},
		"User-Handle":   {"evil.test", "evil2.test"},
		"User_handle":   {"evil.test"},
		"Proxy-Session": {"stolen"},
		"Proxy_session": {"stolen"},
		"PROXY-SESSION": {"stolen"},
		"Connection":    {"User-Did, Proxy-Session, User-Handle"},
	}
	check := func(t *testing.T, s seen, want map[string]string) {
		for name, vals := range s.Headers {
			if contract.IsIdentity(name) {
				w, ok := want[http.CanonicalHeaderKey(name)]
				if !ok || len(vals) != 1 || vals[0] != w || name != http.CanonicalHeaderKey(name) {
					t.Errorf("backend saw %s: %q", name, vals)
				}
			}
		}
		for k, v := range want {
			if got := s.Headers.Get(k); got != v {
				t.Errorf("backend %s = %q, want %q", k, got, v)
			}
		}
	}
	t.Run("signed out", func(t *testing.T) {
		_, s := get(t, rt, "a.example.com", "/", hostile)
		check(t, s, map[string]string{})
	})
	t.Run("signed in", func(t *testing.T) {
		h := hostile.Clone()
		h.Set("Cookie", CookieName+"="+sess.ID+"; theme=dark")
		_, s := get(t, rt, "a.example.com", "/", h)
		check(t, s, map[string]string{"User-Did": "did:plc:real", "User-Handle": "real.test", "User-Scope": sess.Scope, "Proxy-Session": sess.ProxyKey})
		if c := s.Headers.Get("Cookie"); c != "theme=dark" {
			t.Errorf("backend saw Cookie %q; the session cookie must be removed and others kept", c)
		}
	})
	t.Run("session of another host", func(t *testing.T) {
		other := sess
		other.ID, other.ProxyKey, other.Host = sessions.NewToken(), sessions.NewToken(), "b.example.com"
		_, _ = store.Create(context.Background(), other)
		h := hostile.Clone()
		h.Set("Cookie", CookieName+"="+other.ID)
		_, s := get(t, rt, "a.example.com", "/", h)
		check(t, s, map[string]string{})
	})
	t.Run("unknown cookie", func(t *testing.T) {
		h := hostile.Clone()
		h.Set("Cookie", CookieName+"=forged")
		_, s := get(t, rt, "a.example.com", "/", h)
		check(t, s, map[string]string{})
	})
}

// The same attack over a real connection, with raw header bytes that
// httptest.NewRequest would normalize.
func TestHostileClientOverTheWire(t *testing.T) {
	a := echoBackend(t, "a")
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "a.example.com" { backend = %q }`, a.URL)), nil)
	srv := httptest.NewServer(rt)
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := "GET / HTTP/1.1\r\nHost: a.example.com\r\nuser-did: did:plc:evil\r\nUser_Did: did:plc:evil\r\nuSeR-hAnDlE: evil\r\nproxy_session: x\r\nConnection: keep-alive, User-Did\r\n\r\n"
	if _, err := conn.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	var s seen
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	for name := range s.Headers {
		if contract.IsIdentity(name) {
			t.Errorf("backend saw %s", name)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	a := echoBackend(t, "a")
	cfg := mustConfig(t, fmt.Sprintf(`
ingress { trusted_proxies = ["10.0.0.0/8"] }
host "a.example.com" { backend = %q }`, a.URL))
	rt := newRouter(t, cfg, nil)
	for _, tt := range []struct {
		remote, wantXFF, wantProto string
	}{
		{"203.0.113.9:5555", "203.0.113.9", "http"},
		{"10.1.2.3:5555", "198.51.100.1, 10.1.2.3", "https"},
	} {
		req := httptest.NewRequest(http.MethodGet, "http://a.example.com/", nil)
		req.RemoteAddr = tt.remote
		req.Header.Set("X-Forwarded-For", "198.51.100.1")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("Forwarded", "for=198.51.100.1")
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, req)
		var s seen
		_ = json.Unmarshal(rec.Body.Bytes(), &s)
		if got := s.Headers.Get("X-Forwarded-For"); got != tt.wantXFF {
			t.Errorf("from %s: X-Forwarded-For = %q, want %q", tt.remote, got, tt.wantXFF)
		}
		if got := s.Headers.Get("X-Forwarded-Proto"); got != tt.wantProto {
			t.Errorf("from %s: X-Forwarded-Proto = %q, want %q", tt.remote, got, tt.wantProto)
		}
		if got := s.Headers.Get("X-Forwarded-Host"); got != "a.example.com" {
			t.Errorf("X-Forwarded-Host = %q", got)
		}
	}
}

func TestBackendDownGivesReadable502(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "a.example.com" { backend = %q }`, addr)), nil)
	resp, _ := get(t, rt, "a.example.com", "/", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "not reachable") {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	resp, _ = get(t, rt, "a.example.com", "/", http.Header{"Accept": {"application/json"}})
	body, _ = io.ReadAll(resp.Body)
	if !strings.Contains(string(body), `"error":"BadGateway"`) {
		t.Fatalf("JSON error body %q", body)
	}
}

func TestStreamingAndWebSockets(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := 0; i < 3; i++ {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(20 * time.Millisecond)
			}
		case "/ws":
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			_ = c.Write(r.Context(), typ, append([]byte("echo "), msg...))
		}
	}))
	defer backend.Close()
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "127.0.0.1" { backend = %q }`, backend.URL)), nil)
	srv := httptest.NewServer(rt)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || first != "data: 0\n" {
		t.Fatalf("first event %q %v", first, err)
	}
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatalf("websocket through ingress: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "echo hi" {
		t.Fatalf("websocket echo %q %v", msg, err)
	}
}

func TestBackendPathPrefix(t *testing.T) {
	a := echoBackend(t, "a")
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "a.example.com" { backend = "%s/base/" }`, a.URL)), nil)
	_, s := get(t, rt, "a.example.com", "/x", nil)
	if s.Path != "/base/x" {
		t.Fatalf("backend path %q, want /base/x", s.Path)
	}
}

// fakeNomad serves /v1/service/<name> from a mutable list.
type fakeNomad struct {
	mu        sync.Mutex
	instances map[string][]nomadRegistration
	checks    map[string]map[string]nomadCheck // alloc id -> check id -> check
	token     string
	calls     int
}

func (f *fakeNomad) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.Header.Get("X-Nomad-Token") != f.token {
		http.Error(w, "Permission denied", http.StatusForbidden)
		return
	}
	if alloc, ok := strings.CutPrefix(r.URL.Path, "/v1/client/allocation/"); ok {
		alloc = strings.TrimSuffix(alloc, "/checks")
		_ = json.NewEncoder(w).Encode(f.checks[alloc])
		return
	}
	f.calls++
	name := strings.TrimPrefix(r.URL.Path, "/v1/service/")
	_ = json.NewEncoder(w).Encode(f.instances[name])
}

func hostPort(t *testing.T, raw string) (string, int) {
	u, _ := url.Parse(raw)
	h, p, _ := net.SplitHostPort(u.Host)
	var n int
	fmt.Sscan(p, &n)
	return h, n
}

func TestNomadBackend(t *testing.T) {
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	ah, ap := hostPort(t, a.URL)
	bh, bp := hostPort(t, b.URL)
	fn := &fakeNomad{token: "secret", instances: map[string][]nomadRegistration{
		"web": {{Address: ah, Port: ap}, {Address: bh, Port: bp}},
	}}
	nomad := httptest.NewServer(fn)
	defer nomad.Close()
	cfg := mustConfig(t, fmt.Sprintf(`
nomad {
  address = %q
  token = "secret"
}
host "a.example.com" { backend = "nomad:web" }
host "b.example.com" { backend = "nomad:empty" }`, nomad.URL))
	rt := newRouter(t, cfg, nil)
	got := map[string]int{}
	for i := 0; i < 10; i++ {
		resp, _ := get(t, rt, "a.example.com", "/", nil)
		got[resp.Header.Get("X-Backend")]++
	}
	if got["a"] != 5 || got["b"] != 5 {
		t.Errorf("load spread = %v, want 5 and 5", got)
	}
	if fn.calls != 1 {
		t.Errorf("nomad asked %d times; the instances must be cached", fn.calls)
	}
	// An instance that stops is avoided after its first failure.
	b.Close()
	got = map[string]int{}
	for i := 0; i < 10; i++ {
		resp, _ := get(t, rt, "a.example.com", "/", nil)
		got[fmt.Sprint(resp.StatusCode, resp.Header.Get("X-Backend"))]++
	}
	if got["200a"] < 9 {
		t.Errorf("after b stopped: %v; want at most one failure", got)
	}
	resp, _ := get(t, rt, "b.example.com", "/", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "no running instance") {
		t.Errorf("service without instances: %d %q", resp.StatusCode, body)
	}
}

func TestNomadUnreachable(t *testing.T) {
	cfg := mustConfig(t, `
nomad { address = "http://127.0.0.1:1" }
host "a.example.com" { backend = "nomad:web" }`)
	rt := newRouter(t, cfg, nil)
	resp, _ := get(t, rt, "a.example.com", "/", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d", resp.StatusCode)
	}
}

func TestRequireATProto(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	cfg := mustConfig(t, fmt.Sprintf(`
host "tool.example.com" {
  backend = %q
  require_atproto {
    dids         = ["did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"]
    handles      = ["bob.example.com", "*.team.example.com"]
    public_paths = ["/healthz", "/static/*"]
  }
}`, a.URL))
	rt := newRouter(t, cfg, store)
	browser := http.Header{"Accept": {"text/html,application/xhtml+xml"}, "Sec-Fetch-Mode": {"navigate"}}
	resp, _ := get(t, rt, "tool.example.com", "/admin?x=1", browser)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/@/signin?redirect=%2Fadmin%3Fx%3D1" {
		t.Errorf("signed-out browser: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, hdr := range []http.Header{{"Accept": {"application/json"}}, {"Accept": {"*/*"}}, {}, {"Accept": {"text/html"}, "Sec-Fetch-Mode": {"cors"}}} {
		resp, _ = get(t, rt, "tool.example.com", "/api", hdr)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Backend") != "" {
			t.Errorf("signed-out API call %v: %d", hdr, resp.StatusCode)
		}
	}
	for _, p := range []string{"/healthz", "/static/app.css", "/static/"} {
		if resp, s := get(t, rt, "tool.example.com", p, nil); resp.StatusCode != 200 || s.Headers.Get("User-Did") != "" {
			t.Errorf("public %s: %d", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/healthz/x", "/static", "/Static/x", "/static/../admin", "/static/..%2fadmin", "/static/%2e%2e/admin", "/static//x", "/static;/../admin", "/static/%5c..%5cadmin"} {
		u, err := url.Parse("http://tool.example.com" + p)
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "http://tool.example.com/", nil)
		req.URL = u
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, req)
		if rec.Header().Get("X-Backend") != "" || (rec.Code != http.StatusUnauthorized && rec.Code != http.StatusPermanentRedirect) {
			t.Errorf("%s passed as public: %d", p, rec.Code)
		}
	}
	tests := []struct {
		did, handle string
		want        int
	}{
		{"did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "anyone.example.net", 200},
		{"did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", "bob.example.com", 200},
		{"did:plc:bbbbbbbbbbbbbbbbbbbbbbbb", "BOB.example.com", 200},
		{"did:plc:cccccccccccccccccccccccc", "carol.team.example.com", 200},
		{"did:plc:cccccccccccccccccccccccc", "team.example.com", 403},
		{"did:plc:cccccccccccccccccccccccc", "carol.team.example.com.evil.net", 403},
		{"did:plc:dddddddddddddddddddddddd", "handle.invalid", 403},
		{"did:plc:dddddddddddddddddddddddd", "mallory.example.net", 403},
	}
	for _, tt := range tests {
		sess := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "tool.example.com", DID: tt.did, Handle: tt.handle, CreatedAt: time.Now(), Expiry: time.Now().Add(time.Hour), TokenExpiry: time.Now().Add(time.Hour)}
		if _, err := store.Create(context.Background(), sess); err != nil {
			t.Fatal(err)
		}
		cookie := http.Header{"Cookie": {CookieName + "=" + sess.ID}, "Accept": {"text/html"}}
		resp, seen := get(t, rt, "tool.example.com", "/", cookie)
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s: status %d, want %d", tt.did, tt.handle, resp.StatusCode, tt.want)
		}
		if tt.want == 200 && seen.Headers.Get("User-Did") != tt.did {
			t.Errorf("%s: backend saw User-Did %q", tt.did, seen.Headers.Get("User-Did"))
		}
		// On a public path a refused account passes as nobody.
		resp, seen = get(t, rt, "tool.example.com", "/healthz", cookie)
		if resp.StatusCode != 200 || (tt.want == 403) != (seen.Headers.Get("User-Did") == "") {
			t.Errorf("%s on a public path: %d, User-Did %q", tt.did, resp.StatusCode, seen.Headers.Get("User-Did"))
		}
	}
}

func TestRemoveCookie(t *testing.T) {
	for in, want := range map[string]string{
		"ioproxy-session=abc":                        "",
		"a=1; ioproxy-session=abc; b=2":              "a=1; b=2",
		"__Host-ioproxy-session=x;a=1":               "a=1",
		"ioproxy-session-other=1; ioproxy-session=2": "ioproxy-session-other=1",
	} {
		h := http.Header{"Cookie": {in}}
		removeCookies(h, func(name string) bool { return name == CookieName || name == SecureCookieName })
		if got := h.Get("Cookie"); got != want {
			t.Errorf("removeCookie(%q) = %q, want %q", in, got, want)
		}
	}
}

// Paths that a normalizing backend would read as /@/… never reach the
// backend: they are redirected to their clean form, which ioproxy serves.
func TestAtPathSpellingsNeverReachBackend(t *testing.T) {
	a := echoBackend(t, "a")
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "a.example.com" { backend = %q }`, a.URL)), nil)
	for _, p := range []string{"//@/signin", "/./@/signin", "/x/../@/callback?state=1", "/%2e/@/signin", "/@/./signin", "/@//signin", "/%2F@/signin",
		"/@%5Csignin", "/%5C@/signin", "/@;x/signin", "/%40;/signin", "/%40%5C%5Csignin"} {
		req := httptest.NewRequest(http.MethodGet, "http://a.example.com/", nil)
		req.URL.Path, req.URL.RawPath = "", ""
		u, err := url.Parse("http://a.example.com" + p)
		if err != nil {
			t.Fatal(err)
		}
		req.URL = u
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, req)
		if rec.Header().Get("X-Backend") != "" {
			t.Errorf("%s reached the backend", p)
			continue
		}
		if loc := rec.Header().Get("Location"); rec.Code == http.StatusPermanentRedirect && !strings.HasPrefix(loc, "/@/") {
			t.Errorf("%s redirected to %q", p, loc)
		}
	}
}

// From an untrusted client, every header frameworks read for the client
// address or the public URL is dropped or overwritten.
func TestSpoofedAddressHeadersDropped(t *testing.T) {
	a := echoBackend(t, "a")
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "a.example.com" { backend = %q }`, a.URL)), nil)
	hdr := http.Header{}
	for _, h := range []string{"X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix", "True-Client-Ip", "X-Client-Ip", "X-Original-Url", "Forwarded", "X-Forwarded-Host",
		"X_Forwarded_For", "X_Real_Ip", "Client-Ip", "X-Forwarded", "Forwarded-For", "X-Original-Forwarded-For", "X-Appengine-User-Ip", "X-Azure-Clientip"} {
		hdr.Set(h, "6.6.6.6")
	}
	_, s := get(t, rt, "a.example.com", "/", hdr)
	for name, v := range s.Headers {
		for _, val := range v {
			if strings.Contains(val, "6.6.6.6") {
				t.Errorf("backend saw %s: %s", name, val)
			}
		}
	}
	if got := s.Headers.Get("X-Real-Ip"); got != "192.0.2.1" {
		t.Errorf("X-Real-Ip = %q, want the peer address", got)
	}
}

// Behind a trusted TLS terminator, the browser's scheme comes from
// X-Forwarded-Proto: cookies are __Host- and Secure, and same-origin checks
// expect https.
func TestHTTPSBehindTrustedProxy(t *testing.T) {
	for _, tt := range []struct {
		remote string
		https  bool
	}{{"10.0.0.2:4000", true}, {"203.0.113.5:4000", false}} {
		req := httptest.NewRequest(http.MethodGet, "http://a.example.com/", nil)
		req.RemoteAddr = tt.remote
		req.Header.Set("X-Forwarded-Proto", "https")
		var seen *http.Request
		rt := &Router{recorder: observe.Discard{}}
		routes := &Routes{trustedProxies: mustConfig(t, `ingress { trusted_proxies = ["10.0.0.0/8"] }`).Ingress.TrustedProxies}
		hr := &hostRoute{router: rt, routes: routes, signIn: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r })}
		req.URL.Path = "/@/signin"
		hr.ServeHTTP(httptest.NewRecorder(), req)
		if seen == nil {
			t.Fatal("sign-in handler not reached")
		}
		if got := isHTTPS(seen); got != tt.https {
			t.Errorf("from %s: isHTTPS = %v, want %v", tt.remote, got, tt.https)
		}
		if tt.https && cookieName(seen) != SecureCookieName {
			t.Errorf("cookie name %q behind a trusted TLS proxy", cookieName(seen))
		}
	}
}

// A request whose session's access token has expired, or whose handle is
// due for a recheck, asks for a background refresh; a fresh one does not.
func TestStaleSessionHook(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	cfg := mustConfig(t, fmt.Sprintf(`
host "a.example.com" {
  backend = %q
  atproto {}
  tls { mode = "off" }
}`, a.URL))
	var stale []string
	rt, err := New(Config{Config: cfg, Sessions: sessions.NewLifecycle(sessions.LifecycleConfig{Store: store}), StaleSession: func(s sessions.Session) { stale = append(stale, s.DID) }})
	if err != nil {
		t.Fatal(err)
	}
	for did, st := range map[string]struct{ expiry, checked time.Time }{
		"did:plc:fresh":      {time.Now().Add(time.Hour), time.Now()},
		"did:plc:stale":      {time.Now().Add(-time.Minute), time.Now()},
		"did:plc:handle-due": {time.Now().Add(time.Hour), time.Now().Add(-sessions.HandleRecheck - time.Minute)},
	} {
		sess := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "a.example.com", DID: did, TokenExpiry: st.expiry, CreatedAt: time.Now(), HandleCheckedAt: st.checked, Expiry: time.Now().Add(time.Hour)}
		_, _ = store.Create(context.Background(), sess)
		resp, s := get(t, rt, "a.example.com", "/", http.Header{"Cookie": {CookieName + "=" + sess.ID}})
		if resp.StatusCode != 200 || s.Headers.Get("User-Did") != did {
			t.Errorf("%s: %d %q", did, resp.StatusCode, s.Headers.Get("User-Did"))
		}
	}
	slices.Sort(stale)
	if want := []string{"did:plc:handle-due", "did:plc:stale"}; !slices.Equal(stale, want) {
		t.Errorf("stale hook calls: %v, want %v", stale, want)
	}
}

// Instances whose Nomad health checks fail get no traffic.
func TestNomadHealthChecks(t *testing.T) {
	a, b := echoBackend(t, "a"), echoBackend(t, "b")
	ah, ap := hostPort(t, a.URL)
	bh, bp := hostPort(t, b.URL)
	fn := &fakeNomad{
		instances: map[string][]nomadRegistration{"web": {
			{ServiceName: "web", AllocID: "alloc-a", Address: ah, Port: ap},
			{ServiceName: "web", AllocID: "alloc-b", Address: bh, Port: bp},
		}},
		checks: map[string]map[string]nomadCheck{
			"alloc-a": {"c1": {Service: "web", Status: "success"}},
			"alloc-b": {"c2": {Service: "web", Status: "failure"}, "c3": {Service: "other", Status: "success"}},
		},
	}
	nomad := httptest.NewServer(fn)
	defer nomad.Close()
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`
nomad { address = %q }
host "a.example.com" { backend = "nomad:web" }`, nomad.URL)), nil)
	for i := 0; i < 6; i++ {
		if resp, _ := get(t, rt, "a.example.com", "/", nil); resp.Header.Get("X-Backend") != "a" {
			t.Fatalf("request %d went to %q; b fails its checks", i, resp.Header.Get("X-Backend"))
		}
	}
}

// getSession is a store lookup as the tests read it: found or not.
func getSession(store sessions.Store, id string) (sessions.Session, bool) {
	sess, err := store.Get(context.Background(), id)
	return sess, err == nil
}

// countSessions is the number of sessions stored.
func countSessions(store sessions.Store) int {
	n, _ := store.Count(context.Background())
	return n
}
