package calling

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/redisstore"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// replica is one of several ioproxies that share a Redis session store:
// each has its own connection and cache, OAuth client, nonces, Tokens
// and calling port, as separate processes would.
type replica struct {
	store *redisstore.Store
	port  http.Handler
}

// newReplicas starts n replicas over one Redis, beside e's fake servers.
func newReplicas(t *testing.T, e *callEnv, n int) ([]replica, *redistest.Server) {
	t.Helper()
	srv := redistest.Start(t, redistest.Options{AOF: true}) // TestCallsWhileRedisIsDown restarts it
	keys, err := sealed.ParseKeys([]string{sealed.Generate()})
	if err != nil {
		t.Fatal(err)
	}
	var out []replica
	for range n {
		store, err := redisstore.Open(t.Context(), redisstore.Config{URL: srv.URL(), Prefix: "replicas:", Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = store.Close() })
		nonces := &dpop.Nonces{}
		client, err := oauth.New(oauth.Config{
			ClientID: e.client.ClientID(), RedirectURI: "http://127.0.0.1:9000/@/callback", Scope: "atproto transition:generic",
			HTTP: e.pdsClient, Identity: e.resolver, Nonces: nonces, AllowInsecure: true,
		})
		if err != nil {
			t.Fatal(err)
		}
		tokens := sessions.NewLifecycle(sessions.LifecycleConfig{Store: store, Clients: map[string]*oauth.Client{client.ClientID(): client}, Nonces: nonces})
		c := pdsCall()
		c.Timeout = time.Minute // a hundred calls under -race on a busy machine
		port, err := New(Config{Call: c, Sessions: tokens, Identity: e.resolver, PDSClient: e.pdsClient, Nonces: nonces})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, replica{store: store, port: port})
	}
	return out, srv
}

// signInOn signs alice in and stores her session through r, as the
// replica that served the callback would.
func signInOn(t *testing.T, e *callEnv, r replica) sessions.Session {
	t.Helper()
	sess := e.signIn(t, e.alice)
	if _, err := r.store.Create(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	return sess
}

// Calls spread over three replicas on an expired token cost one refresh
// in all: the refresh lock is in the store, and the replicas that wait
// for it use the tokens the first one saved.
func TestReplicasRefreshOnce(t *testing.T) {
	e := newCallEnv(t)
	rs, _ := newReplicas(t, e, 3)
	sess := signInOn(t, e, rs[0])
	for _, r := range rs { // every replica has the session cached
		if rec := call(r.port, "GET", "/xrpc/com.example.echo", "", who(sess)); rec.Code != 200 {
			t.Fatalf("call before expiry: %d %s", rec.Code, rec.Body)
		}
	}
	e.srv.SetTokenDelay(100 * time.Millisecond)
	e.srv.ExpireAccessTokens()
	before := e.srv.Counts()
	const n = 90
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			rec := call(rs[i%len(rs)].port, "POST", "/xrpc/com.atproto.repo.createRecord", fmt.Sprintf(`{"n":%d}`, i), who(sess))
			codes[i] = rec.Code
		})
	}
	close(start)
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("call %d through replica %d: %d", i, i%len(rs), c)
		}
	}
	if r := e.srv.Counts().Refresh - before.Refresh; r != 1 {
		t.Errorf("%d refreshes for %d calls over %d replicas, want exactly 1", r, n, len(rs))
	}
	if e.srv.ActiveGrants() != 1 {
		t.Error("the server ended the session: a spent refresh token was used again")
	}
}

// A replica that dies holding the refresh lock holds up the others for
// its lease, no longer, and loses nothing: the next refresh starts from
// the stored tokens.
func TestReplicaDiesHoldingRefreshLock(t *testing.T) {
	e := newCallEnv(t)
	rs, _ := newReplicas(t, e, 2)
	sess := signInOn(t, e, rs[0])
	// The dead replica's lock: taken, never released.
	if _, err := rs[0].store.Lock(t.Context(), sessions.RefreshLock(sess.ID), 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.srv.ExpireAccessTokens()
	before := e.srv.Counts()
	if rec := call(rs[1].port, "POST", "/xrpc/com.atproto.repo.createRecord", `{"n":1}`, who(sess)); rec.Code != 200 {
		t.Fatalf("call after the lock's holder died: %d %s", rec.Code, rec.Body)
	}
	if r := e.srv.Counts().Refresh - before.Refresh; r != 1 {
		t.Errorf("%d refreshes, want 1", r)
	}
}

// A sign-out on one replica is refused by the others within a second,
// although they had the session cached.
func TestSignOutReachesEveryReplica(t *testing.T) {
	e := newCallEnv(t)
	rs, _ := newReplicas(t, e, 3)
	sess := signInOn(t, e, rs[0])
	for _, r := range rs {
		if rec := call(r.port, "GET", "/xrpc/com.example.echo", "", who(sess)); rec.Code != 200 {
			t.Fatalf("call before sign-out: %d %s", rec.Code, rec.Body)
		}
	}
	if err := rs[1].store.Delete(context.Background(), sess.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for i, r := range rs {
		for {
			rec := call(r.port, "GET", "/xrpc/com.example.echo", "", who(sess))
			if rec.Code == http.StatusUnauthorized {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("replica %d still calls for a signed-out session a second later: %d", i, rec.Code)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// With Redis out of reach, a cached session whose token is still good
// keeps calling, and one whose token is due gets a 503 that names the
// session store, not the authorization server.
func TestCallsWhileRedisIsDown(t *testing.T) {
	e := newCallEnv(t)
	rs, srv := newReplicas(t, e, 1)
	sess := signInOn(t, e, rs[0])
	if rec := call(rs[0].port, "GET", "/xrpc/com.example.echo", "", who(sess)); rec.Code != 200 {
		t.Fatalf("call before Redis went away: %d %s", rec.Code, rec.Body)
	}
	srv.Stop(t)
	if rec := call(rs[0].port, "GET", "/xrpc/com.example.echo", "", who(sess)); rec.Code != 200 {
		t.Errorf("a cached session while Redis is down: %d %s", rec.Code, rec.Body)
	}
	// The PDS now refuses the token: the refresh needs the store's lock.
	e.srv.ExpireAccessTokens()
	rec := call(rs[0].port, "GET", "/xrpc/com.example.echo", "", who(sess))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "SessionStoreUnavailable") {
		t.Errorf("a due refresh while Redis is down: %d %s, want 503 SessionStoreUnavailable", rec.Code, rec.Body)
	}
	srv.Restart(t)
	waitCall(t, rs[0].port, sess, http.StatusOK, "once Redis is back")
}

// waitCall calls through port until it answers want, for up to 10 s.
func waitCall(t *testing.T, port http.Handler, sess sessions.Session, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rec := call(port, "GET", "/xrpc/com.example.echo", "", who(sess))
		if rec.Code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %s, want %d", what, rec.Code, rec.Body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
