package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/provider"
	"github.com/ioproxy/ioproxy/sessions"
)

// failingStore is a store whose writes of sign-ins in progress, takes of
// them and session deletes fail with the errors the test sets.
type failingStore struct {
	sessions.Store
	mu                      sync.Mutex
	putErr, takeErr, delErr error
}

func (s *failingStore) fail(put, take, del error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putErr, s.takeErr, s.delErr = put, take, del
}

func (s *failingStore) PutPending(ctx context.Context, p sessions.Pending) error {
	s.mu.Lock()
	err := s.putErr
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.Store.PutPending(ctx, p)
}

func (s *failingStore) TakePending(ctx context.Context, state string) (sessions.Pending, error) {
	s.mu.Lock()
	err := s.takeErr
	s.mu.Unlock()
	if err != nil {
		return sessions.Pending{}, err
	}
	return s.Store.TakePending(ctx, state)
}

func (s *failingStore) Delete(ctx context.Context, id string) error {
	s.mu.Lock()
	err := s.delErr
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.Store.Delete(ctx, id)
}

// failingProviderRouter is providerRouter on a store the test makes fail,
// with the sign-in stages and the log it reports.
func failingProviderRouter(t *testing.T) (*Router, *fakeProviderClient, *failingStore, *syncBuffer, *syncBuffer) {
	t.Helper()
	cfg := mustConfig(t, providerHostConfig(echoBackend(t, "tool").URL))
	store := &failingStore{Store: openStore(t)}
	events, logs := &syncBuffer{}, &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	f := newFakeProviderClient()
	life := sessions.NewLifecycle(sessions.LifecycleConfig{Store: store, Logger: logger})
	rt, err := New(Config{Config: cfg, Sessions: life, Recorder: stageLog{w: events}, Logger: logger, Providers: map[string]map[string]ProviderClient{
		"tools.localhost": {"google": f}, "open.localhost": {"google": f},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return rt, f, store, events, logs
}

// storeFailures are the ways a store refuses a sign-in in progress: full
// (in all, or the client's share), or not answering. Only the first is
// "store full".
var storeFailures = []struct {
	name       string
	err        error
	full       bool
	retryAfter string
	message    string
}{
	{"full", fmt.Errorf("bolt: %w", sessions.ErrFull), true, "60", "too many sign-ins in progress"},
	{"out of reach", fmt.Errorf("redis: %w", sessions.ErrUnavailable), false, "5", "session store is not reachable"},
	{"any other error", errors.New("disk I/O error"), false, "5", "session store is not reachable"},
}

// A provider sign-in whose store fails says why with a readable page (or
// JSON) and the status that goes with it, and reports store_full only for
// a store that is full: before, every store error was "store full".
func TestProviderSignInStoreFailure(t *testing.T) {
	for _, tc := range storeFailures {
		t.Run(tc.name, func(t *testing.T) {
			rt, _, store, events, logs := failingProviderRouter(t)
			store.fail(tc.err, nil, nil)
			rec := httptest.NewRecorder()
			rt.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://tools.localhost/@google/signin?redirect=%2Freport", nil))
			body := rec.Body.String()
			if rec.Code != http.StatusServiceUnavailable || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") ||
				!strings.Contains(body, tc.message) || !strings.Contains(body, `href="/@google/signin"`) {
				t.Fatalf("%d %q:\n%s", rec.Code, rec.Header().Get("Content-Type"), body)
			}
			if got := rec.Header().Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if tc.full == strings.Contains(body, "not reachable") || !tc.full && strings.Contains(body, "Too many sign-ins") {
				t.Errorf("the page mistakes the failure:\n%s", body)
			}
			if full := strings.Contains(events.String(), observe.SignInStoreFull); full != tc.full {
				t.Errorf("events %q: store_full %v, want %v", events.String(), full, tc.full)
			}
			if rec.Header().Get("Location") != "" || len(rec.Result().Cookies()) != 0 {
				t.Errorf("a sign-in went on: Location %q, cookies %v", rec.Header().Get("Location"), rec.Result().Cookies())
			}
			if l := logs.String(); !strings.Contains(l, "provider=google") || !strings.Contains(l, "host=tools.localhost") {
				t.Errorf("the log does not say whose sign-in:\n%s", l)
			}

			req := httptest.NewRequest(http.MethodGet, "http://tools.localhost/@google/signin", nil)
			req.Header.Set("Accept", "application/json")
			rec = httptest.NewRecorder()
			rt.ServeHTTP(rec, req)
			var answer struct{ Error, Message string }
			if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || rec.Code != http.StatusServiceUnavailable ||
				answer.Error != "ServiceUnavailable" || !strings.Contains(answer.Message, tc.message) {
				t.Errorf("JSON: %d %s", rec.Code, rec.Body)
			}
		})
	}
}

// The shared beginSignIn answers both sign-ins alike, each with its own
// link to try again.
func TestSignInFlowBeginStoreFailure(t *testing.T) {
	flows := []signInFlow{
		{host: "app.example.com", prefix: "/@/"},
		{host: "tools.localhost", provider: "google", prefix: "/@google/"},
	}
	for _, base := range flows {
		for _, tc := range storeFailures {
			t.Run(base.prefix+" "+tc.name, func(t *testing.T) {
				store := &failingStore{Store: openStore(t)}
				store.fail(tc.err, nil, nil)
				events := &syncBuffer{}
				f := base
				f.sessions = sessions.NewLifecycle(sessions.LifecycleConfig{Store: store})
				f.recorder, f.log = stageLog{w: events}, slog.New(slog.DiscardHandler)
				rec := httptest.NewRecorder()
				p := sessions.Pending{State: sessions.NewToken(), Host: f.host, Provider: f.provider}
				if f.beginSignIn(rec, httptest.NewRequest(http.MethodGet, "http://"+f.host+f.prefix+"signin", nil), p) {
					t.Fatal("began a sign-in the store refused")
				}
				body := rec.Body.String()
				if rec.Code != http.StatusServiceUnavailable || !strings.Contains(body, tc.message) || !strings.Contains(body, `href="`+f.prefix+`signin"`) {
					t.Errorf("%d\n%s", rec.Code, body)
				}
				if full := strings.Contains(events.String(), observe.SignInStoreFull); full != tc.full || rec.Header().Get("Retry-After") != tc.retryAfter {
					t.Errorf("events %q, Retry-After %q", events.String(), rec.Header().Get("Retry-After"))
				}
			})
		}
	}
}

// A provider callback or sign-out whose store does not answer gets a
// readable page, and the sign-out says whether the session may live on.
func TestProviderCallbackAndSignoutStoreFailures(t *testing.T) {
	rt, f, store, events, _ := failingProviderRouter(t)
	jar := browserJar{}
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://open.localhost/@google/signin", nil))
	jar.keep(rec)
	state, code := f.issue(provider.Identity{Subject: "7", Email: "bob@else.example", EmailVerified: true})
	store.fail(nil, fmt.Errorf("redis: %w", sessions.ErrUnavailable), nil)
	rec = httptest.NewRecorder()
	rt.ServeHTTP(rec, jar.request(http.MethodGet, "http://open.localhost/@google/callback?"+url.Values{"state": {state}, "code": {code}}.Encode(), nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "not reachable") || !strings.Contains(rec.Body.String(), `href="/@google/signin"`) {
		t.Fatalf("callback, store out of reach: %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(events.String(), "failed") {
		t.Errorf("events %q lack the failed sign-in", events.String())
	}

	store.fail(nil, nil, nil)
	signInWith(t, rt, f, jar, "open.localhost", provider.Identity{Subject: "7", Email: "bob@else.example", EmailVerified: true})
	if jar["ioproxy-oauth-google"] == "" {
		t.Fatal("not signed in")
	}
	for _, tc := range []struct {
		err    error
		status int
		says   string
	}{
		{fmt.Errorf("redis: %w", sessions.ErrUnavailable), http.StatusServiceUnavailable, "you are still signed in"},
		{errors.New("disk I/O error"), http.StatusInternalServerError, "you may still be signed in"},
	} {
		store.fail(nil, nil, tc.err)
		rec = httptest.NewRecorder()
		rt.ServeHTTP(rec, jar.request(http.MethodPost, "http://open.localhost/@google/signout", http.Header{"Origin": {"http://open.localhost"}}))
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.says) || len(rec.Result().Cookies()) != 0 {
			t.Errorf("sign-out, %v: %d %v %s", tc.err, rec.Code, rec.Result().Cookies(), rec.Body)
		}
	}
	if n, _ := store.Count(t.Context()); n != 1 {
		t.Errorf("%d sessions, want the one whose sign-out failed", n)
	}
}

// providerCookieRoute is a host with the providers names, for reading
// their cookies.
func providerCookieRoute(names ...string) *hostRoute {
	hr := &hostRoute{}
	for _, n := range names {
		hr.providers = append(hr.providers, &providerRoute{cfg: config.OAuthProvider{Name: n}, prefix: "/@" + n + "/"})
	}
	return hr
}

// checkProviderCookieIDs holds providerCookieIDs, which reads every
// provider cookie of a host in one pass, to net/http's reading of each
// cookie by itself, over HTTP and HTTPS. FuzzCookieValue calls it.
func checkProviderCookieIDs(t *testing.T, r *http.Request) {
	t.Helper()
	hr := providerCookieRoute("google", "github", "g", "google-work")
	for _, https := range []bool{false, true} {
		r := withHTTPS(r, https)
		ids := hr.providerCookieIDs(r)
		for i, pr := range hr.providers {
			want := ""
			if c, err := r.Cookie(providerCookie(r, pr.cfg.Name)); err == nil {
				want = c.Value
			}
			if ids[i] != want {
				t.Fatalf("providerCookieIDs(%q, https %v)[%s] = %q, net/http reads %q", r.Header["Cookie"], https, pr.cfg.Name, ids[i], want)
			}
		}
	}
}

func TestProviderCookieIDs(t *testing.T) {
	for _, lines := range [][]string{
		nil,
		{"ioproxy-oauth-google=a; ioproxy-oauth-github=b; ioproxy-session=s"},
		{"__Host-ioproxy-oauth-google=a; ioproxy-oauth-google=b"},
		{"ioproxy-oauth-google=; ioproxy-oauth-google=later"},
		{`ioproxy-oauth-google=bad\; ioproxy-oauth-google=good`},
		{`ioproxy-oauth-google="quoted"`, "ioproxy-oauth-g=short; ioproxy-oauth-google-work=w"},
		{"ioproxy-oauth-=x; ioproxy-oauth-gooGle=x; ioproxy-oauth-google"},
		{"ioproxy-oauth-github=first", "ioproxy-oauth-github=second"},
		{strings.Repeat("x=1;", maxCookies) + "ioproxy-oauth-google=a"},
	} {
		r := httptest.NewRequest(http.MethodGet, "http://tools.localhost/", nil)
		r.Header["Cookie"] = lines
		checkProviderCookieIDs(t, r)
	}
}

// Reading cookies costs no allocation, however many providers a host has:
// every request of a browser reads them.
func TestCookieReadingAllocatesNothing(t *testing.T) {
	hr := providerCookieRoute("google", "github", "gitlab")
	r := httptest.NewRequest(http.MethodGet, "http://tools.localhost/", nil)
	r.Header["Cookie"] = []string{"app=1; ioproxy-session=abc; ioproxy-oauth-github=def; ioproxy-oauth-google=ghi; theme=dark"}
	var ids [config.MaxOAuthProviders]string
	var session string
	if n := testing.AllocsPerRun(100, func() {
		ids, session = hr.providerCookieIDs(r), cookieValue(r, CookieName)
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
	if ids[0] != "ghi" || ids[1] != "def" || ids[2] != "" || session != "abc" {
		t.Errorf("read %q and %q", ids, session)
	}
}
