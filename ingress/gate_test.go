package ingress

import (
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/access"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/sessions"
	"golang.org/x/crypto/bcrypt"
)

const (
	gateAlice = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	gateBob   = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
	gateCarol = "did:plc:cccccccccccccccccccccccc"
)

// gateKeys are the apikey_auth users of the tests, with their keys.
var gateKeys = map[string]string{
	"ci":    "ci-secret",
	"old":   "old-secret",
	"colon": "pa:ss:word",
}

// gateUsers is an apikey_auth users heredoc for gateKeys: bcrypt at the
// lowest cost, so that tests stay fast, and one {SHA} entry.
func gateUsers(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("<<EOT\n")
	for _, name := range []string{"ci", "colon"} {
		h, err := bcrypt.GenerateFromPassword([]byte(gateKeys[name]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		// htpasswd -B writes $2y$; Go writes $2a$; both must be read.
		hash := string(h)
		if name == "ci" {
			hash = "$2y$" + strings.TrimPrefix(hash, "$2a$")
		}
		fmt.Fprintf(&b, "%s:%s\n", name, hash)
	}
	sum := sha1.Sum([]byte(gateKeys["old"]))
	fmt.Fprintf(&b, "# a legacy entry\nold:{SHA}%s\nEOT", base64.StdEncoding.EncodeToString(sum[:]))
	return b.String()
}

// newGateSession stores a live session of host and returns it.
func newGateSession(t *testing.T, store sessions.Store, host, did, handle string) sessions.Session {
	t.Helper()
	sess := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: host, DID: did, Handle: handle, CreatedAt: time.Now(), Expiry: time.Now().Add(time.Hour), TokenExpiry: time.Now().Add(time.Hour)}
	if _, err := store.Create(context.Background(), sess); err != nil {
		t.Fatal(err)
	}
	return sess
}

// gateReq describes one request of the gate tests.
type gateReq struct {
	method, host, path string
	remote             string
	session            *sessions.Session
	user, key          string // Basic credentials, when user is set
	header             http.Header
}

func (g gateReq) serve(t *testing.T, h http.Handler) (*httptest.ResponseRecorder, seen) {
	t.Helper()
	method := g.method
	if method == "" {
		method = http.MethodGet
	}
	req := httptest.NewRequest(method, "http://"+g.host+g.path, nil)
	if g.remote != "" {
		req.RemoteAddr = g.remote
	}
	for k, v := range g.header {
		req.Header[k] = v // as given: non-canonical spellings too
	}
	if g.session != nil {
		req.AddCookie(&http.Cookie{Name: CookieName, Value: g.session.ID})
	}
	if g.user != "" {
		req.SetBasicAuth(g.user, g.key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var s seen
	if rec.Header().Get("X-Backend") != "" {
		if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
			t.Fatalf("backend answer: %v", err)
		}
	}
	return rec, s
}

var (
	navigation = http.Header{"Accept": {"text/html,application/xhtml+xml"}, "Sec-Fetch-Mode": {"navigate"}}
	jsonClient = http.Header{"Accept": {"application/json"}}
)

func wantChallenge(t *testing.T, rec *httptest.ResponseRecorder, realm string) {
	t.Helper()
	got := rec.Header().Get("WWW-Authenticate")
	if !strings.HasPrefix(got, `Basic realm="`+realm+`"`) {
		t.Errorf("WWW-Authenticate = %q, want Basic realm=%q", got, realm)
	}
}

// On an apikey_auth host, "curl -u name:key" reaches the backend as the
// entry's name, without the key; anything else is a 401 with a Basic
// challenge, never a sign-in redirect.
func TestAPIKeyAuth(t *testing.T) {
	a := echoBackend(t, "a")
	cfg := mustConfig(t, fmt.Sprintf(`
host "api.example.com" {
  backend = %q
  apikey_auth {
    users = %s
  }
}
host "open.example.com" { backend = %q }
`, a.URL, gateUsers(t), a.URL))
	rt := newRouter(t, cfg, openStore(t))

	t.Run("good keys", func(t *testing.T) {
		for name, key := range gateKeys {
			rec, s := gateReq{host: "api.example.com", path: "/deploy?x=1", user: name, key: key}.serve(t, rt)
			if rec.Code != http.StatusOK || rec.Header().Get("X-Backend") != "a" {
				t.Errorf("%s: status %d, backend %q", name, rec.Code, rec.Header().Get("X-Backend"))
				continue
			}
			if got := s.Headers.Values(contract.APIKeyUser); len(got) != 1 || got[0] != name {
				t.Errorf("%s: backend saw Apikey-User %q", name, got)
			}
			if got := s.Headers.Get("Authorization"); got != "" {
				t.Errorf("%s: backend saw the key: Authorization %q", name, got)
			}
			for _, h := range []string{contract.UserDID, contract.UserHandle, contract.ProxySession} {
				if s.Headers.Get(h) != "" {
					t.Errorf("%s: backend saw %s", name, h)
				}
			}
			if s.Path != "/deploy" || s.Query != "x=1" {
				t.Errorf("%s: backend saw %s?%s", name, s.Path, s.Query)
			}
		}
	})

	t.Run("wrong credentials", func(t *testing.T) {
		for _, c := range []struct{ user, key string }{
			{"ci", "wrong"},
			{"ci", ""},
			{"ci", "ci-secret "},
			{"CI", "ci-secret"},
			{"nobody", "ci-secret"},
			{"old", "ci-secret"},
			{"colon", "pa"},
		} {
			for _, hdr := range []http.Header{nil, navigation, jsonClient} {
				rec, _ := gateReq{host: "api.example.com", path: "/", remote: "203.0.113.1:1000", user: c.user, key: c.key, header: hdr}.serve(t, rt)
				if rec.Code != http.StatusUnauthorized || rec.Header().Get("X-Backend") != "" {
					t.Errorf("%s:%s %v: status %d, backend %q", c.user, c.key, hdr, rec.Code, rec.Header().Get("X-Backend"))
				}
				wantChallenge(t, rec, "api.example.com")
			}
		}
		// Not a Basic credential at all: as if none was given.
		rec, _ := gateReq{host: "api.example.com", path: "/", header: http.Header{"Authorization": {"Bearer ci-secret"}}}.serve(t, rt)
		if rec.Code != http.StatusUnauthorized || rec.Header().Get("X-Backend") != "" {
			t.Errorf("Bearer token: status %d", rec.Code)
		}
		wantChallenge(t, rec, "api.example.com")
	})

	t.Run("no credentials", func(t *testing.T) {
		for _, hdr := range []http.Header{nil, navigation, jsonClient, {"Accept": {"*/*"}}, {"Accept": {"text/html"}}} {
			for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
				rec, _ := gateReq{method: method, host: "api.example.com", path: "/page", header: hdr}.serve(t, rt)
				if rec.Code != http.StatusUnauthorized || rec.Header().Get("Location") != "" || rec.Header().Get("X-Backend") != "" {
					t.Errorf("%s %v: status %d, Location %q", method, hdr, rec.Code, rec.Header().Get("Location"))
				}
				if hdr.Get("Sec-Fetch-Mode") == "" {
					wantChallenge(t, rec, "api.example.com")
				} else if c := rec.Header().Get("WWW-Authenticate"); c != "" {
					// It would pop up the browser's password dialog.
					t.Errorf("%s %v: a browser's request got the challenge %q", method, hdr, c)
				}
			}
		}
		rec, _ := gateReq{host: "api.example.com", path: "/", header: jsonClient}.serve(t, rt)
		var body struct{ Error string }
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error != "AuthRequired" {
			t.Errorf("JSON 401: %q %v", rec.Body, err)
		}
		// ioproxy's sign-in routes are not there to be found.
		rec, _ = gateReq{host: "api.example.com", path: "/@/signin", header: navigation}.serve(t, rt)
		if rec.Code != http.StatusNotFound {
			t.Errorf("/@/signin on a key-only host: %d", rec.Code)
		}
	})

	// No client may name itself: Apikey-User, in any spelling, is
	// ioproxy's to set.
	hostile := http.Header{
		"Apikey-User": {"admin"},
		"apikey_user": {"admin"},
		"APIKEY-USER": {"admin"},
		"Apikey_User": {"admin", "root"},
		"apikey-user": {"admin"},
	}
	forged := func(t *testing.T, s seen, want string) {
		t.Helper()
		for name, vals := range s.Headers {
			if strings.EqualFold(strings.ReplaceAll(name, "_", "-"), contract.APIKeyUser) && (name != contract.APIKeyUser || len(vals) != 1 || vals[0] != want) {
				t.Errorf("backend saw %s: %q", name, vals)
			}
		}
		if got := s.Headers.Get(contract.APIKeyUser); got != want {
			t.Errorf("backend saw Apikey-User %q, want %q", got, want)
		}
	}
	t.Run("forged header with a key", func(t *testing.T) {
		rec, s := gateReq{host: "api.example.com", path: "/", user: "ci", key: "ci-secret", header: hostile}.serve(t, rt)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		forged(t, s, "ci")
	})
	t.Run("forged header without a key", func(t *testing.T) {
		rec, _ := gateReq{host: "api.example.com", path: "/", header: hostile}.serve(t, rt)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("status %d", rec.Code)
		}
	})
	t.Run("forged header on an open host", func(t *testing.T) {
		rec, s := gateReq{host: "open.example.com", path: "/", header: hostile}.serve(t, rt)
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d", rec.Code)
		}
		forged(t, s, "")
	})
	t.Run("forged header over the wire", func(t *testing.T) {
		srv := httptest.NewServer(rt)
		defer srv.Close()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		req.Host = "open.example.com"
		for k, v := range hostile {
			req.Header[k] = v
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s seen
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		forged(t, s, "")
	})
	// On a host without apikey_auth, Basic credentials are the app's own
	// business and pass untouched.
	t.Run("Basic auth on an open host", func(t *testing.T) {
		rec, s := gateReq{host: "open.example.com", path: "/", user: "ci", key: "ci-secret"}.serve(t, rt)
		if rec.Code != http.StatusOK || s.Headers.Get("Authorization") == "" || s.Headers.Get(contract.APIKeyUser) != "" {
			t.Errorf("status %d, Authorization %q, Apikey-User %q", rec.Code, s.Headers.Get("Authorization"), s.Headers.Get(contract.APIKeyUser))
		}
	})
}

