package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/sessions"
)

// sharedTests need two stores open at once over the same data: replicas
// behind one load balancer, where a sign-in lands on one and the next
// request on the other.
var sharedTests = []test{
	{name: "Shared/CreateSeenByOther", shared: true, run: testSharedCreate},
	{name: "Shared/UpdateSeenByOther", shared: true, run: testSharedUpdate},
	{name: "Shared/DeleteSeenByOther", shared: true, run: testSharedDelete},
	{name: "Shared/EvictionSeenByOther", shared: true, run: testSharedEviction},
	{name: "Shared/UpdateRacingDeleteDoesNotResurrect", shared: true, run: testSharedUpdateRacingDelete},
	{name: "Shared/UpdatesAreNotLost", shared: true, run: func(t *testing.T, e *env) {
		a, b := e.openPair(sessions.Options{})
		updatesAreNotLost(t, e, a, b)
	}},
	{name: "Shared/LatestSeesOtherWrites", shared: true, run: testSharedLatest},
	{name: "Shared/SessionCapsAtOnce", shared: true, run: testSharedCapsAtOnce},
	{name: "Shared/PendingTakenOnce", shared: true, run: testSharedPendingTakenOnce},
	{name: "Shared/PendingCap", shared: true, run: testSharedPendingCap},
	{name: "Shared/LockExcludes", shared: true, run: testSharedLockExcludes},
	{name: "Shared/SecretGeneratedOnce", shared: true, run: testSharedSecret},
	{name: "Shared/SecretReplacedSeenByOther", shared: true, run: testSharedSecretReplaced},
}

// openPair opens two stores over the subtest's data.
func (e *env) openPair(opts sessions.Options) (a, b *store) {
	return e.open(opts), e.open(opts)
}

// eventuallySame waits until s finds want by both keys, as want is.
func eventuallySame(t *testing.T, s sessions.Store, want sessions.Session, what string) {
	t.Helper()
	eventually(t, what, func() error {
		got, err := s.Get(t.Context(), want.ID)
		if err != nil {
			return fmt.Errorf("by id: %w", err)
		}
		if f := diff(got, want); f != "" {
			return fmt.Errorf("by id: the session's %s differs", f)
		}
		got, err = s.ByProxyKey(t.Context(), want.ProxyKey)
		if err != nil {
			return fmt.Errorf("by proxy key: %w", err)
		}
		if f := diff(got, want); f != "" {
			return fmt.Errorf("by proxy key: the session's %s differs", f)
		}
		return nil
	})
}

// testSharedCreate: a sign-in through one replica is signed in on the
// other, which had looked for it before (a cache must not remember that
// it was missing).
func testSharedCreate(t *testing.T, e *env) {
	ctx := t.Context()
	a, b := e.openPair(sessions.Options{})
	sess := e.newSession()
	expectGone(t, b, sess, "before it was made")
	create(t, a, sess)
	eventuallySame(t, b, sess, "a session made through the other store")
	expectCount(t, b, 1)
	expectList(t, b, []sessions.Session{sess})
	if _, err := b.Update(ctx, sess.ID, func(x *sessions.Session) error { x.PDSNonce = "n2"; return nil }); err != nil {
		t.Errorf("Update through the other store: %v", err)
	}
}

