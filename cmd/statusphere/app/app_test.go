package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/cmd/statusphere/app"
	"github.com/ioproxy/ioproxy/cmd/statusphere/jetstream/jetstreamtest"
	"github.com/ioproxy/ioproxy/cmd/statusphere/store"
)

// call is one request as the fake calling port received it.
type call struct {
	Method, Path string
	Query        url.Values
	Header       http.Header
	Body         []byte
}

// callingPort fakes ioproxy's calling port: it records every request and answers
// createRecord and describeRepo as a PDS would.
type callingPort struct {
	mu      sync.Mutex
	calls   []call
	handles map[string]string // did -> handle, for describeRepo
	// create answers createRecord; nil answers with a fresh record URI.
	create func(did string) (int, string)
	n      int
}

func (c *callingPort) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.calls = append(c.calls, call{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), body})
	c.n++
	n, create := c.n, c.create
	handle, known := c.handles[r.Header.Get("User-Did")]
	c.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	did := r.Header.Get("User-Did")
	switch r.URL.Path {
	case "/xrpc/com.atproto.repo.createRecord":
		if create != nil {
			code, body := create(did)
			w.WriteHeader(code)
			io.WriteString(w, body)
			return
		}
		fmt.Fprintf(w, `{"uri":"at://%s/xyz.statusphere.status/3n33jai3lbc%s","cid":"bafyrei%d","commit":{"cid":"bafyc","rev":"3n33jai3lbc2a"},"validationStatus":"unknown"}`,
			did, string("abcdefghijklmnopqrstuvwxyz"[n%26])+"2", n)
	case "/xrpc/com.atproto.repo.describeRepo":
		if !known {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"RepoNotFound","message":"Could not find repo"}`)
			return
		}
		fmt.Fprintf(w, `{"handle":%q,"did":%q,"didDoc":{},"collections":[],"handleIsCorrect":true}`, handle, did)
	case "/xrpc/com.atproto.identity.resolveHandle":
		// ioproxy answers this itself, verified both ways.
		want := r.URL.Query().Get("handle")
		c.mu.Lock()
		defer c.mu.Unlock()
		for d, h := range c.handles {
			if h == want {
				fmt.Fprintf(w, `{"did":%q}`, d)
				return
			}
		}
		w.WriteHeader(400)
		io.WriteString(w, `{"error":"HandleNotFound","message":"no such handle"}`)
	default:
		w.WriteHeader(404)
		io.WriteString(w, `{"error":"MethodNotImplemented"}`)
	}
}

func (c *callingPort) callsTo(path string) []call {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []call
	for _, cl := range c.calls {
		if cl.Path == path {
			out = append(out, cl)
		}
	}
	return out
}

// fixture is an app with a fake calling port and a fixed clock.
type fixture struct {
	app  *app.App
	port *callingPort
	srv  *httptest.Server // the calling port
	now  time.Time
}

var now = time.Date(2026, 11, 24, 15, 30, 0, 0, time.UTC)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	port := &callingPort{handles: map[string]string{"did:plc:bob": "bob.test"}}
	srv := httptest.NewServer(port)
	t.Cleanup(srv.Close)
	a, err := app.New(context.Background(), app.Config{
		ProxyURL: srv.URL,
		DBPath:   filepath.Join(t.TempDir(), "statusphere.sqlite"),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:      func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return &fixture{app: a, port: port, srv: srv, now: now}
}

// as makes a request the way ioproxy forwards it: with identity headers for a signed-in user.
type as struct{ did, handle, session string }

var alice = as{"did:plc:alice", "alice.test", "sess-alice"}
var nobody = as{}

func (f *fixture) do(t *testing.T, who as, method, target string, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, target, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if who.did != "" {
		r.Header.Set("User-Did", who.did)
		r.Header.Set("User-Handle", who.handle)
		r.Header.Set("Proxy-Session", who.session)
	}
	w := httptest.NewRecorder()
	f.app.Handler().ServeHTTP(w, r)
	return w
}

func (f *fixture) put(t *testing.T, did, rkey, emoji string, indexed time.Time) {
	t.Helper()
	err := f.app.Store().PutStatus(context.Background(), store.Status{
		URI: "at://" + did + "/xyz.statusphere.status/" + rkey, AuthorDID: did, Status: emoji,
		CreatedAt: indexed.UTC().Format(time.RFC3339), IndexedAt: indexed,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustContain(t *testing.T, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("page does not contain %q", w)
		}
	}
}

func mustNotContain(t *testing.T, body string, nots ...string) {
	t.Helper()
	for _, n := range nots {
		if strings.Contains(body, n) {
			t.Errorf("page contains %q", n)
		}
	}
}

var spaces = regexp.MustCompile(`\s+`)

// text is the body with runs of white space collapsed, for matching sentences.
func text(w *httptest.ResponseRecorder) string { return spaces.ReplaceAllString(w.Body.String(), " ") }

func TestHomeSignedOut(t *testing.T) {
	f := newFixture(t)
	f.put(t, "did:plc:bob", "3n33jai3lbc2a", "🦋", now.Add(-time.Hour))
	f.put(t, "did:plc:carol", "3n33jai3lbc2b", "🚀", now.Add(-26*time.Hour))
	f.put(t, "did:plc:bob", "3n33jai3lbc2c", "👍", now.Add(-5*24*time.Hour))

	w := f.do(t, nobody, "GET", "/", nil)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	body := text(w)
	mustContain(t, body,
		`<link rel="stylesheet" href="/public/styles.css">`,
		`<h1>Statusphere</h1>`,
		`<a href="/login">Log in</a> to set your status!`,
		`<a href="/login" class="button">Log in</a>`,
		`<form action="/status" method="post" class="status-options">`,
		`<button class="status-option" name="status" value="👩‍💻">👩‍💻</button>`,
		// newest first, with handles and relative dates
		`<div class="status-line no-line"> <div><div class="status">🦋</div></div> <div class="desc"> <a class="author" href="https://bsky.app/profile/bob.test">@bob.test</a> is feeling 🦋 today`,
		`<a class="author" href="https://bsky.app/profile/did:plc:carol">@did:plc:carol</a> was feeling 🚀 <time datetime="2026-11-23T13:30:00Z">yesterday</time>`,
		`was feeling 👍 <time datetime="2026-11-19T15:30:00Z">on Thu Nov 19 2026</time>`,
	)
	mustNotContain(t, body, "Log out", "selected", `class="error visible"`)
	if n := len(regexp.MustCompile(`class="status-option( selected)?"`).FindAllString(body, -1)); n != 26 {
		t.Errorf("%d emoji buttons, want 26", n)
	}

	// Handles were looked up through the calling port, publicly, with User-Did set to the author.
	looks := f.port.callsTo("/xrpc/com.atproto.repo.describeRepo")
	if len(looks) != 2 {
		t.Fatalf("%d describeRepo calls, want one per author", len(looks))
	}
	for _, c := range looks {
		if c.Method != "GET" || c.Query.Get("repo") != c.Header.Get("User-Did") || c.Header.Get("Proxy-Session") != "" {
			t.Errorf("describeRepo call = %s %v User-Did=%q Proxy-Session=%q", c.Method, c.Query, c.Header.Get("User-Did"), c.Header.Get("Proxy-Session"))
		}
	}
	f.do(t, nobody, "GET", "/", nil)
	if n := len(f.port.callsTo("/xrpc/com.atproto.repo.describeRepo")); n != 2 {
		t.Errorf("handles not cached: %d describeRepo calls after two pages", n)
	}
}

func TestHomeSignedIn(t *testing.T) {
	f := newFixture(t)
	f.put(t, "did:plc:alice", "3n33jai3lbc2a", "🤓", now.Add(-time.Hour))
	f.put(t, "did:plc:alice", "3n33jai3lbc2b", "🧠", now.Add(-time.Minute))

	body := text(f.do(t, alice, "GET", "/", nil))
	mustContain(t, body,
		`<form action="/@/signout" method="post" class="session-form">`,
		`Hi, <strong>@alice.test</strong>. What's your status today?`,
		`<button type="submit">Log out</button>`,
		`<button class="status-option selected" name="status" value="🧠">🧠</button>`,
		`<button class="status-option" name="status" value="🤓">🤓</button>`,
		`@alice.test</a> is feeling 🧠 today`,
	)
	mustNotContain(t, body, `to set your status!`)
	// The user's own handle comes from User-Handle; no lookup needed.
	if n := len(f.port.callsTo("/xrpc/com.atproto.repo.describeRepo")); n != 0 {
		t.Errorf("%d describeRepo calls for the signed-in user's own handle", n)
	}
}