// apiKeyRouter serves one host that admits API keys only (gateUsers),
// with the wrong-key limiter on a clock the test moves.
func apiKeyRouter(t *testing.T) (*Router, *time.Time) {
	a := echoBackend(t, "a")
	cfg := mustConfig(t, fmt.Sprintf(`
host "api.example.com" {
  backend = %q
  apikey_auth {
    users = %s
  }
}`, a.URL, gateUsers(t)))
	rt := newRouter(t, cfg, openStore(t))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rt.wrongKeys = newRateLimiter(func() time.Time { return now }, wrongKeysPerMinute)
	return rt, &now
}

// Wrong keys are limited per client address: after 30 in a minute, the
// next attempt is refused even with the right key, and other clients are
// not affected.
func TestAPIKeyWrongKeyLimit(t *testing.T) {
	rt, clock := apiKeyRouter(t)

	const guesser, other = "198.51.100.7:40000", "198.51.100.8:40000"
	// Good keys do not count.
	for range 40 {
		if rec, _ := (gateReq{host: "api.example.com", path: "/", remote: guesser, user: "ci", key: "ci-secret"}).serve(t, rt); rec.Code != http.StatusOK {
			t.Fatalf("good key: %d", rec.Code)
		}
	}
	for i := range wrongKeysPerMinute {
		rec, _ := gateReq{host: "api.example.com", path: "/", remote: fmt.Sprintf("198.51.100.7:%d", 50000+i), user: "ci", key: fmt.Sprint("guess", i)}.serve(t, rt)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d", i+1, rec.Code)
		}
	}
	// A key that checked out before is remembered and not counted: a
	// neighbour guessing behind the same address cannot lock it out.
	if rec, _ := (gateReq{host: "api.example.com", path: "/", remote: guesser, user: "ci", key: "ci-secret"}).serve(t, rt); rec.Code != http.StatusOK {
		t.Errorf("remembered good key after the limit: %d, want 200", rec.Code)
	}
	for _, c := range []struct{ user, key string }{{"colon", "pa:ss:word"}, {"ci", "guess"}} {
		rec, _ := gateReq{host: "api.example.com", path: "/", remote: guesser, user: c.user, key: c.key}.serve(t, rt)
		if rec.Code != http.StatusTooManyRequests || rec.Header().Get("X-Backend") != "" {
			t.Errorf("attempt %d with %s:%s: %d, want 429", wrongKeysPerMinute+1, c.user, c.key, rec.Code)
		}
		if rec.Header().Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
	}
	// Another address is not affected, good key or wrong.
	if rec, _ := (gateReq{host: "api.example.com", path: "/", remote: other, user: "ci", key: "ci-secret"}).serve(t, rt); rec.Code != http.StatusOK {
		t.Errorf("another client's good key: %d", rec.Code)
	}
	if rec, _ := (gateReq{host: "api.example.com", path: "/", remote: other, user: "ci", key: "guess"}).serve(t, rt); rec.Code != http.StatusUnauthorized {
		t.Errorf("another client's wrong key: %d", rec.Code)
	}
	// A minute later the guesser may try again.
	*clock = clock.Add(time.Minute)
	if rec, _ := (gateReq{host: "api.example.com", path: "/", remote: guesser, user: "ci", key: "ci-secret"}).serve(t, rt); rec.Code != http.StatusOK {
		t.Errorf("a minute later: %d", rec.Code)
	}
}

