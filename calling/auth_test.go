package calling

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// authUpstream is an API behind a call block: it records what each call
// brought.
type authUpstream struct {
	*httptest.Server
	mu    sync.Mutex
	calls []authSeen
}

type authSeen struct {
	header http.Header
	query  url.Values
}

func newAuthUpstream(t *testing.T) *authUpstream {
	t.Helper()
	u := &authUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.calls = append(u.calls, authSeen{header: r.Header.Clone(), query: r.URL.Query()})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(u.Close)
	return u
}

// take returns the calls recorded since the last take.
func (u *authUpstream) take() []authSeen {
	u.mu.Lock()
	defer u.mu.Unlock()
	c := u.calls
	u.calls = nil
	return c
}

// authConfig is a configuration whose calls reach upstream with each
// kind of credential: a static key in a header and in the query, the
// user's google token in Authorization and in the query.
func authConfig(t *testing.T, upstream string) *config.Config {
	t.Helper()
	src := fmt.Sprintf(`
host "tools.example.com" {
  backend = "localhost:3000"
  oauth "google" {
    client_id     = "client"
    client_secret = env("GOOGLE_SECRET")
    issuer        = "https://accounts.example.net"
  }
}
call "static-header" {
  port     = 7101
  endpoint = %[1]q
  auth {
    name       = "x-api-key"
    credential = env("API_KEY")
  }
}
call "static-query" {
  port     = 7102
  endpoint = %[1]q
  auth {
    name       = "key"
    location   = "query"
    credential = env("API_KEY")
  }
}
call "google" {
  port     = 7103
  endpoint = %[1]q
  auth {
    name       = "authorization"
    credential = "session:google"
  }
}
call "google-query" {
  port     = 7104
  endpoint = %[1]q
  auth {
    name       = "access_token"
    location   = "query"
    credential = "session:google"
  }
}`, upstream)
	env := map[string]string{"API_KEY": "static-key-1", "GOOGLE_SECRET": "secret"}
	cfg, diags := config.Parse([]byte(src), "test.hcl", config.Options{LookupEnv: func(name string) (string, bool) { v, ok := env[name]; return v, ok }})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cfg
}

// authCall is the call block of cfg labelled label.
func authCall(t *testing.T, cfg *config.Config, label string) config.Call {
	t.Helper()
	for _, c := range cfg.Calls {
		if c.Label == label {
			return c
		}
	}
	t.Fatalf("no call %q", label)
	return config.Call{}
}

// fakeGoogle answers refreshes as a provider's token endpoint would, and
// counts them.
type fakeGoogle struct {
	refreshes atomic.Int64
	mu        sync.Mutex
	asked     []string // "refresh token/subject" of each refresh
	// fail, when set, is the refresh's error.
	fail error
	// hold, when set, keeps each refresh until it is closed.
	hold chan struct{}
}

func (f *fakeGoogle) Refresh(ctx context.Context, refreshToken, subject string) (sessions.ProviderTokens, error) {
	n := f.refreshes.Add(1)
	f.mu.Lock()
	f.asked = append(f.asked, refreshToken+"/"+subject)
	f.mu.Unlock()
	if f.hold != nil {
		<-f.hold
	}
	if f.fail != nil {
		return sessions.ProviderTokens{}, f.fail
	}
	return sessions.ProviderTokens{AccessToken: fmt.Sprintf("google-access-%d", n+1), RefreshToken: fmt.Sprintf("google-refresh-%d", n+1), Expiry: time.Now().Add(time.Hour)}, nil
}

func (f *fakeGoogle) Revoke(ctx context.Context, token string) error { return nil }

