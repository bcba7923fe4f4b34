package sessions_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// fakeProvider answers refreshes as a provider's token endpoint would,
// and counts them.
type fakeProvider struct {
	refreshes atomic.Int64
	revoked   chan string
	// answer, when set, replaces the default answer (new tokens).
	answer func(refreshToken string) (sessions.ProviderTokens, error)
	// hold, when set, keeps each refresh until it is closed.
	hold chan struct{}
	// gate, when set, is called by each refresh before it answers.
	gate func()
}

func (f *fakeProvider) Refresh(ctx context.Context, refreshToken, subject string) (sessions.ProviderTokens, error) {
	n := f.refreshes.Add(1)
	if f.hold != nil {
		<-f.hold
	}
	if f.gate != nil {
		f.gate()
	}
	if f.answer != nil {
		return f.answer(refreshToken)
	}
	return sessions.ProviderTokens{AccessToken: fmt.Sprintf("access-%d", n), RefreshToken: fmt.Sprintf("refresh-%d", n), Expiry: time.Now().Add(time.Hour)}, nil
}

func (f *fakeProvider) Revoke(ctx context.Context, token string) error {
	if f.revoked != nil {
		f.revoked <- token
	}
	return nil
}

func providerLifecycle(t *testing.T, p *fakeProvider) (*sessions.Lifecycle, sessions.Store) {
	t.Helper()
	store := openStore(t)
	return providerLifecycleOn(t, p, store), store
}