// Parallel guesses cannot outrun the limit: an attempt is counted before
// its (slow) check, not after, so a client sending many at once still gets
// only wrongKeysPerMinute checks a minute.
func TestAPIKeyWrongKeyLimitParallel(t *testing.T) {
	rt, _ := apiKeyRouter(t)

	const n = 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	codes := make(chan int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodGet, "http://api.example.com/", nil)
			req.RemoteAddr = fmt.Sprintf("198.51.100.7:%d", 10000+i)
			req.SetBasicAuth("ci", fmt.Sprint("guess", i))
			<-start
			rec := httptest.NewRecorder()
			rt.ServeHTTP(rec, req)
			codes <- rec.Code
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	got := map[int]int{}
	for c := range codes {
		got[c]++
	}
	// At most wrongKeysPerMinute are compared (401). Of those counted,
	// some may find the comparison queue full (503, taken back from the
	// count, so a later one is counted instead); the rest are over the
	// limit (429). Nothing else.
	if got[http.StatusUnauthorized] > wrongKeysPerMinute || got[http.StatusUnauthorized] == 0 ||
		got[http.StatusUnauthorized]+got[http.StatusServiceUnavailable]+got[http.StatusTooManyRequests] != n ||
		got[http.StatusTooManyRequests] < n-wrongKeysPerMinute-got[http.StatusServiceUnavailable] {
		t.Errorf("%d parallel wrong keys: %v; want at most %d checked (401), the rest 429 or 503", n, got, wrongKeysPerMinute)
	}
}

// Many parallel requests with a good key are not limited, however many
// arrive at once, even before the key is remembered: they share one check,
// which counts once, and is taken back as it was right.
func TestAPIKeyGoodKeysParallel(t *testing.T) {
	rt, _ := apiKeyRouter(t)
	var wg sync.WaitGroup
	start := make(chan struct{})
	codes := make(chan int, 100)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodGet, "http://api.example.com/", nil)
			req.RemoteAddr = "198.51.100.7:1"
			req.SetBasicAuth("ci", "ci-secret")
			<-start
			rec := httptest.NewRecorder()
			rt.ServeHTTP(rec, req)
			codes <- rec.Code
		}()
	}
	close(start)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Errorf("good key: %d", c)
		}
	}
	// And they left the wrong-key budget whole.
	for i := range wrongKeysPerMinute {
		if rec, _ := (gateReq{host: "api.example.com", path: "/", remote: "198.51.100.7:1", user: "ci", key: "x"}).serve(t, rt); rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong key %d after good ones: %d", i+1, rec.Code)
		}
	}
}