// testSharedUpdate: a refresh through one replica is what the other uses
// next, although it had read the session before.
func testSharedUpdate(t *testing.T, e *env) {
	ctx := t.Context()
	a, b := e.openPair(sessions.Options{})
	sess := e.newSession()
	create(t, a, sess)
	eventuallySame(t, b, sess, "a session made through the other store")
	want, err := a.Update(ctx, sess.ID, func(x *sessions.Session) error {
		x.AccessToken, x.RefreshToken, x.RefreshedAt = "at2", "rt2", e.clock.Now()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eventuallySame(t, b, want, "an update through the other store")
	// And back: b's update starts from a's.
	got, err := b.Update(ctx, sess.ID, func(x *sessions.Session) error {
		if x.RefreshToken != "rt2" {
			return fmt.Errorf("update from refresh token %q, want rt2", x.RefreshToken)
		}
		x.PDSNonce = "n2"
		return nil
	})
	if err != nil {
		t.Fatalf("Update through the other store: %v", err)
	}
	eventuallySame(t, a, got, "an update through the other store, back")
}

// testSharedDelete: a sign-out through one replica signs out on the other.
func testSharedDelete(t *testing.T, e *env) {
	ctx := t.Context()
	a, b := e.openPair(sessions.Options{})
	sess := e.newSession()
	create(t, a, sess)
	eventuallySame(t, b, sess, "a session made through the other store")
	if err := b.Delete(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	eventuallyGone(t, a, sess, "a session deleted through the other store")
	expectGone(t, b, sess, "a session deleted")
	if _, err := a.Update(ctx, sess.ID, func(*sessions.Session) error { return nil }); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("Update of a session deleted through the other store = %v, want ErrNotFound", err)
	}
	expectGone(t, b, sess, "after an Update through the other store")
	expectCount(t, a, 0)
}

// testSharedEviction: an account's cap counts its sessions through every
// replica, and the one evicted is gone from every replica.
func testSharedEviction(t *testing.T, e *env) {
	ctx := t.Context()
	a, b := e.openPair(sessions.Options{MaxPerAccount: 2})
	var made []sessions.Session
	for range 2 {
		e.clock.Add(time.Second)
		sess := e.newSession()
		create(t, a, sess)
		made = append(made, sess)
	}
	eventuallySame(t, b, made[0], "a session made through the other store")
	e.clock.Add(time.Second)
	third := e.newSession()
	ev, err := b.Create(ctx, third)
	if err != nil || len(ev) != 1 || ev[0].ID != made[0].ID {
		t.Fatalf("the third session, through the other store: evicted %d, %v; want the oldest", len(ev), err)
	}
	eventuallyGone(t, a, made[0], "a session evicted through the other store")
	expectGone(t, b, made[0], "the evicted session")
	eventuallySame(t, a, third, "the session that evicted it")
	expectCount(t, a, 2)
}

// testSharedUpdateRacingDelete: a refresh on one replica while the user
// signs out on the other never brings the session back.
func testSharedUpdateRacingDelete(t *testing.T, e *env) {
	ctx := t.Context()
	a, b := e.openPair(sessions.Options{})
	sess := e.newSession()
	create(t, a, sess)
	eventuallySame(t, b, sess, "a session made through the other store")
	_, err := a.Update(ctx, sess.ID, func(x *sessions.Session) error {
		if err := b.Delete(ctx, sess.ID); err != nil {
			t.Error(err)
		}
		x.AccessToken = "refreshed"
		return nil
	})
	if !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("Update of a session deleted meanwhile through the other store: err = %v, want ErrNotFound", err)
	}
	expectGone(t, b, sess, "deleted during an Update through the other store")
	eventuallyGone(t, a, sess, "deleted through the other store during an Update")
	updatesRacingDelete(t, e, a, b)
	// updatesRacingDelete reopened one store; the first session stays
	// gone there too.
	expectGone(t, e.open(a.opts), sess, "deleted during an Update, after a reopen")
}

// testSharedCapsAtOnce: the caps hold for sign-ins that finish at once
// on different replicas.
func testSharedCapsAtOnce(t *testing.T, e *env) {
	a, b := e.openPair(sessions.Options{MaxSessions: 5, MaxPerAccount: 2})
	capsAtOnce(t, e, a, b)
}

// testSharedPendingTakenOnce: a state is taken once, whichever replica
// each callback reaches.
func testSharedPendingTakenOnce(t *testing.T, e *env) {
	a, b := e.openPair(sessions.Options{})
	takeOnceAtOnce(t, e, a, b)
	p := e.newPending(time.Minute)
	if err := b.PutPending(t.Context(), p); err != nil {
		t.Fatal(err)
	}
	if _, err := a.TakePending(t.Context(), p.State); err != nil {
		t.Errorf("a sign-in started through the other store: %v", err)
	}
	if _, err := b.TakePending(t.Context(), p.State); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("taken through the other store, then here: %v, want ErrNotFound", err)
	}
}