func openStore(t *testing.T) sessions.Store {
	t.Helper()
	store, err := boltstore.Open(boltstore.Config{Path: filepath.Join(t.TempDir(), "data", "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

// providerLifecycleOn is a Lifecycle over store, as one of the replicas
// that share it.
func providerLifecycleOn(t *testing.T, p *fakeProvider, store sessions.Store) *sessions.Lifecycle {
	t.Helper()
	lc := sessions.NewLifecycle(sessions.LifecycleConfig{Store: store, Providers: func(s sessions.Session) (sessions.ProviderClient, bool) {
		// As the server's lookup: the issuer and client the session was
		// made with must be the provider's.
		return p, s.Host == "tools.example.com" && s.Provider == "google" && s.Issuer == "https://accounts.example.com" && s.ClientID == "client"
	}})
	t.Cleanup(lc.Wait)
	return lc
}

// lockCounter is a Store that counts the refresh locks asked of it,
// before it waits for one.
type lockCounter struct {
	sessions.Store
	locks atomic.Int64
}

func (s *lockCounter) Lock(ctx context.Context, name string, lease time.Duration) (func(), error) {
	s.locks.Add(1)
	return s.Store.Lock(ctx, name, lease)
}

// joinCounter is a caller's context that counts its callers once they
// have joined a refresh: Refresh waits on the context only then.
type joinCounter struct {
	context.Context
	joined *atomic.Int64
}

func (c joinCounter) Done() <-chan struct{} {
	c.joined.Add(1)
	return c.Context.Done()
}

// waitFor waits until cond holds, for at most a few seconds: a code
// under test that never meets it fails on what it did meanwhile.
func waitFor(cond func() bool) {
	deadline := time.Now().Add(5 * time.Second)
	for !cond() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

func expiredGrant() sessions.ProviderGrant {
	return sessions.ProviderGrant{
		ProviderTokens: sessions.ProviderTokens{AccessToken: "access-0", RefreshToken: "refresh-0", Expiry: time.Now().Add(-time.Second)},
		Host:           "tools.example.com", Provider: "google", Issuer: "https://accounts.example.com", ClientID: "client",
		Subject: "1234", Email: "alice@example.com",
	}
}

// Calls at once on an expired token share one refresh, whose tokens are
// stored; the next call uses them without a refresh. The provider
// answers only once every call has joined the refresh under way, so a
// call that started its own would show: a second lock asked of the store
// (and a second token request, without the lock).
func TestFreshProviderRefreshesOnceAtATime(t *testing.T) {
	const calls = 8
	var joined atomic.Int64
	p := &fakeProvider{gate: func() { waitFor(func() bool { return joined.Load() >= calls }) }}
	store := &lockCounter{Store: openStore(t)}
	lc := providerLifecycleOn(t, p, store)
	sess, err := lc.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	ctx := joinCounter{Context: context.Background(), joined: &joined}
	var wg sync.WaitGroup
	got := make([]string, calls)
	for i := range got {
		wg.Go(func() {
			fresh, err := lc.Fresh(ctx, sess)
			if err != nil {
				t.Errorf("Fresh: %v", err)
				return
			}
			got[i] = fresh.AccessToken
		})
	}
	wg.Wait()
	if n := p.refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes for %d calls at once, want 1", n, calls)
	}
	if n := store.locks.Load(); n != 1 {
		t.Fatalf("%d refresh locks taken for %d calls at once, want 1 (the calls did not share the refresh)", n, calls)
	}
	for _, tok := range got {
		if tok != "access-1" {
			t.Fatalf("a call got %q, want the refreshed access-1", tok)
		}
	}
	stored, err := store.Get(t.Context(), sess.ID)
	if err != nil || stored.AccessToken != "access-1" || stored.RefreshToken != "refresh-1" || stored.Email != "alice@example.com" {
		t.Fatalf("stored after the refresh: %+v, %v", stored, err)
	}
	if _, err := lc.Fresh(t.Context(), stored); err != nil || p.refreshes.Load() != 1 {
		t.Fatalf("a fresh token was refreshed again (%d refreshes, %v)", p.refreshes.Load(), err)
	}
}

// Two replicas on one store refresh a session at once: the provider
// answers the first only once the second waits for the session's lock,
// and the second then uses the first's tokens instead of spending the
// refresh token again.
func TestFreshProviderOnceAcrossReplicas(t *testing.T) {
	store := &lockCounter{Store: openStore(t)}
	p := &fakeProvider{gate: func() { waitFor(func() bool { return store.locks.Load() >= 2 }) }}
	a, b := providerLifecycleOn(t, p, store), providerLifecycleOn(t, p, store)
	sess, err := a.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, lc := range []*sessions.Lifecycle{a, b} {
		wg.Go(func() {
			fresh, err := lc.Fresh(t.Context(), sess)
			if err != nil || fresh.AccessToken != "access-1" {
				t.Errorf("Fresh: %q, %v; want access-1", fresh.AccessToken, err)
			}
		})
	}
	wg.Wait()
	if n := p.refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes by two replicas at once, want 1", n)
	}
}

// A provider session's refresh waits for the session's refresh lock no
// longer than the bound (refreshTimeout, shortened here): a replica that
// holds it and hangs must not hold every call with it.
func TestFreshProviderLockWaitBounded(t *testing.T) {
	p := &fakeProvider{}
	lc, store := providerLifecycle(t, p)
	sessions.SetLockWait(lc, 50*time.Millisecond)
	sess, err := lc.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	release, err := store.Lock(t.Context(), sessions.RefreshLock(sess.ID), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	done := make(chan error, 1)
	go func() {
		_, err := lc.Fresh(context.Background(), sess)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, sessions.ErrEnded) || !strings.Contains(err.Error(), "wait for another refresh") {
			t.Fatalf("Fresh with the lock held elsewhere: %v; want a failed wait", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Fresh still waits for a lock held elsewhere")
	}
	if n := p.refreshes.Load(); n != 0 {
		t.Fatalf("%d refreshes without the lock", n)
	}
}

// A provider session's token is refreshed ahead of expiry by the margin
// and a jitter of up to half of it, drawn for each call, as an AT
// Protocol session's is.
func TestFreshProviderMarginJitter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		jitter    func(bound time.Duration) time.Duration
		refreshes int64
	}{
		{"no jitter", func(time.Duration) time.Duration { return 0 }, 0},
		{"most jitter", func(bound time.Duration) time.Duration { return bound - 1 }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProvider{}
			lc, _ := providerLifecycle(t, p)
			var drawn []time.Duration
			sessions.SetJitter(lc, func(bound time.Duration) time.Duration {
				drawn = append(drawn, bound)
				return tc.jitter(bound)
			})
			g := expiredGrant()
			// Past the default margin (a minute), within its jitter.
			g.Expiry = time.Now().Add(75 * time.Second)
			sess, err := lc.CreateProvider(t.Context(), g)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lc.Fresh(t.Context(), sess); err != nil {
				t.Fatal(err)
			}
			if n := p.refreshes.Load(); n != tc.refreshes {
				t.Fatalf("%d refreshes, want %d", n, tc.refreshes)
			}
			if len(drawn) != 1 || drawn[0] != 30*time.Second+1 {
				t.Fatalf("jitter drawn with bounds %v, want once below 30s+1ns", drawn)
			}
		})
	}
}

// The throttle of refreshes judges the session as the store holds it,
// under the lock: one that another replica refreshed under a minute ago
// is not refreshed again, even on a caller's older copy, and even when
// the other replica's token has expired already.
func TestFreshProviderThrottledUnderLock(t *testing.T) {
	p := &fakeProvider{}
	lc, store := providerLifecycle(t, p)
	sess, err := lc.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(t.Context(), sess.ID, func(s *sessions.Session) error {
		s.AccessToken, s.RefreshToken = "by-another-replica", "refresh-by-another-replica"
		s.TokenExpiry, s.RefreshedAt = time.Now().Add(-time.Second), time.Now().Add(-10*time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := lc.Fresh(t.Context(), sess)
	if err != nil || got.AccessToken != "by-another-replica" {
		t.Fatalf("Fresh: %q, %v; want the other replica's token", got.AccessToken, err)
	}
	if n := p.refreshes.Load(); n != 0 {
		t.Fatalf("%d refreshes of a session refreshed 10 s ago, want 0", n)
	}
}

// A refresh token the provider refuses ends the session; a passing
// failure keeps it; a session without a refresh token says to sign in
// again; a removed provider ends its sessions.
func TestFreshProviderFailures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    func(string) (sessions.ProviderTokens, error)
		noRefresh bool
		otherHost bool
		ended     bool
		// gone: the session is no longer stored (an ended one, or one
		// without a refresh token, which lasts as long as its token).
		gone bool
	}{
		{name: "invalid_grant", answer: func(string) (sessions.ProviderTokens, error) {
			return sessions.ProviderTokens{}, fmt.Errorf("google: %w", sessions.ErrGrantDead)
		}, ended: true, gone: true},
		// As the server adapts provider.ErrIDToken on a refresh (an ID
		// token that fails its checks, or names another subject): an
		// answer that cannot be trusted ends the session.
		{name: "refused id token", answer: func(string) (sessions.ProviderTokens, error) {
			return sessions.ProviderTokens{}, fmt.Errorf("%w: google: refresh: ID token refused", sessions.ErrGrantDead)
		}, ended: true, gone: true},
		{name: "provider down", answer: func(string) (sessions.ProviderTokens, error) {
			return sessions.ProviderTokens{}, errors.New("503 from the token endpoint")
		}},
		{name: "no refresh token", noRefresh: true, gone: true},
		{name: "provider no longer configured", otherHost: true, ended: true, gone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &fakeProvider{answer: tc.answer}
			lc, store := providerLifecycle(t, p)
			g := expiredGrant()
			if tc.noRefresh {
				g.RefreshToken = ""
			}
			if tc.otherHost {
				g.Host = "gone.example.com"
			}
			sess, err := lc.CreateProvider(t.Context(), g)
			if err != nil {
				t.Fatal(err)
			}
			_, err = lc.Fresh(t.Context(), sess)
			if err == nil {
				t.Fatal("Fresh succeeded")
			}
			if got := errors.Is(err, sessions.ErrEnded); got != tc.ended {
				t.Fatalf("err = %v, ended %v, want %v", err, got, tc.ended)
			}
			_, gerr := store.Get(t.Context(), sess.ID)
			if gone := errors.Is(gerr, sessions.ErrNotFound); gone != tc.gone {
				t.Fatalf("session gone = %v, want %v", gone, tc.gone)
			}
		})
	}
}

// Signing out revokes the provider's refresh token.
func TestEndRevokesProviderToken(t *testing.T) {
	p := &fakeProvider{revoked: make(chan string, 1)}
	lc, _ := providerLifecycle(t, p)
	sess, err := lc.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.End(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	select {
	case tok := <-p.revoked:
		if tok != "refresh-0" {
			t.Fatalf("revoked %q, want the refresh token", tok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing was revoked")
	}
}

// A Proxy-Session value may list a browser's sessions of several
// providers: each call finds the one it needs; junk, unknown keys and
// keys past MaxProxyKeys find nothing.
func TestByProxyKeys(t *testing.T) {
	lc, store := providerLifecycle(t, &fakeProvider{})
	google, err := lc.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	at := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "tools.example.com", DID: "did:plc:alice", CreatedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}
	if _, err := store.Create(t.Context(), at); err != nil {
		t.Fatal(err)
	}
	both := at.ProxyKey + ", " + google.ProxyKey
	for _, tc := range []struct {
		value, provider, want string
	}{
		{both, "", at.ID},
		{both, "google", google.ID},
		{google.ProxyKey, "", ""},
		{"junk, " + sessions.NewToken() + "," + google.ProxyKey, "google", google.ID},
		{strings.Repeat(sessions.NewToken()+",", sessions.MaxProxyKeys) + google.ProxyKey, "google", ""},
		{"", "google", ""},
	} {
		sess, err := lc.ByProxyKeys(t.Context(), tc.value, tc.provider)
		if tc.want == "" {
			if !errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("ByProxyKeys(%.40q, %q) = %v, %v; want ErrNotFound", tc.value, tc.provider, sess.ID, err)
			}
			continue
		}
		if err != nil || sess.ID != tc.want {
			t.Errorf("ByProxyKeys(%.40q, %q) = %v, %v; want %s", tc.value, tc.provider, sess.ID, err, tc.want)
		}
	}
}

// A provider whose tokens live a few seconds does not make each call a
// refresh: after one, the tokens in hand are used for a minute; and a
// passing failure ahead of expiry keeps the token in hand.
func TestFreshProviderNoRefreshStorm(t *testing.T) {
	p := &fakeProvider{answer: func(string) (sessions.ProviderTokens, error) {
		return sessions.ProviderTokens{AccessToken: "short", RefreshToken: "rt", Expiry: time.Now().Add(time.Second)}, nil
	}}
	lc, _ := providerLifecycle(t, p)
	sess, err := lc.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if sess, err = lc.Fresh(t.Context(), sess); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.refreshes.Load(); n != 1 {
		t.Fatalf("%d refreshes for 20 calls on a token that lives a second, want 1", n)
	}

	down := &fakeProvider{answer: func(string) (sessions.ProviderTokens, error) {
		return sessions.ProviderTokens{}, errors.New("503")
	}}
	lc, _ = providerLifecycle(t, down)
	g := expiredGrant()
	g.Expiry = time.Now().Add(30 * time.Second) // inside the refresh margin, still valid
	sess, err = lc.CreateProvider(t.Context(), g)
	if err != nil {
		t.Fatal(err)
	}
	got, err := lc.Fresh(t.Context(), sess)
	if err != nil || got.AccessToken != "access-0" {
		t.Fatalf("a failed early refresh: %q, %v; want the token in hand", got.AccessToken, err)
	}
}

// Signing out revokes the refresh token the store holds, not the older
// one of the caller's copy: another replica may have refreshed the
// session meanwhile, and the spent token's revocation would leave the
// new one live.
func TestEndRevokesTheLatestToken(t *testing.T) {
	p := &fakeProvider{revoked: make(chan string, 1)}
	lc, store := providerLifecycle(t, p)
	sess, err := lc.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Update(t.Context(), sess.ID, func(s *sessions.Session) error { s.RefreshToken = "refresh-by-another-replica"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := lc.End(t.Context(), sess); err != nil {
		t.Fatal(err)
	}
	select {
	case tok := <-p.revoked:
		if tok != "refresh-by-another-replica" {
			t.Fatalf("revoked %q, want the token the store held", tok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing was revoked")
	}
}

// A grant that is not made a session (an account the host refuses) has
// its tokens revoked, through the client of the issuer it came from.
func TestDiscardProviderRevokes(t *testing.T) {
	p := &fakeProvider{revoked: make(chan string, 1)}
	lc, _ := providerLifecycle(t, p)
	lc.DiscardProvider(expiredGrant())
	select {
	case tok := <-p.revoked:
		if tok != "refresh-0" {
			t.Fatalf("revoked %q, want the grant's refresh token", tok)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing was revoked")
	}
}

// A session forgotten (replaced by a new sign-in of the same account)
// while a background refresh of it runs: the refresh finishes first, and
// nothing is revoked, since at Google that would end the new grant too.
func TestForgetWaitsForARefresh(t *testing.T) {
	hold := make(chan struct{})
	p := &fakeProvider{revoked: make(chan string, 4), hold: hold}
	lc, store := providerLifecycle(t, p)
	sess, err := lc.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	lc.RefreshLater(sess)
	deadline := time.Now().Add(5 * time.Second)
	for p.refreshes.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	lc.Forget(sess)
	time.Sleep(20 * time.Millisecond)
	close(hold)
	lc.Wait()
	select {
	case tok := <-p.revoked:
		t.Fatalf("revoked %q", tok)
	default:
	}
	if _, err := store.Get(t.Context(), sess.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("the forgotten session: %v", err)
	}
}