// With require_atproto and apikey_auth, either an admitted account or a
// key passes; credentials that are given must be right.
func TestRulesAndKeysTogether(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	cfg := mustConfig(t, fmt.Sprintf(`
host "both.example.com" {
  backend = %q
  require_atproto { dids = [%q] }
  apikey_auth {
    users = %s
  }
}`, a.URL, gateAlice, gateUsers(t)))
	rt := newRouter(t, cfg, store)
	alice := newGateSession(t, store, "both.example.com", gateAlice, "alice.example.com")
	bob := newGateSession(t, store, "both.example.com", gateBob, "bob.example.com")

	for _, tt := range []struct {
		name      string
		req       gateReq
		status    int
		did, user string
	}{
		{"admitted session", gateReq{session: &alice}, 200, gateAlice, ""},
		{"key", gateReq{user: "ci", key: "ci-secret"}, 200, "", "ci"},
		{"{SHA} key", gateReq{user: "old", key: "old-secret"}, 200, "", "old"},
		{"key and admitted session: the key names the request", gateReq{session: &alice, user: "ci", key: "ci-secret"}, 200, "", "ci"},
		{"key and refused session", gateReq{session: &bob, user: "ci", key: "ci-secret"}, 200, "", "ci"},
		{"wrong key and admitted session", gateReq{session: &alice, user: "ci", key: "wrong"}, 401, "", ""},
		{"wrong key, browser with admitted session", gateReq{session: &alice, user: "ci", key: "wrong", header: navigation}, 401, "", ""},
		{"unknown name and admitted session", gateReq{session: &alice, user: "alice", key: "x"}, 401, "", ""},
		{"refused session", gateReq{session: &bob, header: http.Header{"Accept": {"text/html"}}}, 403, "", ""},
		{"nothing, API client", gateReq{}, 401, "", ""},
		{"nothing, browser", gateReq{header: navigation}, 303, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.host, tt.req.path = "both.example.com", "/x"
			rec, s := tt.req.serve(t, rt)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if tt.status != 200 {
				if rec.Header().Get("X-Backend") != "" {
					t.Error("backend reached")
				}
				if tt.status == 401 {
					wantChallenge(t, rec, "both.example.com")
				}
				if tt.status == 303 && !strings.HasPrefix(rec.Header().Get("Location"), "/@/signin?") {
					t.Errorf("browser sent to %q", rec.Header().Get("Location"))
				}
				return
			}
			if got := s.Headers.Get(contract.UserDID); got != tt.did {
				t.Errorf("User-Did %q, want %q", got, tt.did)
			}
			if got := s.Headers.Get(contract.APIKeyUser); got != tt.user {
				t.Errorf("Apikey-User %q, want %q", got, tt.user)
			}
			if tt.user != "" && s.Headers.Get("Authorization") != "" {
				t.Error("backend saw the key")
			}
		})
	}
}

// forwardAuthConfig has an open host, a forward-auth-only host with rules
// and keys, and a forward-auth-only host with keys alone.
func forwardAuthConfig(t *testing.T, backend string) string {
	// httptest's requests come from 192.0.2.1: the proxy in front.
	return fmt.Sprintf(`
ingress { trusted_proxies = ["192.0.2.1"] }
host "open.example.com" { backend = %q }
host "closed.example.com" {
  require_atproto {
    dids         = [%q]
    handles      = ["*.team.example.com"]
    public_paths = ["/healthz", "/static/*"]
  }
  apikey_auth {
    users = %s
  }
}
host "keys.example.com" {
  apikey_auth {
    users = %s
  }
}`, backend, gateAlice, gateUsers(t), gateUsers(t))
}

