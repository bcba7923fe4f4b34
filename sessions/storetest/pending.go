package storetest

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/sessions"
)

var pendingTests = []test{
	{name: "PendingIsSingleUseAndExpires", run: testPendingIsSingleUseAndExpires},
	{name: "PendingSurvivesReopen", run: testPendingSurvivesReopen},
	{name: "PendingTakenOnceAtOnce", run: testPendingTakenOnceAtOnce},
	{name: "MalformedStateNotFound", run: testMalformedStateNotFound},
}

// testPendingIsSingleUseAndExpires: a state is good for one callback,
// within its expiry; the sweep removes those never used.
func testPendingIsSingleUseAndExpires(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	p := e.newPending(10 * time.Minute)
	p.PKCEVerifier = "v"
	if err := s.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakePending(ctx, p.State)
	if err != nil || got.PKCEVerifier != "v" {
		t.Fatalf("TakePending = %+v, %v", got, err)
	}
	if _, err := s.TakePending(ctx, p.State); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("replayed state: err = %v, want ErrNotFound", err)
	}
	old := e.newPending(time.Minute)
	if err := s.PutPending(ctx, old); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Minute)
	if _, err := s.TakePending(ctx, old.State); !errors.Is(err, sessions.ErrExpired) {
		t.Fatalf("expired state: err = %v, want ErrExpired", err)
	}
	if _, err := s.TakePending(ctx, old.State); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("expired state taken again: err = %v, want ErrNotFound", err)
	}
	stale := e.newPending(time.Minute)
	if err := s.PutPending(ctx, stale); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(2 * time.Minute)
	// One: the expired state TakePending refused is gone already.
	if n, err := s.DeleteExpired(ctx); err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1", n, err)
	}
	if _, err := s.TakePending(ctx, stale.State); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("swept state: err = %v, want ErrNotFound", err)
	}
	if n, err := s.DeleteExpired(ctx); err != nil || n != 0 {
		t.Errorf("second DeleteExpired = %d, %v; want 0", n, err)
	}
}

// testPendingSurvivesReopen: a sign-in started before a restart finishes
// after it, with everything it was started with.
func testPendingSurvivesReopen(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	key, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	p := e.newPending(10 * time.Minute)
	p.ClientID, p.Issuer = "https://app.example.com/@/client-metadata.json", "https://auth.example.com"
	p.ExpectedDID, p.Handle, p.PDS = "did:plc:alice", "alice.test", "https://pds.example.com"
	p.PKCEVerifier, p.DPoPKey, p.Redirect = "verifier", key, "/after?x=1"
	p.Client, p.Binding = "192.0.2.1", sessions.NewToken()
	if err := s.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	s = e.reopen(s)
	got, err := s.TakePending(ctx, p.State)
	if err != nil {
		t.Fatalf("TakePending after reopen: %v", err)
	}
	if f := diff(got, p); f != "" {
		t.Errorf("after reopen the pending sign-in's %s differs", f)
	}
	s = e.reopen(s)
	if _, err := s.TakePending(ctx, p.State); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("a state taken before a reopen, after it: %v, want ErrNotFound", err)
	}
}

// testPendingTakenOnceAtOnce: two callbacks with one state at once (a
// double submit, a replay racing the real one): exactly one gets it.
func testPendingTakenOnceAtOnce(t *testing.T, e *env) {
	s := e.open(sessions.Options{})
	takeOnceAtOnce(t, e, s, s)
}

// takeOnceAtOnce puts sign-ins through a and takes each through a and b
// at once.
func takeOnceAtOnce(t *testing.T, e *env, a, b sessions.Store) {
	ctx := t.Context()
	for range 8 {
		p := e.newPending(time.Minute)
		if err := a.PutPending(ctx, p); err != nil {
			t.Fatal(err)
		}
		var taken atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, s := range []sessions.Store{a, b, a, b} {
			wg.Go(func() {
				<-start
				got, err := s.TakePending(ctx, p.State)
				switch {
				case err == nil && got.State == p.State:
					taken.Add(1)
				case err == nil:
					t.Errorf("TakePending returned state %q, want %q", got.State, p.State)
				case !errors.Is(err, sessions.ErrNotFound):
					t.Errorf("TakePending of a state taken at once = %v, want ErrNotFound", err)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := taken.Load(); n != 1 {
			t.Fatalf("a state taken by %d callbacks at once, want exactly 1", n)
		}
	}
}

// testMalformedStateNotFound: a state that no store could have issued is
// not found (and costs nothing, which only a store can show); a store
// refuses to keep one, which no callback could take.
func testMalformedStateNotFound(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	for _, state := range []string{"", "x", strings.Repeat("a", 43), sessions.NewToken(), strings.Repeat("é", 22), sessions.NewToken()[:42] + "=", sessions.NewToken() + "a"} {
		if _, err := s.TakePending(ctx, state); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("TakePending(%q) = %v, want ErrNotFound", state, err)
		}
	}
	for _, state := range []string{"", "x", strings.Repeat("é", 22), sessions.NewToken()[:42] + "=", sessions.NewToken() + "a"} {
		p := e.newPending(time.Minute)
		p.State = state
		if err := s.PutPending(ctx, p); err == nil {
			t.Errorf("PutPending(%q) accepted a state TakePending cannot find", state)
		}
	}
}
