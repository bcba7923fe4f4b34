package storetest

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/sessions"
)

var lockTests = []test{
	{name: "LockExcludes", run: testLockExcludes},
	{name: "LockWaitEndsWithContext", run: testLockWaitEndsWithContext},
	{name: "LockLeaseLapses", run: testLockLeaseLapses},
	{name: "LocksAreNamed", run: testLocksAreNamed},
}

var secretTests = []test{
	{name: "SecretGeneratedOnce", run: testSecretGeneratedOnce},
	{name: "SecretGeneratedOnceAtOnce", run: testSecretGeneratedOnceAtOnce},
	{name: "SecretReplacedAndDeleted", run: testSecretReplacedAndDeleted},
	{name: "SecretTooLarge", run: testSecretTooLarge},
}

const (
	// longLease outlasts every test: a lock taken with it is released,
	// never lapses.
	longLease = time.Hour
	// heldWait is how long a caller tries for a lock that must stay held.
	// Nothing is timed: the caller must fail, however long it tried.
	heldWait = 20 * time.Millisecond
	// freeWait bounds the wait for a lock that must become free (a
	// shared store's lease that lapses on its server's clock).
	freeWait = 10 * time.Second
)

// testLockExcludes: two holders at once never.
func testLockExcludes(t *testing.T, e *env) {
	s := e.open(sessions.Options{})
	excludes(t, s, s)
}

// excludes runs holders through a and b in turn and checks that no two
// hold the lock at once, and that a waiter gets it once it is released.
func excludes(t *testing.T, a, b sessions.Store) {
	ctx := t.Context()
	const holders, rounds = 4, 25
	// The counter is read, then written, under the lock: a second holder
	// would lose increments. Atomic, so that the race detector, which
	// cannot see a lock held through a network, has nothing to report.
	var counter, inside atomic.Int32
	var wg sync.WaitGroup
	for i := range holders {
		s := []sessions.Store{a, b}[i%2]
		wg.Go(func() {
			for range rounds {
				release, err := s.Lock(ctx, "counter", longLease)
				if err != nil {
					t.Errorf("Lock: %v", err)
					return
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d holders of one lock at once", n)
				}
				c := counter.Load()
				runtime.Gosched()
				counter.Store(c + 1)
				inside.Add(-1)
				release()
			}
		})
	}
	wg.Wait()
	if got := counter.Load(); got != holders*rounds {
		t.Errorf("counter = %d after %d increments under the lock", got, holders*rounds)
	}

	release, err := a.Lock(ctx, "held", longLease)
	if err != nil {
		t.Fatal(err)
	}
	expectHeld(t, b, "held", "a lock held")
	got := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, freeWait)
		defer cancel()
		rel, err := b.Lock(ctx, "held", longLease)
		if err == nil {
			rel()
		}
		got <- err
	}()
	release()
	if err := <-got; err != nil {
		t.Errorf("a waiter did not get a released lock: %v", err)
	}
}

// testLockWaitEndsWithContext: a caller waiting for a held lock gives up
// when its context ends, and says why.
func testLockWaitEndsWithContext(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	release, err := s.Lock(ctx, "held", longLease)
	if err != nil {
		t.Fatal(err)
	}
	expectHeld(t, s, "held", "a lock held")
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Lock(canceled, "held", longLease); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock with a canceled context = %v, want an error wrapping context.Canceled", err)
	}
	// Canceled while it waits.
	waiting, stop := context.WithCancel(ctx)
	got := make(chan error, 1)
	go func() {
		rel, err := s.Lock(waiting, "held", longLease)
		if err == nil {
			rel()
		}
		got <- err
	}()
	stop()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Errorf("Lock canceled while waiting = %v, want an error wrapping context.Canceled", err)
	}
	release()
	// Given up, the callers hold nothing: the lock is free again.
	release = lockWithin(t, s, "held", longLease)
	release()
}