// GET /@/auth answers a proxy in front with 200, 401 or 403 only: nginx's
// auth_request turns anything else, redirects included, into a 500.
func TestForwardAuth(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	rt := newRouter(t, mustConfig(t, forwardAuthConfig(t, a.URL)), store)
	openSess := newGateSession(t, store, "open.example.com", gateBob, "bob.example.com")
	alice := newGateSession(t, store, "closed.example.com", gateAlice, "handle.invalid")
	carol := newGateSession(t, store, "closed.example.com", gateCarol, "carol.team.example.com")
	bob := newGateSession(t, store, "closed.example.com", gateBob, "bob.example.com")
	elsewhere := newGateSession(t, store, "open.example.com", gateAlice, "alice.example.com")

	// The wrong-key limit, used up by one address.
	const guesser = "198.51.100.99:1"
	for i := range wrongKeysPerMinute {
		rec, _ := gateReq{host: "closed.example.com", path: "/@/auth", remote: guesser, user: "ci", key: fmt.Sprint("guess", i)}.serve(t, rt)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("wrong key %d: %d", i+1, rec.Code)
		}
	}
	public := http.Header{"X-Original-Uri": {"/healthz"}, "X-Forwarded-Uri": {"/static/app.css"}, "X-Original-Url": {"http://closed.example.com/healthz"}}

	for _, tt := range []struct {
		name   string
		req    gateReq
		status int
		did    string // User-Did expected on 200
		handle string
		user   string // Apikey-User expected on 200
	}{
		{"closed, anonymous", gateReq{host: "closed.example.com"}, 401, "", "", ""},
		{"closed, anonymous browser", gateReq{host: "closed.example.com", header: navigation}, 401, "", "", ""},
		{"closed, anonymous HEAD", gateReq{method: http.MethodHead, host: "closed.example.com"}, 401, "", "", ""},
		{"closed, anonymous POST", gateReq{method: http.MethodPost, host: "closed.example.com"}, 401, "", "", ""},
		{"closed, public paths do not apply", gateReq{host: "closed.example.com", header: public}, 401, "", "", ""},
		{"closed, public path in the auth URL", gateReq{host: "closed.example.com", path: "/@/auth?uri=/healthz"}, 401, "", "", ""},
		{"closed, session of another host", gateReq{host: "closed.example.com", session: &elsewhere}, 401, "", "", ""},
		{"closed, allowed by DID", gateReq{host: "closed.example.com", session: &alice}, 200, gateAlice, "handle.invalid", ""},
		{"closed, allowed by domain", gateReq{host: "closed.example.com", session: &carol, header: navigation}, 200, gateCarol, "carol.team.example.com", ""},
		{"closed, allowed, POST", gateReq{method: http.MethodPost, host: "closed.example.com", session: &carol}, 200, gateCarol, "carol.team.example.com", ""},
		{"closed, anonymous JSON", gateReq{host: "closed.example.com", header: jsonClient}, 401, "", "", ""},
		{"closed, denied", gateReq{host: "closed.example.com", session: &bob}, 403, "", "", ""},
		{"closed, denied JSON", gateReq{host: "closed.example.com", session: &bob, header: jsonClient}, 403, "", "", ""},
		{"closed, wrong key JSON", gateReq{host: "closed.example.com", user: "ci", key: "wrong", header: jsonClient}, 401, "", "", ""},
		{"closed, too many wrong keys, JSON", gateReq{host: "closed.example.com", remote: guesser, user: "ci", key: "ci-secret", header: jsonClient}, 403, "", "", ""},
		{"closed, denied browser", gateReq{host: "closed.example.com", session: &bob, header: navigation}, 403, "", "", ""},
		{"closed, denied on a public path", gateReq{host: "closed.example.com", session: &bob, header: public}, 403, "", "", ""},
		{"closed, good key", gateReq{host: "closed.example.com", user: "ci", key: "ci-secret"}, 200, "", "", "ci"},
		{"closed, {SHA} key", gateReq{host: "closed.example.com", user: "old", key: "old-secret"}, 200, "", "", "old"},
		{"closed, key with colons", gateReq{host: "closed.example.com", user: "colon", key: "pa:ss:word"}, 200, "", "", "colon"},
		{"closed, good key and denied session", gateReq{host: "closed.example.com", user: "ci", key: "ci-secret", session: &bob}, 200, "", "", "ci"},
		{"closed, wrong key", gateReq{host: "closed.example.com", user: "ci", key: "wrong"}, 401, "", "", ""},
		{"closed, unknown name", gateReq{host: "closed.example.com", user: "root", key: "ci-secret"}, 401, "", "", ""},
		{"closed, wrong key with allowed session", gateReq{host: "closed.example.com", user: "ci", key: "wrong", session: &carol}, 401, "", "", ""},
		{"closed, too many wrong keys, remembered right key", gateReq{host: "closed.example.com", remote: guesser, user: "ci", key: "ci-secret"}, 200, "", "", "ci"},
		{"closed, too many wrong keys, wrong key", gateReq{host: "closed.example.com", remote: guesser, user: "ci", key: "guess"}, 403, "", "", ""},
		{"closed, too many wrong keys, session still works", gateReq{host: "closed.example.com", remote: guesser, session: &carol}, 200, gateCarol, "carol.team.example.com", ""},
		{"keys only, good key", gateReq{host: "keys.example.com", user: "ci", key: "ci-secret"}, 200, "", "", "ci"},
		{"keys only, wrong key", gateReq{host: "keys.example.com", user: "ci", key: "nope"}, 401, "", "", ""},
		{"keys only, anonymous", gateReq{host: "keys.example.com"}, 401, "", "", ""},
		{"keys only, anonymous browser", gateReq{host: "keys.example.com", header: navigation}, 401, "", "", ""},
		{"keys only, too many wrong keys, remembered right key", gateReq{host: "keys.example.com", remote: guesser, user: "ci", key: "ci-secret"}, 200, "", "", "ci"},
		{"keys only, too many wrong keys", gateReq{host: "keys.example.com", remote: guesser, user: "colon", key: "pa:ss:word"}, 403, "", "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.path == "" {
				tt.req.path = "/@/auth"
			}
			rec, _ := tt.req.serve(t, rt)
			h := rec.Header()
			switch rec.Code {
			case 200, 401, 403:
			default:
				t.Fatalf("status %d: nginx auth_request would answer 500", rec.Code)
			}
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %s", rec.Code, tt.status, rec.Body)
			}
			if h.Get("Location") != "" || h.Get("X-Backend") != "" {
				t.Errorf("Location %q, backend %q", h.Get("Location"), h.Get("X-Backend"))
			}
			if h.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", h.Get("Cache-Control"))
			}
			// An admitted request gets JSON; a refusal carries the page a
			// visitor would see (Traefik and Caddy show it): JSON for
			// JSON clients, HTML otherwise.
			var body map[string]string
			page := rec.Body.String()
			isJSON := strings.HasPrefix(h.Get("Content-Type"), "application/json")
			if rec.Code == 200 || tt.req.header.Get("Accept") == "application/json" {
				if !isJSON {
					t.Fatalf("Content-Type %q, want JSON", h.Get("Content-Type"))
				}
				if tt.req.method != http.MethodHead {
					if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
						t.Fatalf("body %q: %v", page, err)
					}
				}
			} else if rec.Code != 200 && tt.req.method != http.MethodHead && !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
				t.Errorf("refusal Content-Type %q, want the HTML page", h.Get("Content-Type"))
			}
			if got := h.Get(contract.UserDID); got != tt.did {
				t.Errorf("User-Did %q, want %q", got, tt.did)
			}
			if got := h.Get(contract.UserHandle); got != tt.handle {
				t.Errorf("User-Handle %q, want %q", got, tt.handle)
			}
			if got := h.Get(contract.APIKeyUser); got != tt.user {
				t.Errorf("Apikey-User %q, want %q", got, tt.user)
			}
			if tt.did != "" {
				var want string
				for _, s := range []sessions.Session{openSess, alice, carol} {
					if s.DID == tt.did && s.Host == tt.req.host {
						want = s.ProxyKey
					}
				}
				if tt.req.remote != "" && !strings.HasPrefix(tt.req.remote, "192.0.2.1:") {
					want = "" // not from the trusted proxy
				}
				if got := h.Get(contract.ProxySession); got != want {
					t.Errorf("Proxy-Session %q, want %q", got, want)
				}
				if body != nil && (body["did"] != tt.did || body["handle"] != tt.handle) {
					t.Errorf("body %v", body)
				}
			} else if h.Get(contract.ProxySession) != "" {
				t.Errorf("Proxy-Session without a session")
			}
			if body != nil && rec.Code == 200 && body["apikey_user"] != tt.user {
				t.Errorf("body %v", body)
			}
			switch rec.Code {
			case 401:
				if tt.req.header.Get("Sec-Fetch-Mode") == "" || tt.req.user != "" {
					wantChallenge(t, rec, tt.req.host)
				}
				if body != nil && body["error"] != "AuthRequired" {
					t.Errorf("body %v", body)
				}
			case 403:
				deniedAccount := tt.req.session != nil && tt.req.user == ""
				switch {
				case body != nil && deniedAccount:
					if body["error"] != "Forbidden" || !strings.Contains(body["message"], tt.req.session.DID) {
						t.Errorf("denied body %v", body)
					}
				case body != nil:
					if body["error"] != "Forbidden" {
						t.Errorf("body %v", body)
					}
				case deniedAccount:
					for _, want := range []string{"@" + tt.req.session.Handle, tt.req.session.DID, fmt.Sprintf(deniedCSRF, csrfToken(tt.req.session.ID))} {
						if !strings.Contains(page, want) {
							t.Errorf("denied page lacks %s:\n%s", want, page)
						}
					}
				default:
					if !strings.Contains(page, "Too many wrong keys") {
						t.Errorf("page %s", page)
					}
				}
			}
		})
	}
}