// authEnv is a store with the Lifecycle that refreshes google sessions
// through a fake, and the calling ports of authConfig.
type authEnv struct {
	store    sessions.Store
	life     *sessions.Lifecycle
	google   *fakeGoogle
	upstream *authUpstream
	cfg      *config.Config
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	store, err := boltstore.Open(boltstore.Config{Path: filepath.Join(t.TempDir(), "data", "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e := &authEnv{store: store, google: &fakeGoogle{}, upstream: newAuthUpstream(t)}
	e.life = sessions.NewLifecycle(sessions.LifecycleConfig{Store: store, Providers: func(s sessions.Session) (sessions.ProviderClient, bool) {
		return e.google, s.Host == "tools.example.com" && s.Provider == "google"
	}})
	t.Cleanup(e.life.Wait) // before the store closes
	e.cfg = authConfig(t, e.upstream.URL)
	return e
}

func (e *authEnv) port(t *testing.T, label string) http.Handler {
	t.Helper()
	h, err := New(Config{Call: authCall(t, e.cfg, label), Sessions: e.life})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// googleSession stores a google session whose access token expires at
// expiry.
func (e *authEnv) googleSession(t *testing.T, expiry time.Time, refreshToken string) sessions.Session {
	t.Helper()
	sess, err := e.life.CreateProvider(t.Context(), sessions.ProviderGrant{
		ProviderTokens: sessions.ProviderTokens{AccessToken: "google-access-1", RefreshToken: refreshToken, Expiry: expiry},
		Host:           "tools.example.com", Provider: "google", Issuer: "https://accounts.example.net", ClientID: "client",
		Subject: "1234", Email: "alice@example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	return sess
}

// atSession stores an AT Protocol session of the same host.
func (e *authEnv) atSession(t *testing.T) sessions.Session {
	t.Helper()
	now := time.Now()
	sess := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "tools.example.com",
		DID: "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", Handle: "alice.example.com", AccessToken: "at-access", RefreshToken: "at-refresh",
		CreatedAt: now, Expiry: now.Add(time.Hour), TokenExpiry: now.Add(time.Hour)}
	if _, err := e.store.Create(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	return sess
}

// authSend makes one call through h to path, with the headers as given
// (non-canonical spellings too).
func authSend(h http.Handler, path string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:7000"+path, nil)
	for k, v := range hdr {
		req.Header[k] = []string{v}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// identityHeaders are the contract's headers in several spellings, as an
// app might pass them on to a calling port.
var identityHeaders = map[string]string{
	"User-Did":       "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa",
	"User_Handle":    "alice.example.com",
	"user-scope":     "atproto",
	"User-Email":     "alice@example.com",
	"USER_SUBJECT":   "google:1234",
	"Proxy_Provider": "google",
	"Apikey-User":    "ci",
}

// noIdentity fails when an upstream call carried one of the contract's
// headers, in any spelling.
func noIdentity(t *testing.T, h http.Header) {
	t.Helper()
	for k := range h {
		if contract.IsIdentity(k) {
			t.Errorf("the upstream got %s: %q", k, h[k])
		}
	}
}

// A fixed credential reaches the upstream where the call block puts it,
// in place of the app's own value of that header or parameter; what
// ioproxy tells the app about the user (Proxy-Session, User-*) never
// reaches that upstream, and the rest of the call is as the app sent it.
func TestStaticCredential(t *testing.T) {
	e := newAuthEnv(t)
	for _, tt := range []struct {
		name   string
		call   string
		path   string
		hdr    map[string]string
		header map[string][]string // upstream headers, exactly
		query  url.Values          // upstream query, exactly
	}{
		{"header", "static-header", "/v1/things?q=1", map[string]string{"Accept": "application/json"},
			map[string][]string{"X-Api-Key": {"static-key-1"}, "Accept": {"application/json"}}, url.Values{"q": {"1"}}},
		{"header, app's own value replaced", "static-header", "/v1/things", map[string]string{"X-Api-Key": "app-key"},
			map[string][]string{"X-Api-Key": {"static-key-1"}}, url.Values{}},
		{"header, app's Authorization kept", "static-header", "/v1/things", map[string]string{"Authorization": "Bearer app"},
			map[string][]string{"X-Api-Key": {"static-key-1"}, "Authorization": {"Bearer app"}}, url.Values{}},
		{"query", "static-query", "/v1/things?q=1", nil,
			map[string][]string{"X-Api-Key": nil}, url.Values{"q": {"1"}, "key": {"static-key-1"}}},
		{"query, app's own value replaced", "static-query", "/v1/things?key=app-key&q=1&key=second", nil,
			map[string][]string{}, url.Values{"q": {"1"}, "key": {"static-key-1"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := e.port(t, tt.call)
			hdr := map[string]string{"Proxy-Session": sessions.NewToken() + "," + sessions.NewToken()}
			for k, v := range identityHeaders {
				hdr[k] = v
			}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			rec := authSend(h, tt.path, hdr)
			if rec.Code != http.StatusOK {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			calls := e.upstream.take()
			if len(calls) != 1 {
				t.Fatalf("%d upstream calls", len(calls))
			}
			got := calls[0]
			noIdentity(t, got.header)
			for k, want := range tt.header {
				if v := got.header.Values(k); strings.Join(v, "\n") != strings.Join(want, "\n") {
					t.Errorf("upstream %s = %q, want %q", k, v, want)
				}
			}
			if got.query.Encode() != tt.query.Encode() {
				t.Errorf("upstream query %q, want %q", got.query.Encode(), tt.query.Encode())
			}
		})
	}
}

// xrpcAnswer decodes an XRPC error answer.
func xrpcAnswer(t *testing.T, rec *httptest.ResponseRecorder) (code, message string) {
	t.Helper()
	var x struct{ Error, Message string }
	if err := json.Unmarshal(rec.Body.Bytes(), &x); err != nil {
		t.Fatalf("answer %d %q is not an XRPC error: %v", rec.Code, rec.Body, err)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	return x.Error, x.Message
}

// credential = "session:google" finds the user's google session among
// the Proxy-Session keys and sends its access token: "Bearer <token>" in
// Authorization, the bare token in a query parameter, in place of the
// app's own. Without a google session among the keys the call is a 401
// AuthRequired that names the provider, and goes nowhere.
func TestSessionCredential(t *testing.T) {
	e := newAuthEnv(t)
	g := e.googleSession(t, time.Now().Add(time.Hour), "google-refresh-1")
	at := e.atSession(t)
	for _, tt := range []struct {
		name   string
		call   string
		ps     string            // Proxy-Session; none when ""
		hdr    map[string]string // besides Proxy-Session
		status int
		auth   []string   // the upstream's Authorization, on 200
		query  url.Values // the upstream's query, on 200
	}{
		{"no Proxy-Session", "google", "", nil, 401, nil, nil},
		{"blank Proxy-Session", "google", " , ", nil, 401, nil, nil},
		{"AT Protocol session only", "google", at.ProxyKey, nil, 401, nil, nil},
		{"unknown key", "google", sessions.NewToken(), nil, 401, nil, nil},
		{"not a key", "google", "google-access-1", nil, 401, nil, nil},
		{"the session's cookie id, not its key", "google", g.ID, nil, 401, nil, nil},
		{"google key alone", "google", g.ProxyKey, nil, 200, []string{"Bearer google-access-1"}, url.Values{}},
		{"AT Protocol key first", "google", at.ProxyKey + "," + g.ProxyKey, nil, 200, []string{"Bearer google-access-1"}, url.Values{}},
		{"google key first, spaces", "google", g.ProxyKey + " , " + at.ProxyKey, nil, 200, []string{"Bearer google-access-1"}, url.Values{}},
		{"junk before the key", "google", "junk,," + g.ProxyKey, nil, 200, []string{"Bearer google-access-1"}, url.Values{}},
		{"app's own Authorization replaced", "google", g.ProxyKey, map[string]string{"Authorization": "Bearer app-token"}, 200, []string{"Bearer google-access-1"}, url.Values{}},
		{"query", "google-query", at.ProxyKey + "," + g.ProxyKey, nil, 200, nil, url.Values{"access_token": {"google-access-1"}, "q": {"1"}}},
		{"query, app's own value replaced", "google-query", g.ProxyKey, map[string]string{"Authorization": "Bearer app-token"}, 200,
			[]string{"Bearer app-token"}, url.Values{"access_token": {"google-access-1"}, "q": {"1"}}},
		{"query, no Proxy-Session", "google-query", "", nil, 401, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			for k, v := range identityHeaders {
				hdr[k] = v
			}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			if tt.ps != "" {
				hdr["Proxy-Session"] = tt.ps
			}
			path := "/v1/things"
			if tt.call == "google-query" {
				path = "/v1/things?q=1&access_token=app-value"
			}
			rec := authSend(e.port(t, tt.call), path, hdr)
			calls := e.upstream.take()
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.status, rec.Body)
			}
			if tt.status != 200 {
				code, msg := xrpcAnswer(t, rec)
				if code != "AuthRequired" || !strings.Contains(msg, "google") {
					t.Errorf("error %s %q, want AuthRequired naming google", code, msg)
				}
				if strings.Contains(rec.Body.String(), "google-access-1") {
					t.Error("the answer carries the token")
				}
				if len(calls) != 0 {
					t.Errorf("%d upstream calls for a refused call", len(calls))
				}
				return
			}
			if len(calls) != 1 {
				t.Fatalf("%d upstream calls", len(calls))
			}
			got := calls[0]
			noIdentity(t, got.header)
			if v := got.header.Values("Authorization"); strings.Join(v, "\n") != strings.Join(tt.auth, "\n") {
				t.Errorf("upstream Authorization %q, want %q", v, tt.auth)
			}
			if got.query.Encode() != tt.query.Encode() {
				t.Errorf("upstream query %q, want %q", got.query.Encode(), tt.query.Encode())
			}
		})
	}
	if n := e.google.refreshes.Load(); n != 0 {
		t.Errorf("%d refreshes of a fresh token", n)
	}
}

// An expired google token is refreshed before the call, once: calls at
// once share the one refresh, and later calls use its token. A refresh
// the provider refuses (ErrGrantDead) ends the session: 401, and the
// session is gone; a refresh that fails for now is a 502, and the
// session stays for the next try. No failed call reaches the upstream.
func TestSessionCredentialRefresh(t *testing.T) {
	for _, tt := range []struct {
		name     string
		calls    int
		fail     error
		status   int
		code     string
		auth     string // the upstream's Authorization, on 200
		ended    bool   // the session is gone after
		message  string // in the error's message
		noRefTok bool   // the session has no refresh token
		wantRefs int64
	}{
		{name: "one call", calls: 1, status: 200, auth: "Bearer google-access-2", wantRefs: 1},
		{name: "ten calls at once", calls: 10, status: 200, auth: "Bearer google-access-2", wantRefs: 1},
		{name: "refresh token refused", calls: 1, fail: fmt.Errorf("google: invalid_grant: %w", sessions.ErrGrantDead), status: 401, code: "AuthRequired", ended: true, message: "google", wantRefs: 1},
		{name: "refresh refused, calls at once", calls: 5, fail: fmt.Errorf("google: invalid_grant: %w", sessions.ErrGrantDead), status: 401, code: "AuthRequired", ended: true, message: "google", wantRefs: 1},
		{name: "provider down", calls: 1, fail: errors.New("dial tcp 192.0.2.7:443: connection refused"), status: 502, code: "UpstreamFailure", message: "google", wantRefs: 1},
		// Trying again later cannot help a session without a refresh
		// token: it ends with its access token, and the user must sign
		// in again, which is what 401 says.
		{name: "no refresh token", calls: 1, noRefTok: true, status: 401, code: "AuthRequired", ended: true, message: "google", wantRefs: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newAuthEnv(t)
			e.google.fail = tt.fail
			refresh := "google-refresh-1"
			if tt.noRefTok {
				refresh = ""
			}
			g := e.googleSession(t, time.Now().Add(-time.Second), refresh)
			h := e.port(t, "google")
			if tt.calls > 1 {
				e.google.hold = make(chan struct{})
			}
			recs := make([]*httptest.ResponseRecorder, tt.calls)
			var wg sync.WaitGroup
			for i := range recs {
				wg.Go(func() { recs[i] = authSend(h, "/v1/things", map[string]string{"Proxy-Session": g.ProxyKey}) })
			}
			if e.google.hold != nil {
				// Let the calls pile up behind the first refresh.
				for deadline := time.Now().Add(5 * time.Second); e.google.refreshes.Load() == 0 && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				time.Sleep(50 * time.Millisecond)
				close(e.google.hold)
			}
			wg.Wait()
			calls := e.upstream.take()
			for i, rec := range recs {
				if rec.Code != tt.status {
					t.Fatalf("call %d: status %d, want %d: %s", i, rec.Code, tt.status, rec.Body)
				}
				if tt.status == 200 {
					continue
				}
				code, msg := xrpcAnswer(t, rec)
				if code != tt.code || !strings.Contains(msg, tt.message) {
					t.Errorf("call %d: error %s %q, want %s naming %s", i, code, msg, tt.code, tt.message)
				}
			}
			if n := e.google.refreshes.Load(); n != tt.wantRefs {
				t.Errorf("%d refreshes, want %d", n, tt.wantRefs)
			}
			e.google.mu.Lock()
			for _, a := range e.google.asked {
				if a != "google-refresh-1/1234" {
					t.Errorf("refreshed with %q, want the session's refresh token and subject", a)
				}
			}
			e.google.mu.Unlock()
			if tt.status != 200 {
				if len(calls) != 0 {
					t.Errorf("%d upstream calls after a failed refresh", len(calls))
				}
			} else {
				if len(calls) != tt.calls {
					t.Fatalf("%d upstream calls, want %d", len(calls), tt.calls)
				}
				for _, c := range calls {
					if c.header.Get("Authorization") != tt.auth {
						t.Errorf("upstream Authorization %q, want %q", c.header.Get("Authorization"), tt.auth)
					}
				}
				// The refreshed tokens are stored: the next call needs no
				// refresh.
				if rec := authSend(h, "/v1/things", map[string]string{"Proxy-Session": g.ProxyKey}); rec.Code != 200 {
					t.Fatalf("next call: %d %s", rec.Code, rec.Body)
				}
				if c := e.upstream.take(); len(c) != 1 || c[0].header.Get("Authorization") != tt.auth {
					t.Errorf("next call reached the upstream as %v", c)
				}
				if n := e.google.refreshes.Load(); n != tt.wantRefs {
					t.Errorf("the next call refreshed again: %d refreshes", n)
				}
				stored, err := e.store.Get(t.Context(), g.ID)
				if err != nil || stored.AccessToken != "google-access-2" || stored.RefreshToken != "google-refresh-2" {
					t.Errorf("stored session: %v, tokens %q %q", err, stored.AccessToken, stored.RefreshToken)
				}
			}
			_, err := e.store.Get(t.Context(), g.ID)
			if gone := errors.Is(err, sessions.ErrNotFound); gone != tt.ended {
				t.Errorf("session gone: %v (%v), want %v", gone, err, tt.ended)
			}
			if tt.ended {
				// The ended session answers 401 at once, with no refresh.
				rec := authSend(h, "/v1/things", map[string]string{"Proxy-Session": g.ProxyKey})
				if rec.Code != 401 || e.google.refreshes.Load() != tt.wantRefs {
					t.Errorf("after the end: %d, %d refreshes", rec.Code, e.google.refreshes.Load())
				}
			}
		})
	}
}

// A query credential is added to the app's query as it was written:
// order, spelling and ";" kept, the app's own value of the name dropped.
func TestWithQueryParam(t *testing.T) {
	for _, tc := range []struct{ raw, want string }{
		{"", "key=s%2Fk"},
		{"z=1&a=b%20c&flag&sig=a+b;c=d", "z=1&a=b%20c&flag&sig=a+b;c=d&key=s%2Fk"},
		{"key=mine&x=1&key=again", "x=1&key=s%2Fk"},
		{"k%65y=encoded&x=1", "x=1&key=s%2Fk"},
		{"&&x=1&", "x=1&key=s%2Fk"},
	} {
		if got := withQueryParam(tc.raw, "key", "s/k"); got != tc.want {
			t.Errorf("withQueryParam(%q) = %q, want %q", tc.raw, got, tc.want)
		}
	}
}

// A call to a URL endpoint without auth never carries Proxy-Session, in
// any spelling, to the service: it is ioproxy's key, for calling ports.
func TestURLEndpointDropsProxySession(t *testing.T) {
	got := make(chan http.Header, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Header.Clone() }))
	defer upstream.Close()
	u, _ := url.Parse(upstream.URL)
	h, err := New(Config{Call: config.Call{Label: "api", Endpoint: config.Endpoint{Kind: config.EndpointURL, URL: u, Raw: upstream.URL}, MaxBodyBytes: 1 << 20, Timeout: 5 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/v1/things", nil)
	req.Header["Proxy-Session"] = []string{sessions.NewToken()}
	req.Header["Proxy_session"] = []string{sessions.NewToken()}
	req.Header.Set("X-App", "1")
	h.ServeHTTP(httptest.NewRecorder(), req)
	seen := <-got
	if seen.Get("X-App") != "1" || len(seen["Proxy-Session"]) != 0 || len(seen["Proxy_session"]) != 0 {
		t.Fatalf("the upstream got %v", seen)
	}
}

// A provider session the host's rules no longer admit (a reload changed
// them, or the provider) makes no call: 401, nothing upstream, no
// refresh.
func TestSessionCredentialRefusedByRules(t *testing.T) {
	e := newAuthEnv(t)
	g := e.googleSession(t, time.Now().Add(-time.Second), "google-refresh-1")
	var asked []string
	h, err := New(Config{Call: authCall(t, e.cfg, "google"), Sessions: e.life, ProviderAdmitted: func(s sessions.Session) bool {
		asked = append(asked, s.Subject)
		return false
	}})
	if err != nil {
		t.Fatal(err)
	}
	rec := authSend(h, "/v1/things", map[string]string{"Proxy-Session": g.ProxyKey})
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "may no longer use this site") {
		t.Fatalf("a refused session's call: %d %s", rec.Code, rec.Body)
	}
	if len(asked) != 1 || asked[0] != "1234" || e.google.refreshes.Load() != 0 || len(e.upstream.take()) != 0 {
		t.Fatalf("asked %q, %d refreshes, the upstream was reached", asked, e.google.refreshes.Load())
	}
}

// A call to the PDS with a session its host's rules no longer admit (a
// reload changed them) gets 401 and reaches no PDS.
func TestPDSCallRefusedByRules(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	before := e.srv.Counts()
	var asked []string
	h, err := New(Config{Call: pdsCall(), Sessions: e.tokens, Identity: e.resolver, PDSClient: e.pdsClient, Nonces: e.nonces,
		ATProtoAdmitted: func(s sessions.Session) bool { asked = append(asked, s.DID); return false }})
	if err != nil {
		t.Fatal(err)
	}
	rec := call(h, "GET", "/xrpc/com.example.echo", "", who(sess))
	if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "may no longer use this site") {
		t.Fatalf("a refused session's call: %d %s", rec.Code, rec.Body)
	}
	if len(asked) != 1 || asked[0] != sess.DID || e.srv.Counts() != before {
		t.Fatalf("asked %q; the PDS saw %+v, before %+v", asked, e.srv.Counts(), before)
	}
}