// testLockLeaseLapses: a holder that never releases loses the lock when
// its lease lapses; its release then frees nothing; release twice is
// harmless.
func testLockLeaseLapses(t *testing.T, e *env) {
	s := e.open(sessions.Options{})
	// The lease lapses on the store's clock (opts.Now, set forward) and
	// on a shared store's server clock too (it is short).
	first, err := s.Lock(t.Context(), "lease", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	second := lockWithin(t, s, "lease", longLease)
	first() // the first holder, late
	expectHeld(t, s, "lease", "the first holder's late release freed the second's lock")
	second()
	second() // twice
	third := lockWithin(t, s, "lease", longLease)
	second() // and once more, late
	first()
	expectHeld(t, s, "lease", "a release of a lock no longer held freed the next holder's")
	third()
	lockWithin(t, s, "lease", longLease)()
}

// testLocksAreNamed: locks of other names are other locks.
func testLocksAreNamed(t *testing.T, e *env) {
	s := e.open(sessions.Options{})
	a := lockWithin(t, s, "refresh:did:plc:a", longLease)
	b := lockWithin(t, s, "refresh:did:plc:b", longLease)
	expectHeld(t, s, "refresh:did:plc:a", "a lock held while another is held")
	a()
	expectHeld(t, s, "refresh:did:plc:b", "a lock held after another was released")
	b()
}

// lockWithin takes a lock that is free, or becomes free within freeWait.
func lockWithin(t *testing.T, s sessions.Store, name string, lease time.Duration) func() {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), freeWait)
	defer cancel()
	release, err := s.Lock(ctx, name, lease)
	if err != nil {
		t.Fatalf("Lock(%q): %v", name, err)
	}
	return release
}

// expectHeld checks that the lock called name is held by someone else: a
// caller that tries for heldWait gives up with the context's error.
func expectHeld(t *testing.T, s sessions.Store, name, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), heldWait)
	defer cancel()
	release, err := s.Lock(ctx, name, longLease)
	if err == nil {
		release()
		t.Errorf("%s: another caller took it", what)
		return
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s: Lock = %v, want an error wrapping context.DeadlineExceeded", what, err)
	}
}

// testSecretGeneratedOnce: a secret is made the first time it is asked
// for, and kept: the OAuth client key published at /@/jwks.json must
// survive restarts.
func testSecretGeneratedOnce(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	boom := errors.New("no entropy")
	if _, err := s.Secret(ctx, "client", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("Secret with a failing generate = %v, want its error", err)
	}
	calls := 0
	gen := func() ([]byte, error) { calls++; return []byte("key-1"), nil }
	k1, err := s.Secret(ctx, "client", gen)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := s.Secret(ctx, "client", gen)
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.Secret(ctx, "other", func() ([]byte, error) { return []byte("key-2"), nil })
	if err != nil || string(other) != "key-2" {
		t.Errorf("another secret = %q, %v; want its own", other, err)
	}
	s = e.reopen(s)
	k3, err := s.Secret(ctx, "client", gen)
	if err != nil {
		t.Fatal(err)
	}
	if string(k1) != "key-1" || string(k2) != "key-1" || string(k3) != "key-1" || calls != 1 {
		t.Fatalf("k1=%q k2=%q after reopen %q; generate called %d times, want once", k1, k2, k3, calls)
	}
	// What Secret returns is the caller's: changing it changes nothing
	// stored.
	k3[0] = 'X'
	if k4, err := s.Secret(ctx, "client", gen); err != nil || string(k4) != "key-1" {
		t.Errorf("after the caller changed its copy: %q, %v", k4, err)
	}
}

// testSecretGeneratedOnceAtOnce: the first callers at once (every
// listener starting) all get the one secret, made once.
func testSecretGeneratedOnceAtOnce(t *testing.T, e *env) {
	s := e.open(sessions.Options{})
	secretOnceAtOnce(t, s, s)
}

// secretOnceAtOnce asks for one new secret through a and b at once.
func secretOnceAtOnce(t *testing.T, a, b sessions.Store) {
	ctx := t.Context()
	const callers = 8
	var calls atomic.Int32
	gen := func() ([]byte, error) {
		calls.Add(1)
		runtime.Gosched() // let the others ask meanwhile
		return []byte(sessions.NewToken()), nil
	}
	got := make([][]byte, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		s := []sessions.Store{a, b}[i%2]
		wg.Go(func() {
			<-start
			k, err := s.Secret(ctx, "client", gen)
			if err != nil {
				t.Errorf("Secret: %v", err)
			}
			got[i] = k
		})
	}
	close(start)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("generate called %d times by %d callers at once, want once", n, callers)
	}
	for i, k := range got {
		if len(k) == 0 || !bytes.Equal(k, got[0]) {
			t.Errorf("caller %d got %q, caller 0 %q: want one secret", i, k, got[0])
		}
	}
	for _, s := range []sessions.Store{a, b} {
		if k, err := s.Secret(ctx, "client", gen); err != nil || !bytes.Equal(k, got[0]) {
			t.Errorf("asked again: %q, %v; want %q", k, err, got[0])
		}
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("generate called %d times, want once", n)
	}
}