// The 401 of forward-auth links to sign-in, back to the page the proxy in
// front names.
func TestForwardAuthSignInLink(t *testing.T) {
	rt := newRouter(t, mustConfig(t, forwardAuthConfig(t, "http://127.0.0.1:1")), openStore(t))
	for hdr, want := range map[string]string{
		"X-Forwarded-Uri": "/report?id=1",
		"X-Original-Uri":  "/report?id=1",
		"":                "/",
	} {
		req := gateReq{host: "closed.example.com", path: "/@/auth", header: http.Header{}}
		if hdr != "" {
			req.header.Set(hdr, "/report?id=1")
		}
		rec, _ := req.serve(t, rt)
		link := `href="/@/signin?` + strings.ReplaceAll(url.Values{"redirect": {want}}.Encode(), "&", "&amp;") + `"`
		if rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), link) {
			t.Errorf("%s: %d, page lacks %s:\n%s", hdr, rec.Code, link, rec.Body)
		}
		if r := rec.Header().Get("Refresh"); r != "" {
			t.Errorf("%s: a program got Refresh %q", hdr, r)
		}
		// A browser loading the page is sent on, as by a redirect, while
		// the status stays 401 for nginx.
		req.header.Set("Sec-Fetch-Mode", "navigate")
		rec, _ = req.serve(t, rt)
		refresh := "0; url=/@/signin?" + (url.Values{"redirect": {want}}).Encode()
		if rec.Code != http.StatusUnauthorized || rec.Header().Get("Refresh") != refresh {
			t.Errorf("%s, navigation: %d Refresh %q, want %q", hdr, rec.Code, rec.Header().Get("Refresh"), refresh)
		}
	}
}

// A host without a backend only answers forward-auth: its other paths
// serve nothing, whoever asks, and nothing panics.
func TestForwardAuthOnlyHost(t *testing.T) {
	store := openStore(t)
	rt := newRouter(t, mustConfig(t, forwardAuthConfig(t, "http://127.0.0.1:1")), store)
	carol := newGateSession(t, store, "closed.example.com", gateCarol, "carol.team.example.com")
	bob := newGateSession(t, store, "closed.example.com", gateBob, "bob.example.com")
	for _, tt := range []struct {
		name   string
		req    gateReq
		status []int
	}{
		{"allowed session", gateReq{host: "closed.example.com", session: &carol}, []int{404}},
		{"good key", gateReq{host: "closed.example.com", user: "ci", key: "ci-secret"}, []int{404}},
		{"good key, keys only", gateReq{host: "keys.example.com", user: "ci", key: "ci-secret"}, []int{404}},
		{"public path", gateReq{host: "closed.example.com", path: "/healthz"}, []int{404}},
		{"public path, denied session", gateReq{host: "closed.example.com", path: "/static/x.css", session: &bob}, []int{404}},
		// Refused requests are refused first; a 404 would do too.
		{"anonymous", gateReq{host: "closed.example.com"}, []int{401, 404}},
		{"anonymous browser", gateReq{host: "closed.example.com", header: navigation}, []int{303, 404}},
		{"denied session", gateReq{host: "closed.example.com", session: &bob}, []int{403, 404}},
		{"wrong key", gateReq{host: "keys.example.com", user: "ci", key: "x"}, []int{401, 404}},
		{"anonymous, keys only", gateReq{host: "keys.example.com", header: navigation}, []int{401, 404}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.path == "" {
				tt.req.path = "/app/page"
			}
			rec, _ := tt.req.serve(t, rt)
			ok := false
			for _, s := range tt.status {
				ok = ok || rec.Code == s
			}
			if !ok {
				t.Errorf("status %d, want one of %v", rec.Code, tt.status)
			}
		})
	}
	// And /@/auth works there (TestForwardAuth has the details).
	for host, want := range map[string]int{"closed.example.com": 200, "keys.example.com": 401} {
		if rec, _ := (gateReq{host: host, path: "/@/auth", session: &carol}).serve(t, rt); rec.Code != want {
			t.Errorf("%s /@/auth: %d, want %d", host, rec.Code, want)
		}
	}
}

var deniedCSRF = `name="csrf" value="%s"`