func TestSetStatus(t *testing.T) {
	f := newFixture(t)
	w := f.do(t, alice, "POST", "/status", url.Values{"status": {"👩‍💻"}})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
		t.Fatalf("POST /status = %d Location %q: %s", w.Code, w.Header().Get("Location"), w.Body)
	}

	calls := f.port.callsTo("/xrpc/com.atproto.repo.createRecord")
	if len(calls) != 1 {
		t.Fatalf("%d createRecord calls, want 1", len(calls))
	}
	c := calls[0]
	if c.Method != "POST" || c.Header.Get("Proxy-Session") != "sess-alice" || c.Header.Get("User-Did") != "did:plc:alice" {
		t.Errorf("createRecord %s with Proxy-Session=%q User-Did=%q", c.Method, c.Header.Get("Proxy-Session"), c.Header.Get("User-Did"))
	}
	if c.Header.Get("User-Handle") != "" || c.Header.Get("Content-Type") != "application/json" {
		t.Errorf("createRecord headers: %v", c.Header)
	}
	var in struct {
		Repo       string         `json:"repo"`
		Collection string         `json:"collection"`
		Validate   *bool          `json:"validate"`
		Record     map[string]any `json:"record"`
	}
	if err := json.Unmarshal(c.Body, &in); err != nil {
		t.Fatalf("body %s: %v", c.Body, err)
	}
	if in.Repo != "did:plc:alice" || in.Collection != "xyz.statusphere.status" || in.Validate == nil || *in.Validate {
		t.Errorf("createRecord input = %s", c.Body)
	}
	wantRecord := map[string]any{"$type": "xyz.statusphere.status", "status": "👩‍💻", "createdAt": "2026-11-24T15:30:00.000Z"}
	if fmt.Sprint(in.Record) != fmt.Sprint(wantRecord) {
		t.Errorf("record = %v, want %v", in.Record, wantRecord)
	}

	// Stored at once: the page shows it as the user's, before any Jetstream event.
	body := text(f.do(t, alice, "GET", "/", nil))
	mustContain(t, body,
		`<button class="status-option selected" name="status" value="👩‍💻">👩‍💻</button>`,
		`<a class="author" href="https://bsky.app/profile/alice.test">@alice.test</a> is feeling 👩‍💻 today`)
	all, _ := f.app.Store().LatestStatuses(context.Background(), 10)
	if len(all) != 1 || !strings.HasPrefix(all[0].URI, "at://did:plc:alice/xyz.statusphere.status/") {
		t.Errorf("stored = %+v", all)
	}
}

