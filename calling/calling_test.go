package calling

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/atproto/atprototest"
	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/identity"
	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/atproto/safehttp"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/ingress"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// callEnv is a fake AT Protocol server, an OAuth client, a session store
// and the pieces a calling port needs, wired as server wires
// them.
type callEnv struct {
	srv       *atprototest.Server
	alice     atprototest.Account
	bob       atprototest.Account
	store     sessions.Store
	client    *oauth.Client
	tokens    *sessions.Lifecycle
	resolver  *identity.Resolver
	nonces    *dpop.Nonces
	pdsClient *http.Client
}

func newCallEnv(t testing.TB) *callEnv {
	t.Helper()
	return newCallEnvAt(t, time.Now)
}

// newCallEnvAt is newCallEnv whose OAuth client and Tokens use now, so a
// test can let cached server metadata expire.
func newCallEnvAt(t testing.TB, now func() time.Time) *callEnv {
	t.Helper()
	e := &callEnv{srv: atprototest.New(t, atprototest.Options{}), nonces: &dpop.Nonces{}}
	e.alice = e.srv.AddAccount(atprototest.Account{Handle: "alice.test"})
	e.bob = e.srv.AddAccount(atprototest.Account{Handle: "bob.test"})
	store, err := boltstore.Open(boltstore.Config{Path: filepath.Join(t.TempDir(), "data", "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e.store = store
	httpc := safehttp.NewClient(safehttp.Options{AllowInsecure: true})
	e.pdsClient = safehttp.NewClient(safehttp.Options{AllowInsecure: true, Timeout: 24 * time.Hour, ResponseHeaderTimeout: 5 * time.Minute, MaxResponseBytes: -1, MaxIdleConnsPerHost: 64, MaxRedirects: -1})
	e.resolver = identity.New(identity.Config{PLCURL: e.srv.URL, HandleResolver: e.srv.URL, HTTPClient: httpc, AllowInsecure: true})
	redirect := "http://127.0.0.1:9000/@/callback"
	e.client, err = oauth.New(oauth.Config{
		ClientID: oauth.LocalhostClientID(redirect, "atproto transition:generic"), RedirectURI: redirect, Scope: "atproto transition:generic",
		HTTP: httpc, Identity: e.resolver, Nonces: e.nonces, AllowInsecure: true, Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.tokens = sessions.NewLifecycle(sessions.LifecycleConfig{Store: store, Clients: map[string]*oauth.Client{e.client.ClientID(): e.client}, Nonces: e.nonces, Now: now})
	return e
}

// signIn goes through the real OAuth flow and stores the session as the
// sign-in routes do.
func (e *callEnv) signIn(t testing.TB, acct atprototest.Account) sessions.Session {
	t.Helper()
	ctx := context.Background()
	req, authURL, err := e.client.Authorize(ctx, acct.Handle)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := e.srv.ApproveURL(authURL, acct.DID)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	g, err := e.client.Exchange(ctx, req, u.Query().Get("code"), u.Query().Get("iss"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	sess := sessions.Session{
		ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "app.example.com",
		DID: g.DID, Handle: g.Handle, PDS: g.PDS, Issuer: g.Issuer, ClientID: e.client.ClientID(), Scope: g.Scope,
		AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, TokenExpiry: g.Expiry, DPoPKey: req.DPoPKey,
		AuthServerNonce: g.AuthServerNonce, CreatedAt: now, Expiry: now.Add(30 * 24 * time.Hour),
	}
	if _, err := e.store.Create(context.Background(), sess); err != nil {
		t.Fatal(err)
	}
	return sess
}

// signInOnDeadPDS signs alice in, then moves her session to a PDS that is
// gone (a port nothing listens on), whose URL it returns.
func (e *callEnv) signInOnDeadPDS(t testing.TB) (sessions.Session, string) {
	t.Helper()
	sess := e.signIn(t, e.alice)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	sess, err = e.store.Update(context.Background(), sess.ID, func(s *sessions.Session) error { s.PDS = dead; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return sess, dead
}

func pdsCall() config.Call {
	return config.Call{Label: "atproto", ShortName: "atproto", Port: 7000, Endpoint: config.Endpoint{Kind: config.EndpointPDS, Raw: "@"},
		MaxBodyBytes: 1 << 20, Timeout: 5 * time.Second}
}

func (e *callEnv) port(t testing.TB, c config.Call) http.Handler {
	t.Helper()
	h, err := New(Config{Call: c, Sessions: e.tokens, Identity: e.resolver, PDSClient: e.pdsClient, Nonces: e.nonces})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// as is the identity a backend passes on to the calling port.
type as struct{ did, key string }

func who(s sessions.Session) as { return as{did: s.DID, key: s.ProxyKey} }

func call(h http.Handler, method, path, body string, who as, hdr ...string) *httptest.ResponseRecorder {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, "http://127.0.0.1:7000"+path, r)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if who.did != "" {
		req.Header.Set("User-Did", who.did)
	}
	if who.key != "" {
		req.Header.Set("Proxy-Session", who.key)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func echoOf(t testing.TB, rec *httptest.ResponseRecorder) atprototest.Echo {
	t.Helper()
	var e atprototest.Echo
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("answer %d %q is not the fake's echo: %v", rec.Code, rec.Body.String(), err)
	}
	return e
}

func xrpcError(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var x struct{ Error, Message string }
	if err := json.Unmarshal(rec.Body.Bytes(), &x); err != nil || x.Error == "" || x.Message == "" {
		t.Errorf("answer %d %q is not an XRPC error", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q", ct)
	}
	return x.Error
}

func TestSteadyStateIsOneRequestPerCall(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	before := e.srv.Counts()
	for i := 0; i < 10; i++ {
		rec := call(h, "GET", "/xrpc/com.atproto.repo.listRecords?repo="+e.alice.DID+"&collection=xyz.statusphere.status", "", who(sess),
			"Authorization", "Bearer not-forwarded", "Cookie", "ioproxy-session=x")
		if rec.Code != 200 {
			t.Fatalf("call %d: %d %s", i, rec.Code, rec.Body)
		}
		ec := echoOf(t, rec)
		if ec.DID != e.alice.DID || ec.Path != "/xrpc/com.atproto.repo.listRecords" || ec.Query != "repo="+e.alice.DID+"&collection=xyz.statusphere.status" || ec.Method != "GET" {
			t.Errorf("the PDS saw %+v", ec)
		}
	}
	after := e.srv.Counts()
	if n := after.XRPC - before.XRPC; n != 10 {
		t.Errorf("%d upstream requests for 10 calls, want 10", n)
	}
	if after.Token != before.Token || after.NonceChallenges != before.NonceChallenges {
		t.Errorf("steady state caused refreshes or nonce challenges: %+v → %+v", before, after)
	}
	for _, r := range e.srv.XRPCRequests() {
		if !strings.HasPrefix(r.Authorization, "DPoP ") || r.Header.Get("Cookie") != "" || r.Header.Get("User-Did") != "" || r.Header.Get("Proxy-Session") != "" {
			t.Errorf("the PDS got Authorization %q and headers %v", r.Authorization, r.Header)
		}
	}
}

func TestOneRetryPerNonceChange(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	want := []int{1, 2, 1, 1, 2, 2} // upstream requests per call
	rotateBefore := []bool{false, true, false, false, true, true}
	for i := range want {
		if rotateBefore[i] {
			e.srv.RotateNonce()
			if i == 5 {
				e.srv.RotateNonce() // two rotations between calls: still one retry
			}
		}
		before := e.srv.Counts()
		body := fmt.Sprintf(`{"call":%d}`, i)
		rec := call(h, "POST", "/xrpc/com.atproto.repo.createRecord", body, who(sess))
		if rec.Code != 200 {
			t.Fatalf("call %d: %d %s", i, rec.Code, rec.Body)
		}
		if ec := echoOf(t, rec); ec.Body != body {
			t.Errorf("call %d: body %q arrived as %q", i, body, ec.Body)
		}
		if n := e.srv.Counts().XRPC - before.XRPC; n != want[i] {
			t.Errorf("call %d: %d upstream requests, want %d", i, n, want[i])
		}
	}
	// Every attempt carried the whole body.
	for _, r := range e.srv.XRPCRequests() {
		if !strings.HasPrefix(r.Body, `{"call":`) || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("an attempt arrived with body %q, Content-Type %q", r.Body, r.Header.Get("Content-Type"))
		}
	}
}

func TestNonceRefusedTwiceIsReturned(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	e.srv.SetNonceEveryRequest(true)
	before := e.srv.Counts().XRPC
	rec := call(h, "GET", "/xrpc/com.atproto.server.getSession", "", who(sess))
	if rec.Code != 401 {
		t.Errorf("status %d, want the PDS's 401", rec.Code)
	}
	if n := e.srv.Counts().XRPC - before; n != 2 {
		t.Errorf("%d upstream requests, want exactly 2 (one retry)", n)
	}
}

func TestExactlyOneRefreshForConcurrentCalls(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	// A hundred calls with the race detector on a busy machine can take
	// longer than pdsCall's 5 s; this test is about counting refreshes.
	c := pdsCall()
	c.Timeout = time.Minute
	h := e.port(t, c)
	e.srv.SetTokenDelay(100 * time.Millisecond)
	e.srv.ExpireAccessTokens()
	before := e.srv.Counts()
	const n = 100
	var wg sync.WaitGroup
	recs := make([]*httptest.ResponseRecorder, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			recs[i] = call(h, "POST", "/xrpc/com.atproto.repo.createRecord", fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("x", 4096)), who(sess))
		}()
	}
	close(start)
	wg.Wait()
	for i, rec := range recs {
		if rec.Code != 200 {
			t.Errorf("call %d: %d %s", i, rec.Code, rec.Body)
			continue
		}
		ec := echoOf(t, rec)
		if want := fmt.Sprintf(`{"n":%d,"pad":%q}`, i, strings.Repeat("x", 4096)); ec.Body != want || ec.DID != e.alice.DID {
			t.Errorf("call %d: body lost or changed on retry (%d bytes arrived)", i, len(ec.Body))
		}
	}
	after := e.srv.Counts()
	if r := after.Refresh - before.Refresh; r != 1 {
		t.Errorf("%d refreshes for %d concurrent calls, want exactly 1", r, n)
	}
	if x := after.XRPC - before.XRPC; x > 2*n {
		t.Errorf("%d upstream requests for %d calls, want at most %d", x, n, 2*n)
	}
	cur, ok := getSession(e.store, sess.ID)
	if !ok || cur.AccessToken == sess.AccessToken || cur.RefreshToken == sess.RefreshToken || !e.srv.TokenValid(cur.AccessToken) {
		t.Error("the refreshed tokens were not saved")
	}
	if e.srv.ActiveGrants() != 1 {
		t.Error("the server ended the session: a refresh token was replayed")
	}
	// Next calls use the saved token: one request each, no refresh.
	before = e.srv.Counts()
	if rec := call(h, "GET", "/xrpc/com.example.echo", "", who(sess)); rec.Code != 200 {
		t.Fatalf("call after refresh: %d", rec.Code)
	}
	if c := e.srv.Counts(); c.XRPC-before.XRPC != 1 || c.Refresh != before.Refresh {
		t.Errorf("call after refresh: %+v → %+v", before, c)
	}
}

func TestBodyIntactAfterRefresh(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	e.srv.ExpireAccessTokens()
	e.srv.RotateNonce() // a nonce retry and a refresh on the same call
	body := `{"repo":"` + e.alice.DID + `","collection":"xyz.statusphere.status","record":{"status":"👍","pad":"` + strings.Repeat("y", 200<<10) + `"}}`
	rec := call(h, "POST", "/xrpc/com.atproto.repo.createRecord?x=1", body, who(sess))
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if ec := echoOf(t, rec); ec.Body != body || ec.Query != "x=1" {
		t.Errorf("body of %d bytes arrived as %d bytes (query %q)", len(body), len(ec.Body), ec.Query)
	}
	reqs := e.srv.XRPCRequests()
	if len(reqs) != 3 {
		t.Fatalf("%d upstream requests, want 3 (nonce retry, refresh retry)", len(reqs))
	}
	for i, r := range reqs {
		if r.Body != body {
			t.Errorf("attempt %d carried %d of %d bytes", i, len(r.Body), len(body))
		}
	}
	if e.srv.Counts().Refresh != 1 {
		t.Errorf("%d refreshes", e.srv.Counts().Refresh)
	}
}

func TestProactiveRefresh(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	// The token expires within the refresh margin: refreshed before use.
	if _, err := e.store.Update(context.Background(), sess.ID, func(s *sessions.Session) error { s.TokenExpiry = time.Now().Add(10 * time.Second); return nil }); err != nil {
		t.Fatal(err)
	}
	before := e.srv.Counts()
	if rec := call(h, "GET", "/xrpc/com.example.echo", "", who(sess)); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	after := e.srv.Counts()
	if after.Refresh-before.Refresh != 1 || after.XRPC-before.XRPC != 1 || after.InvalidToken != before.InvalidToken {
		t.Errorf("proactive refresh: %+v → %+v; want one refresh, then one call", before, after)
	}
}

// A refresh ahead of expiry that fails for a passing reason (here the
// DID directory is unreachable) does not fail the call: the current token
// still works, so it is used, and the session stays.
func TestEarlyRefreshFailureUsesCurrentToken(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	dead := safehttp.NewClient(safehttp.Options{AllowInsecure: true, Timeout: time.Second})
	unreachable, err := oauth.New(oauth.Config{
		ClientID: e.client.ClientID(), RedirectURI: "http://127.0.0.1:9000/@/callback", Scope: "atproto transition:generic",
		HTTP: dead, Identity: identity.New(identity.Config{PLCURL: "http://127.0.0.1:1", HandleResolver: "http://127.0.0.1:1", HTTPClient: dead, AllowInsecure: true}),
		Nonces: e.nonces, AllowInsecure: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.tokens = sessions.NewLifecycle(sessions.LifecycleConfig{Store: e.store, Clients: map[string]*oauth.Client{e.client.ClientID(): unreachable}})
	h := e.port(t, pdsCall())
	if _, err := e.store.Update(context.Background(), sess.ID, func(s *sessions.Session) error { s.TokenExpiry = time.Now().Add(10 * time.Second); return nil }); err != nil {
		t.Fatal(err)
	}
	before := e.srv.Counts()
	if rec := call(h, "GET", "/xrpc/com.example.echo", "", who(sess)); rec.Code != 200 {
		t.Fatalf("call during a failed early refresh: %d %s", rec.Code, rec.Body)
	}
	if after := e.srv.Counts(); after.Refresh != before.Refresh {
		t.Errorf("refresh token spent: %+v → %+v", before, after)
	}
	if _, ok := getSession(e.store, sess.ID); !ok {
		t.Error("the session ended on a passing failure")
	}
	// Once the token has expired, the failure is the caller's.
	if _, err := e.store.Update(context.Background(), sess.ID, func(s *sessions.Session) error { s.TokenExpiry = time.Now().Add(-time.Second); return nil }); err != nil {
		t.Fatal(err)
	}
	if rec := call(h, "GET", "/xrpc/com.example.echo", "", who(sess)); rec.Code != http.StatusBadGateway {
		t.Errorf("call with an expired token and a failing refresh: %d %s", rec.Code, rec.Body)
	}
}

// A refresh saves the servers' latest DPoP nonces with the session, so
// that a restarted ioproxy starts from them.
func TestRefreshSavesNonces(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	e.srv.ExpireAccessTokens()
	if rec := call(h, "GET", "/xrpc/com.example.echo", "", who(sess)); rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	got, _ := getSession(e.store, sess.ID)
	if got.AuthServerNonce == "" || got.AuthServerNonce != e.nonces.Get(got.Issuer) || got.PDSNonce != e.nonces.Get(got.PDS) {
		t.Errorf("saved nonces %q/%q, current %q/%q", got.AuthServerNonce, got.PDSNonce, e.nonces.Get(got.Issuer), e.nonces.Get(got.PDS))
	}
}

func TestRefreshFailureEndsSession(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	e.srv.RevokeAccount(e.alice.DID) // the user revoked the app at their server
	rec := call(h, "GET", "/xrpc/com.example.echo", "", who(sess))
	if rec.Code != 401 || xrpcError(t, rec) != "AuthRequired" {
		t.Fatalf("call with a dead grant: %d %s", rec.Code, rec.Body)
	}
	if _, ok := getSession(e.store, sess.ID); ok {
		t.Error("the session survived a failed refresh")
	}
	before := e.srv.Counts()
	rec = call(h, "GET", "/xrpc/com.example.echo", "", who(sess))
	if rec.Code != 401 || e.srv.Counts().XRPC != before.XRPC {
		t.Errorf("call after the session ended: %d, %d upstream requests", rec.Code, e.srv.Counts().XRPC-before.XRPC)
	}
}

func TestSessionChecks(t *testing.T) {
	e := newCallEnv(t)
	alice := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	before := e.srv.Counts().XRPC
	for _, tt := range []struct {
		name   string
		who    as
		status int
	}{
		{"Proxy-Session of another DID", as{did: e.bob.DID, key: alice.ProxyKey}, 401},
		{"unknown Proxy-Session", as{did: e.alice.DID, key: sessions.NewToken()}, 401},
		{"session id instead of proxy key", as{did: e.alice.DID, key: alice.ID}, 401},
		{"no User-Did", as{key: alice.ProxyKey}, 400},
		{"nothing", as{}, 400},
	} {
		rec := call(h, "GET", "/xrpc/com.example.echo", "", tt.who)
		if rec.Code != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, rec.Code, rec.Body, tt.status)
		}
		xrpcError(t, rec)
	}
	if n := e.srv.Counts().XRPC - before; n != 0 {
		t.Errorf("%d requests reached the PDS", n)
	}
}

func TestPublicCallWithoutSession(t *testing.T) {
	e := newCallEnv(t)
	h := e.port(t, pdsCall())
	rec := call(h, "GET", "/xrpc/com.atproto.repo.describeRepo?repo="+e.bob.DID, "", as{did: e.bob.DID}, "Authorization", "Bearer caller-token")
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if ec := echoOf(t, rec); ec.DID != "" || ec.Query != "repo="+e.bob.DID {
		t.Errorf("the PDS saw %+v", ec)
	}
	reqs := e.srv.XRPCRequests()
	if len(reqs) != 1 || reqs[0].Authorization != "" || reqs[0].Header.Get("DPoP") != "" {
		t.Errorf("a public call carried credentials: %+v", reqs)
	}
	// An account that does not exist.
	rec = call(h, "GET", "/xrpc/com.atproto.repo.describeRepo", "", as{did: atprototest.NewDID()})
	if rec.Code != 404 || xrpcError(t, rec) != "AccountNotFound" {
		t.Errorf("unknown DID: %d %s", rec.Code, rec.Body)
	}
	rec = call(h, "GET", "/xrpc/com.atproto.repo.describeRepo", "", as{did: "not-a-did"})
	if rec.Code != 400 {
		t.Errorf("bad DID: %d", rec.Code)
	}
}

func TestBodyLimit(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	c := pdsCall()
	c.MaxBodyBytes = 1000
	h := e.port(t, c)
	before := e.srv.Counts().XRPC
	if rec := call(h, "POST", "/xrpc/com.atproto.repo.createRecord", strings.Repeat("a", 1000), who(sess)); rec.Code != 200 {
		t.Errorf("body at the limit: %d", rec.Code)
	}
	rec := call(h, "POST", "/xrpc/com.atproto.repo.createRecord", strings.Repeat("a", 1001), who(sess))
	if rec.Code != http.StatusRequestEntityTooLarge || xrpcError(t, rec) != "PayloadTooLarge" {
		t.Errorf("body over the limit: %d %s", rec.Code, rec.Body)
	}
	// Without Content-Length (chunked), the limit still holds.
	req := httptest.NewRequest("POST", "http://127.0.0.1:7000/xrpc/com.atproto.repo.uploadBlob", io.MultiReader(strings.NewReader(strings.Repeat("b", 600)), strings.NewReader(strings.Repeat("b", 600))))
	req.ContentLength = -1
	req.Header.Set("User-Did", sess.DID)
	req.Header.Set("Proxy-Session", sess.ProxyKey)
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	if rr.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked body over the limit: %d", rr.Code)
	}
	if n := e.srv.Counts().XRPC - before; n != 1 {
		t.Errorf("%d requests reached the PDS, want 1", n)
	}
}

func TestOperationsOnly(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	c := pdsCall()
	c.OperationsOnly = true
	c.Operations = []config.Operation{
		{Name: "CreateStatus", Method: "POST", Path: "/xrpc/com.atproto.repo.createRecord"},
		{Name: "ListRecords", Method: "GET", Path: "/xrpc/com.atproto.repo.listRecords"},
	}
	h := e.port(t, c)
	e.srv.ExpireAccessTokens() // a refused call must not even refresh
	before := e.srv.Counts()
	for _, tt := range []struct{ method, path string }{
		{"GET", "/xrpc/com.atproto.repo.createRecord"},
		{"POST", "/xrpc/com.atproto.repo.deleteRecord"},
		{"GET", "/xrpc/app.bsky.actor.getProfile"},
		{"POST", "/xrpc/com.atproto.repo.createRecord/extra"},
	} {
		rec := call(h, tt.method, tt.path, "", who(sess))
		if rec.Code != http.StatusForbidden || xrpcError(t, rec) != "OperationNotAllowed" {
			t.Errorf("%s %s: %d %s", tt.method, tt.path, rec.Code, rec.Body)
		}
	}
	if after := e.srv.Counts(); after != before {
		t.Errorf("refused calls reached the server: %+v → %+v", before, after)
	}
	if _, ok := getSession(e.store, sess.ID); !ok {
		t.Fatal("session lost")
	}
	for _, tt := range []struct{ method, path string }{
		{"POST", "/xrpc/com.atproto.repo.createRecord"},
		{"GET", "/xrpc/com.atproto.repo.listRecords"},
	} {
		if rec := call(h, tt.method, tt.path, "", who(sess)); rec.Code != 200 {
			t.Errorf("%s %s: %d %s", tt.method, tt.path, rec.Code, rec.Body)
		}
	}
}

func TestPDSDownAndSlow(t *testing.T) {
	e := newCallEnv(t)
	sess, dead := e.signInOnDeadPDS(t)
	h := e.port(t, pdsCall())
	rec := call(h, "GET", "/xrpc/com.example.echo", "", who(sess))
	if rec.Code != http.StatusBadGateway || xrpcError(t, rec) != "UpstreamFailure" {
		t.Errorf("PDS down: %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(rec.Body.String(), sess.AccessToken) {
		t.Error("the error shows the access token")
	}
	// The public path too.
	carol := e.srv.AddAccount(atprototest.Account{Handle: "carol.test", PDS: dead})
	rec = call(h, "GET", "/xrpc/com.example.echo", "", as{did: carol.DID})
	if rec.Code != http.StatusBadGateway {
		t.Errorf("public call to a PDS that is down: %d %s", rec.Code, rec.Body)
	}

	// A PDS that does not answer in time.
	if _, err := e.store.Update(context.Background(), sess.ID, func(s *sessions.Session) error { s.PDS = e.srv.URL; return nil }); err != nil {
		t.Fatal(err)
	}
	e.srv.HandleXRPC("com.example.slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	c := pdsCall()
	c.Timeout = 200 * time.Millisecond
	h = e.port(t, c)
	start := time.Now()
	rec = call(h, "GET", "/xrpc/com.example.slow", "", who(sess))
	if rec.Code != http.StatusGatewayTimeout || xrpcError(t, rec) != "UpstreamTimeout" {
		t.Errorf("PDS slow: %d %s", rec.Code, rec.Body)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the timeout took %s", d)
	}
}

func TestUpstreamErrorsPassThrough(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	e.srv.HandleXRPC("com.atproto.repo.getRecord", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(400)
		_, _ = io.WriteString(w, `{"error":"RecordNotFound","message":"Could not locate record"}`)
	}))
	h := e.port(t, pdsCall())
	rec := call(h, "GET", "/xrpc/com.atproto.repo.getRecord", "", who(sess))
	if rec.Code != 400 || rec.Body.String() != `{"error":"RecordNotFound","message":"Could not locate record"}` || rec.Header().Get("X-Upstream") != "yes" {
		t.Errorf("upstream error came back as %d %q", rec.Code, rec.Body)
	}
	if rec.Header().Get("DPoP-Nonce") != "" {
		t.Error("the PDS's DPoP nonce leaked to the caller")
	}
}

func TestEndpointNamingAnIngressHost(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "statusphere")
		_, _ = fmt.Fprintf(w, "%s %s host=%s", r.Method, r.URL.RequestURI(), r.Host)
	}))
	t.Cleanup(backend.Close)
	cfg, diags := config.Parse([]byte(fmt.Sprintf(`
ingress { http = "127.0.0.1:8080" }
host "localhost" {
  backend = %q
}
call "statusphere" {
  port     = 9000
  endpoint = "localhost"
  insecure = true
}`, backend.URL)), "test.hcl", config.Options{LookupEnv: func(string) (string, bool) { return "", false }})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	router, err := ingress.New(ingress.Config{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Calls[0].Endpoint.Kind != config.EndpointHost {
		t.Fatalf("endpoint kind %v", cfg.Calls[0].Endpoint.Kind)
	}
	h, err := New(Config{Call: cfg.Calls[0], HostHandler: router.HostHandler})
	if err != nil {
		t.Fatal(err)
	}
	// The browser comes to 127.0.0.1:9000, which is not the host's name:
	// the port serves the host whatever the Host header says.
	rec := call(h, "GET", "/page?x=1", "", as{})
	if rec.Code != 200 || rec.Header().Get("X-Backend") != "statusphere" || !strings.HasPrefix(rec.Body.String(), "GET /page?x=1") {
		t.Errorf("%d %q", rec.Code, rec.Body)
	}
	// A host that is not configured is refused at start.
	c := cfg.Calls[0]
	c.Endpoint.Host = "other.example.com"
	if _, err := New(Config{Call: c, HostHandler: router.HostHandler}); err == nil {
		t.Error("an endpoint naming an unknown host was accepted")
	}
}

func TestEndpointURLInsecure(t *testing.T) {
	upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
	}))
	upstream.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)
	mk := func(insecure bool) http.Handler {
		h, err := New(Config{Call: config.Call{Label: "api", Endpoint: config.Endpoint{Kind: config.EndpointURL, URL: u, Raw: upstream.URL},
			Insecure: insecure, MaxBodyBytes: 1 << 20, Timeout: 5 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	rec := call(mk(true), "POST", "/v1/things?x=1", "hello", as{})
	if rec.Code != 200 || rec.Body.String() != "POST /v1/things?x=1 hello" {
		t.Errorf("insecure = true: %d %q", rec.Code, rec.Body)
	}
	rec = call(mk(false), "GET", "/v1/things", "", as{})
	if rec.Code != http.StatusBadGateway || xrpcError(t, rec) != "UpstreamFailure" {
		t.Errorf("self-signed upstream without insecure: %d %q", rec.Code, rec.Body)
	}
}

// TestSignOutDuringRefresh: the user signs out while a call is refreshing
// the session's tokens. The call fails as signed out, the session stays
// deleted, and the tokens the refresh obtained are revoked.
func TestSignOutDuringRefresh(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	e.srv.SetTokenDelay(300 * time.Millisecond)
	e.srv.ExpireAccessTokens()
	before := e.srv.Counts().Token
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- call(h, "GET", "/xrpc/com.example.echo", "", who(sess)) }()
	deadline := time.Now().Add(5 * time.Second)
	for e.srv.Counts().Token == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := e.store.Delete(context.Background(), sess.ID); err != nil { // what /@/signout does
		t.Fatal(err)
	}
	rec := <-done
	if rec.Code != 401 {
		t.Errorf("call refreshing across a sign-out: %d %s, want 401", rec.Code, rec.Body)
	}
	if _, ok := getSession(e.store, sess.ID); ok {
		t.Error("the refresh brought the signed-out session back")
	}
	if e.srv.ActiveGrants() != 0 {
		t.Error("the tokens obtained for a signed-out session are still live")
	}
}

// resolveHandle on an "@" port is answered by ioproxy, verified both
// ways, with no User-Did needed.
func TestResolveHandleAnsweredByProxy(t *testing.T) {
	e := newCallEnv(t)
	h := e.port(t, pdsCall())
	before := e.srv.Counts()
	rec := call(h, "GET", "/xrpc/com.atproto.identity.resolveHandle?handle=alice.test", "", as{})
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"did":"`+e.alice.DID+`"`) {
		t.Fatalf("resolveHandle alice.test: %d %s", rec.Code, rec.Body)
	}
	if after := e.srv.Counts(); after.XRPC != before.XRPC {
		t.Error("resolveHandle was forwarded to a PDS")
	}
	for _, q := range []string{"handle=nobody.test", "handle=" + e.alice.DID, ""} {
		rec := call(h, "GET", "/xrpc/com.atproto.identity.resolveHandle?"+q, "", as{})
		if rec.Code != http.StatusBadRequest {
			t.Errorf("%q: %d %s", q, rec.Code, rec.Body)
		}
	}
	if code := xrpcError(t, call(h, "GET", "/xrpc/com.atproto.identity.resolveHandle?handle=nobody.test", "", as{})); code != "HandleNotFound" {
		t.Errorf("unknown handle: error %q", code)
	}
}

// RefreshLater refreshes an expired session in the background (for
// browsers of apps that make no calls), and a session whose grant was
// revoked at the server ends.
func TestRefreshLater(t *testing.T) {
	e := newCallEnv(t)
	alice, bob := e.signIn(t, e.alice), e.signIn(t, e.bob)
	for _, s := range []sessions.Session{alice, bob} {
		if _, err := e.store.Update(context.Background(), s.ID, func(x *sessions.Session) error { x.TokenExpiry = time.Now().Add(-time.Second); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.RevokeAccount(e.bob.DID)
	fresh := alice
	fresh.TokenExpiry = time.Now().Add(time.Hour)
	e.tokens.RefreshLater(fresh) // not expired: nothing to do
	alice.TokenExpiry, bob.TokenExpiry = time.Now().Add(-time.Second), time.Now().Add(-time.Second)
	for i := 0; i < 5; i++ {
		e.tokens.RefreshLater(alice)
	}
	e.tokens.RefreshLater(bob)
	e.tokens.Wait()
	if got, ok := getSession(e.store, alice.ID); !ok || got.RefreshedAt.IsZero() || !got.TokenExpiry.After(time.Now()) {
		t.Errorf("alice's session was not refreshed: %+v", got)
	}
	if n := e.srv.Counts().Refresh; n != 2 {
		t.Errorf("%d refreshes, want one per session", n)
	}
	if _, ok := getSession(e.store, bob.ID); ok {
		t.Error("bob's revoked session is still live")
	}
}

// A client that trickles its body is cut off after the call's timeout.
func TestTrickledBodyIsCutOff(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	c := pdsCall()
	c.Timeout = 500 * time.Millisecond
	srv := httptest.NewServer(e.port(t, c))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /xrpc/com.example.echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Did: %s\r\nProxy-Session: %s\r\nContent-Length: 100\r\n\r\n{\"a\":", sess.DID, sess.ProxyKey)
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	if time.Since(start) > 5*time.Second {
		t.Fatalf("the stalled upload held the call for %v", time.Since(start))
	}
	if !strings.Contains(string(buf[:n]), "400") && n != 0 {
		t.Errorf("answer to a stalled upload: %q", buf[:n])
	}
	if e.srv.Counts().XRPC != 0 {
		t.Error("a partial body was sent to the PDS")
	}
}

// A background refresh that fails for a passing reason is not tried again
// on every request, only after a minute.
func TestRefreshLaterBacksOff(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	now := time.Now()
	clock := func() time.Time { return now }
	dead := safehttp.NewClient(safehttp.Options{AllowInsecure: true, Timeout: time.Second})
	var lookups atomic.Int32
	counting := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		lookups.Add(1)
		return dead.Transport.RoundTrip(r)
	}), Timeout: time.Second}
	unreachable, err := oauth.New(oauth.Config{
		ClientID: e.client.ClientID(), RedirectURI: "http://127.0.0.1:9000/@/callback", Scope: "atproto transition:generic",
		HTTP: counting, Identity: identity.New(identity.Config{PLCURL: "http://127.0.0.1:1", HandleResolver: "http://127.0.0.1:1", HTTPClient: counting, AllowInsecure: true}),
		Nonces: e.nonces, AllowInsecure: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	tok := sessions.NewLifecycle(sessions.LifecycleConfig{Store: e.store, Clients: map[string]*oauth.Client{e.client.ClientID(): unreachable}, Now: clock})
	sess.TokenExpiry = now.Add(-time.Second)
	tok.RefreshLater(sess)
	tok.Wait()
	first := lookups.Load()
	if first == 0 {
		t.Fatal("no refresh attempt")
	}
	tok.RefreshLater(sess)
	tok.Wait()
	if lookups.Load() != first {
		t.Error("a second background refresh ran within the minute after a failure")
	}
	now = now.Add(2 * time.Minute)
	tok.RefreshLater(sess)
	tok.Wait()
	if lookups.Load() == first {
		t.Error("no new attempt after the minute")
	}
	if _, ok := getSession(e.store, sess.ID); !ok {
		t.Error("a passing failure ended the session")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// getSession is a store lookup as the tests read it: found or not.
func getSession(store sessions.Store, id string) (sessions.Session, bool) {
	sess, err := store.Get(context.Background(), id)
	return sess, err == nil
}