// The 403 page names the account, offers sign-out back to the page that
// was refused (for forward-auth, the page the proxy in front names), and
// shows none of the session's secrets.
func TestDeniedPage(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	cfg := mustConfig(t, fmt.Sprintf(`
ingress { trusted_proxies = ["192.0.2.1"] }
host "tool.example.com" {
  backend = %q
  require_atproto { handles = ["*.team.example.com"] }
}
host "fa.example.com" {
  require_atproto { handles = ["*.team.example.com"] }
}`, a.URL))
	rt := newRouter(t, cfg, store)
	byHost := map[string]sessions.Session{
		"tool.example.com": newGateSession(t, store, "tool.example.com", gateBob, "bob.example.com"),
		"fa.example.com":   newGateSession(t, store, "fa.example.com", gateBob, "bob.example.com"),
	}
	const untrusted = "203.0.113.9:1"
	for _, tt := range []struct {
		host, path, remote string
		header             http.Header
		back               string
	}{
		{"tool.example.com", "/report?week=48", "", http.Header{"Accept": {"text/html"}}, "/report?week=48"},
		{"fa.example.com", "/@/auth", "", http.Header{"Accept": {"text/html"}, "X-Forwarded-Uri": {"/report"}}, "/report"},
		{"fa.example.com", "/@/auth", "", http.Header{"Accept": {"text/html"}, "X-Original-Uri": {"/x?y=1"}}, "/x?y=1"},
		{"fa.example.com", "/@/auth", "", http.Header{"Accept": {"text/html"}, "X-Forwarded-Uri": {"//evil.example.net/"}}, "/"},
		// Only a trusted proxy names the page.
		{"fa.example.com", "/@/auth", untrusted, http.Header{"Accept": {"text/html"}, "X-Forwarded-Uri": {"/report"}}, "/"},
	} {
		bob := byHost[tt.host]
		rec, _ := gateReq{host: tt.host, path: tt.path, remote: tt.remote, session: &bob, header: tt.header}.serve(t, rt)
		body := rec.Body.String()
		if rec.Code != http.StatusForbidden || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
			t.Fatalf("%s %v: %d %s", tt.path, tt.header, rec.Code, rec.Header().Get("Content-Type"))
		}
		for _, want := range []string{"@bob.example.com", gateBob, `action="/@/signout"`, fmt.Sprintf(`name="csrf" value="%s"`, csrfToken(bob.ID)),
			fmt.Sprintf(`name="redirect" value="%s"`, template.HTMLEscapeString(tt.back))} {
			if !strings.Contains(body, want) {
				t.Errorf("%s %v: denied page lacks %s:\n%s", tt.path, tt.header, want, body)
			}
		}
		if strings.Contains(body, bob.ID) || strings.Contains(body, bob.ProxyKey) {
			t.Error("denied page shows the session's secrets")
		}
	}
}

// The 403 of an app's fetch call is JSON, as its other errors are.
func TestDeniedJSON(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`
host "tool.example.com" {
  backend = %q
  require_atproto { dids = [%q] }
}`, a.URL, gateAlice)), store)
	bob := newGateSession(t, store, "tool.example.com", gateBob, "bob.example.com")
	for _, accept := range []string{"application/json", "application/json, */*;q=0.8"} {
		rec, _ := gateReq{host: "tool.example.com", path: "/api/items", session: &bob, header: http.Header{"Accept": {accept}}}.serve(t, rt)
		if rec.Code != http.StatusForbidden || rec.Header().Get("X-Backend") != "" || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
			t.Fatalf("Accept %s: %d %s", accept, rec.Code, rec.Header().Get("Content-Type"))
		}
		var body map[string]string
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["error"] != "Forbidden" || !strings.Contains(body["message"], gateBob) {
			t.Errorf("Accept %s: body %q", accept, rec.Body)
		}
	}
}