func TestSetStatusRefusals(t *testing.T) {
	tests := []struct {
		name     string
		who      as
		form     url.Values
		header   map[string]string
		create   func(string) (int, string)
		wantCode int
		wantMsg  string
		calls    int // createRecord calls expected
		stored   int
	}{
		{"signed out", nobody, url.Values{"status": {"👍"}}, nil, nil, 401, "Log in to set your status.", 0, 0},
		{"no session key", as{"did:plc:alice", "alice.test", ""}, url.Values{"status": {"👍"}}, nil, nil, 401, "Log in to set your status.", 0, 0},
		{"two emoji", alice, url.Values{"status": {"👍👍"}}, nil, nil, 400, "That is not a valid status", 0, 0},
		{"empty", alice, url.Values{}, nil, nil, 400, "That is not a valid status", 0, 0},
		{"cross-site form", alice, url.Values{"status": {"👍"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, nil, 403, "This form was sent from another site", 0, 0},
		{"pds error", alice, url.Values{"status": {"👍"}}, nil,
			func(string) (int, string) {
				return 400, `{"error":"InvalidRequest","message":"Record/createdAt is too far in the future"}`
			},
			502, "Your status could not be saved: InvalidRequest: Record/createdAt is too far in the future", 1, 0},
		{"session expired", alice, url.Values{"status": {"👍"}}, nil,
			func(string) (int, string) { return 401, `{"error":"InvalidToken","message":"token expired"}` },
			401, "Your session has expired. Log in again", 1, 0},
		{"odd uri is not stored", alice, url.Values{"status": {"👍"}}, nil,
			func(string) (int, string) {
				return 200, `{"uri":"at://alice.test/xyz.statusphere.status/3n33jai3lbc2a","cid":"bafy"}`
			},
			303, "", 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.port.create = tt.create
			r := httptest.NewRequest("POST", "/status", strings.NewReader(tt.form.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.who.did != "" {
				r.Header.Set("User-Did", tt.who.did)
				r.Header.Set("User-Handle", tt.who.handle)
				r.Header.Set("Proxy-Session", tt.who.session)
			}
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			f.app.Handler().ServeHTTP(w, r)
			if w.Code != tt.wantCode {
				t.Errorf("status = %d, want %d", w.Code, tt.wantCode)
			}
			if tt.wantMsg != "" {
				mustContain(t, text(w), `<div class="error visible" role="alert">`+tt.wantMsg)
			}
			if n := len(f.port.callsTo("/xrpc/com.atproto.repo.createRecord")); n != tt.calls {
				t.Errorf("%d createRecord calls, want %d", n, tt.calls)
			}
			if all, _ := f.app.Store().LatestStatuses(context.Background(), 10); len(all) != tt.stored {
				t.Errorf("stored %d statuses, want %d", len(all), tt.stored)
			}
		})
	}
}

func TestSetStatusCallingPortDown(t *testing.T) {
	f := newFixture(t)
	f.srv.Close()
	w := f.do(t, alice, "POST", "/status", url.Values{"status": {"👍"}})
	if w.Code != http.StatusBadGateway {
		t.Errorf("status = %d, want 502", w.Code)
	}
	mustContain(t, text(w), "the server could not be reached")
}

func TestLoginPage(t *testing.T) {
	f := newFixture(t)
	body := text(f.do(t, nobody, "GET", "/login", nil))
	mustContain(t, body,
		`<form action="/@/signin" method="post" class="login-form">`,
		`<input type="text" name="handle" placeholder="Enter your handle (eg alice.bsky.social)"`,
		`<button type="submit">Log in</button>`,
		`<a href="https://bsky.app">Sign up for Bluesky</a>`)
	mustNotContain(t, body, `class="error visible"`)

	// Text from the URL is never shown (content spoofing).
	body = text(f.do(t, nobody, "GET", "/login?error="+url.QueryEscape("Your account is locked; call +1 555"), nil))
	mustNotContain(t, body, "account is locked", `class="error visible"`)
}

func TestUntrustedTextIsEscaped(t *testing.T) {
	f := newFixture(t)
	body := text(f.do(t, as{"did:plc:alice", `<script>x</script>`, "s"}, "GET", "/", nil))
	mustNotContain(t, body, "<script>")
	mustContain(t, body, "@&lt;script&gt;x&lt;/script&gt;")
}

func TestStaticAndOtherRoutes(t *testing.T) {
	f := newFixture(t)
	w := f.do(t, nobody, "GET", "/public/styles.css", nil)
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") || !strings.Contains(w.Body.String(), ".status-option") {
		t.Errorf("styles.css = %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	if w.Header().Get("Cache-Control") == "" {
		t.Error("styles.css without Cache-Control")
	}
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{"GET", "/public/", 404},
		{"GET", "/public/nope.css", 404},
		{"GET", "/nope", 404},
		{"GET", "/status", 303},
		{"GET", "/healthz", 200},
		{"DELETE", "/status", 405},
	} {
		if w := f.do(t, nobody, tt.method, tt.path, nil); w.Code != tt.code {
			t.Errorf("%s %s = %d, want %d", tt.method, tt.path, w.Code, tt.code)
		}
	}
	mustContain(t, text(f.do(t, nobody, "GET", "/nope", nil)), "There is nothing at this address.")
}

func TestConfigFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	cfg, err := app.ConfigFromEnv(env("ATPROTO_PROXY", "http://127.0.0.1:7000"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != ":3000" || cfg.JetstreamURL != "wss://jetstream2.us-east.bsky.network/subscribe" || cfg.DBPath != "statusphere.sqlite" || cfg.ProxyURL != "http://127.0.0.1:7000" {
		t.Errorf("defaults = %+v", cfg)
	}
	cfg, err = app.ConfigFromEnv(env("ATPROTO_PROXY", "http://127.0.0.1:7000", "PORT", "8080", "JETSTREAM_URL", "ws://127.0.0.1:6008/subscribe", "STATUSPHERE_DB", "/data/s.db"))
	if err != nil || cfg.Addr != ":8080" || cfg.JetstreamURL != "ws://127.0.0.1:6008/subscribe" || cfg.DBPath != "/data/s.db" {
		t.Errorf("cfg = %+v, %v", cfg, err)
	}
	if cfg, err := app.ConfigFromEnv(env("ATPROTO_PROXY", "http://x", "JETSTREAM_URL", "off")); err != nil || cfg.JetstreamURL != "" {
		t.Errorf("JETSTREAM_URL=off: %+v, %v", cfg, err)
	}
	for _, tt := range []struct {
		env  func(string) string
		want string
	}{
		{env(), "ATPROTO_PROXY is not set"},
		{env("ATPROTO_PROXY", "127.0.0.1:7000"), `ATPROTO_PROXY="127.0.0.1:7000"`},
		{env("ATPROTO_PROXY", "http://x", "PORT", "http"), `PORT="http": want a port number`},
		{env("ATPROTO_PROXY", "http://x", "PORT", "70000"), `PORT="70000"`},
		{env("ATPROTO_PROXY", "http://x", "JETSTREAM_URL", "https://jetstream.example"), `JETSTREAM_URL="https://jetstream.example": want a ws:// or wss:// URL`},
	} {
		if _, err := app.ConfigFromEnv(tt.env); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("err = %v, want %q", err, tt.want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	db := filepath.Join(t.TempDir(), "x.sqlite")
	for _, tt := range []struct {
		cfg  app.Config
		want string
	}{
		{app.Config{DBPath: db}, "ATPROTO_PROXY"},
		{app.Config{DBPath: db, ProxyURL: "http://127.0.0.1:7000", JetstreamURL: "https://jetstream.example"}, "want ws:// or wss://"},
		{app.Config{ProxyURL: "http://127.0.0.1:7000"}, "no database path"},
	} {
		if _, err := app.New(context.Background(), tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want %q", tt.cfg, err, tt.want)
		}
	}
}

// TestRun starts the whole app the way an end-to-end test does: a listener, a calling port, a
// Jetstream; a status published on Jetstream shows on the page; cancelling stops it.
func TestRun(t *testing.T) {
	port := &callingPort{handles: map[string]string{"did:plc:bob": "bob.test"}}
	calling := httptest.NewServer(port)
	defer calling.Close()
	js := jetstreamtest.NewServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Config{
			Listener:            ln,
			ProxyURL:            calling.URL,
			JetstreamURL:        js.URL(),
			DBPath:              filepath.Join(t.TempDir(), "statusphere.sqlite"),
			Logger:              slog.New(slog.NewTextHandler(io.Discard, nil)),
			JetstreamMinBackoff: time.Millisecond,
			JetstreamMaxBackoff: 10 * time.Millisecond,
		})
	}()
	js.WaitConns(t, 1)
	js.Publish(t, jetstreamtest.Commit("did:plc:bob", time.Now().UnixMicro(), "create", "xyz.statusphere.status", "3n33jai3lbc2a",
		jetstreamtest.Status("🦋", time.Now().UTC().Format(time.RFC3339))))

	base := "http://" + ln.Addr().String()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(spaces.ReplaceAllString(string(b), " "), "@bob.test</a> is feeling 🦋 today") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Jetstream status never showed:\n%s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