// testSharedPendingCap: the limits on sign-ins in progress hold for the
// replicas together, or every replica would add its own share.
func testSharedPendingCap(t *testing.T, e *env) {
	ctx := t.Context()
	a, b := e.openPair(sessions.Options{MaxPending: 3, MaxPendingPerClient: 2, MaxPendingPerIssuer: 100})
	put := func(s sessions.Store, client string) (sessions.Pending, error) {
		p := e.newPending(time.Minute)
		p.Client = client
		return p, s.PutPending(ctx, p)
	}
	first, err := put(a, "192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := put(b, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := put(a, "192.0.2.1"); !errors.Is(err, sessions.ErrFull) {
		t.Errorf("the client's third through either store: %v, want ErrFull", err)
	}
	if _, err := put(a, "192.0.2.2"); err != nil {
		t.Fatal(err)
	}
	if _, err := put(b, "192.0.2.3"); !errors.Is(err, sessions.ErrFull) {
		t.Errorf("a fourth sign-in through the other store: %v, want ErrFull", err)
	}
	if _, err := b.TakePending(ctx, first.State); err != nil {
		t.Fatal(err)
	}
	if _, err := put(a, "192.0.2.1"); err != nil {
		t.Errorf("after a sign-in finished through the other store: %v", err)
	}
	e.clock.Add(2 * time.Minute)
	if n, err := b.DeleteExpired(ctx); err != nil || n != 3 {
		t.Fatalf("DeleteExpired = %d, %v; want 3", n, err)
	}
	for _, client := range []string{"192.0.2.1", "192.0.2.1", "192.0.2.2"} {
		if _, err := put(a, client); err != nil {
			t.Errorf("after the sweep through the other store: %v", err)
		}
	}
}

// testSharedLockExcludes: a lock held through one replica excludes the
// other.
func testSharedLockExcludes(t *testing.T, e *env) {
	a, b := e.openPair(sessions.Options{})
	excludes(t, a, b)
	release := lockWithin(t, b, "refresh", longLease)
	expectHeld(t, a, "refresh", "a lock held through the other store")
	release()
	lockWithin(t, a, "refresh", longLease)()
}

// testSharedSecret: every replica uses the one OAuth client key, made
// once.
func testSharedSecret(t *testing.T, e *env) {
	a, b := e.openPair(sessions.Options{})
	secretOnceAtOnce(t, a, b)
	k, err := a.Secret(t.Context(), "later", func() ([]byte, error) { return []byte("key-a"), nil })
	if err != nil {
		t.Fatal(err)
	}
	called := false
	k2, err := b.Secret(t.Context(), "later", func() ([]byte, error) { called = true; return []byte("key-b"), nil })
	if err != nil || string(k2) != string(k) || called {
		t.Errorf("a secret made through the other store: %q, %v (generate called %v); want %q", k2, err, called, k)
	}
}

// testSharedLatest: what one replica wrote, the other's Latest returns at
// once, although its lookups had cached the older session: the holder of
// a refresh lock must spend the refresh token the previous holder saved.
func testSharedLatest(t *testing.T, e *env) {
	ctx := t.Context()
	a, b := e.openPair(sessions.Options{})
	sess := e.newSession()
	create(t, a, sess)
	eventuallySame(t, b, sess, "a session made through the other store")
	for i := range 3 {
		want, err := a.Update(ctx, sess.ID, func(x *sessions.Session) error {
			x.RefreshToken = fmt.Sprintf("rt-%d", i)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.Latest(ctx, sess.ID)
		if err != nil {
			t.Fatalf("Latest after an update through the other store: %v", err)
		}
		if f := diff(got, want); f != "" {
			t.Fatalf("Latest right after an update through the other store: the session's %s differs", f)
		}
	}
	if err := a.Delete(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Latest(ctx, sess.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("Latest right after a delete through the other store = %v, want ErrNotFound", err)
	}
}