// A refresh that finds the handle no longer verifies stores
// "handle.invalid": the account then loses what a handle rule gave it, on
// the next request, and gets it back when the handle verifies again.
func TestSessionHandleChange(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`
host "tool.example.com" {
  backend = %q
  require_atproto {
    dids    = [%q]
    handles = ["bob.example.com"]
  }
}
host "fa.example.com" {
  require_atproto {
    dids    = [%q]
    handles = ["bob.example.com"]
  }
}`, a.URL, gateAlice, gateAlice)), store)
	bob := newGateSession(t, store, "tool.example.com", gateBob, "bob.example.com")
	alice := newGateSession(t, store, "tool.example.com", gateAlice, "alice.example.com")
	// The same accounts on the forward-auth host.
	twin := map[string]sessions.Session{
		bob.ID:   newGateSession(t, store, "fa.example.com", gateBob, "bob.example.com"),
		alice.ID: newGateSession(t, store, "fa.example.com", gateAlice, "alice.example.com"),
	}
	setHandle := func(id, handle string) {
		t.Helper()
		for _, id := range []string{id, twin[id].ID} {
			if _, err := store.Update(context.Background(), id, func(s *sessions.Session) error { s.Handle = handle; return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(step string, sess sessions.Session, want int, wantHandle string) {
		t.Helper()
		rec, s := gateReq{host: "tool.example.com", path: "/", session: &sess, header: htmlAccept()}.serve(t, rt)
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", step, rec.Code, want)
		}
		if want == 200 && s.Headers.Get(contract.UserHandle) != wantHandle {
			t.Errorf("%s: backend saw User-Handle %q, want %q", step, s.Headers.Get(contract.UserHandle), wantHandle)
		}
		fa := twin[sess.ID]
		rec, _ = gateReq{host: "fa.example.com", path: "/@/auth", session: &fa}.serve(t, rt)
		if rec.Code != want {
			t.Errorf("%s, forward-auth: %d, want %d", step, rec.Code, want)
		}
	}
	check("verified handle", bob, 200, "bob.example.com")
	setHandle(bob.ID, "handle.invalid")
	check("handle no longer verifies", bob, 403, "")
	setHandle(bob.ID, "BOB.example.com")
	check("handle verifies again", bob, 200, "BOB.example.com")
	setHandle(bob.ID, "bob.example.net")
	check("handle changed to an unlisted one", bob, 403, "")

	// An account listed by DID keeps its access whatever its handle.
	setHandle(alice.ID, "handle.invalid")
	check("listed DID, handle no longer verifies", alice, 200, "handle.invalid")

	// A handle admits only while its last check is recent: a server that
	// keeps failing its refreshes must not keep an old handle admitted.
	setHandle(bob.ID, "bob.example.com")
	setChecked := func(id string, ago time.Duration) {
		t.Helper()
		for _, id := range []string{id, twin[id].ID} {
			if _, err := store.Update(context.Background(), id, func(s *sessions.Session) error { s.HandleCheckedAt = time.Now().Add(-ago); return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	setChecked(bob.ID, access.DefaultHandleMaxAge-time.Minute)
	check("handle checked within the grace", bob, 200, "bob.example.com")
	setChecked(bob.ID, access.DefaultHandleMaxAge+time.Minute)
	check("handle checked too long ago", bob, 403, "")
	rec, _ := gateReq{host: "tool.example.com", path: "/", session: &bob, header: htmlAccept()}.serve(t, rt)
	if body := rec.Body.String(); !strings.Contains(body, `id="handle-unchecked"`) || !strings.Contains(body, `id="signout"`) {
		t.Errorf("the 403 page does not say the handle could not be verified, or offers no sign-out:\n%s", body)
	}
	rec, _ = gateReq{host: "tool.example.com", path: "/", session: &bob, header: http.Header{"Accept": {"application/json"}}}.serve(t, rt)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "could not be verified") {
		t.Errorf("JSON: %d %s", rec.Code, rec.Body)
	}
	setChecked(alice.ID, 30*24*time.Hour)
	check("listed DID needs no recent check", alice, 200, "handle.invalid")
	setChecked(bob.ID, 0)
	check("handle checked again", bob, 200, "bob.example.com")
}

func htmlAccept() http.Header { return http.Header{"Accept": {"text/html"}} }

// Proxy-Session reaches only a proxy listed in trusted_proxies: a browser
// asking /@/auth itself (a script on the page, say) learns who it is, not
// the key that its backend uses at the calling port.
func TestForwardAuthProxySessionOnlyForTrustedProxies(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	rt := newRouter(t, mustConfig(t, forwardAuthConfig(t, a.URL)), store)
	carol := newGateSession(t, store, "closed.example.com", gateCarol, "carol.team.example.com")
	for remote, want := range map[string]string{"192.0.2.1:1234": carol.ProxyKey, "203.0.113.5:1234": ""} {
		rec, _ := gateReq{host: "closed.example.com", path: "/@/auth", session: &carol, remote: remote}.serve(t, rt)
		if rec.Code != 200 || rec.Header().Get(contract.UserDID) != gateCarol || rec.Header().Get(contract.ProxySession) != want {
			t.Errorf("from %s: %d User-Did %q Proxy-Session %q, want %q", remote, rec.Code, rec.Header().Get(contract.UserDID), rec.Header().Get(contract.ProxySession), want)
		}
		if strings.Contains(rec.Body.String(), carol.ProxyKey) {
			t.Errorf("from %s: the body carries the Proxy-Session key", remote)
		}
	}
}

// /@/auth answers only for hosts without a backend: on a host that
// ioproxy guards itself, a proxy in front pointed at it by mistake (or by
// a client's Host header) must not find a way around the rules.
func TestForwardAuthOnlyOnForwardAuthHosts(t *testing.T) {
	a := echoBackend(t, "a")
	store := openStore(t)
	rt := newRouter(t, mustConfig(t, forwardAuthConfig(t, a.URL)+fmt.Sprintf(`
host "guarded.example.com" {
  backend = %q
  require_atproto { dids = [%q] }
}`, a.URL, gateAlice)), store)
	for _, host := range []string{"open.example.com", "guarded.example.com"} {
		sess := newGateSession(t, store, host, gateAlice, "alice.example.com")
		rec, _ := gateReq{host: host, path: "/@/auth", session: &sess}.serve(t, rt)
		if rec.Code != http.StatusNotFound || rec.Header().Get(contract.UserDID) != "" || rec.Header().Get(contract.ProxySession) != "" {
			t.Errorf("%s: /@/auth %d (User-Did %q), want 404", host, rec.Code, rec.Header().Get(contract.UserDID))
		}
	}
}

// Calls to the PDS ask the routes whether an AT Protocol session may
// still be used: its host, and the host's require_atproto as it stands
// (an old handle check counts as named: the call's refresh checks it).
func TestATProtoSessionAdmitted(t *testing.T) {
	cfg := mustConfig(t, `
host "open.localhost" { backend = "localhost:1" }
host "tool.localhost" {
  backend = "localhost:1"
  require_atproto { handles = ["alice.test"] }
}
host "keys.localhost" {
  backend = "localhost:1"
  apikey_auth { users = ["ci:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="] }
}
`)
	routes := newRouter(t, cfg, nil).Routes()
	now := time.Now()
	alice := sessions.Session{Host: "tool.localhost", DID: "did:plc:alice", Handle: "alice.test", HandleCheckedAt: now, CreatedAt: now}
	for _, tc := range []struct {
		name string
		edit func(*sessions.Session)
		want bool
	}{
		{"named", func(*sessions.Session) {}, true},
		{"named, checked long ago", func(s *sessions.Session) { s.HandleCheckedAt = now.Add(-24 * time.Hour) }, true},
		{"not named", func(s *sessions.Session) { s.Handle = "bob.test" }, false},
		{"an open host", func(s *sessions.Session) { s.Host = "open.localhost" }, true},
		{"a host of keys only", func(s *sessions.Session) { s.Host = "keys.localhost" }, false},
		{"a host that is gone", func(s *sessions.Session) { s.Host = "gone.localhost" }, false},
		{"a provider's session", func(s *sessions.Session) { s.Host, s.Provider = "open.localhost", "google" }, false},
	} {
		s := alice
		tc.edit(&s)
		if got := routes.ATProtoSessionAdmitted(s); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
