package access

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestKeysWaitingIsBounded: a flood of wrong keys from many addresses
// must not build an unbounded queue of bcrypt comparisons (a good key not
// yet remembered would wait behind all of it): past maxWaiting, checks are
// refused at once with ErrBusy, before they are counted against the
// client, and a waiting check ends with its request.
func TestKeysWaitingIsBounded(t *testing.T) {
	k := NewKeys([]KeyEntry{{Name: "ci", Kind: HashBcrypt, Hash: bcryptHash(t, "ci-key", 4)}})
	// Hold every slot, as comparisons under way would.
	for i := 0; i < cap(k.slots); i++ {
		k.slots <- struct{}{}
	}

	// A check whose request ends stops waiting.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := k.CheckLimited(ctx, "ci", "wrong-0", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("check with an ended request: %v, want DeadlineExceeded", err)
	}

	// Fill the queue.
	var wg sync.WaitGroup
	results := make(chan error, k.maxWaiting)
	for i := 0; i < k.maxWaiting; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- k.CheckLimited(context.Background(), "ci", fmt.Sprintf("wrong-%d", i+1), nil)
		}()
	}
	waitUntil(t, func() bool {
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.waiting == k.maxWaiting
	})

	// One more is refused at once, and so is a good key: nothing tells it
	// from a wrong one before its comparison. A client over its limit is
	// told that first (a cheaper answer, and the right one).
	if err := k.CheckLimited(context.Background(), "ci", "wrong-x", func() bool { return true }); !errors.Is(err, ErrBusy) {
		t.Errorf("check past the queue: %v, want ErrBusy", err)
	}
	if err := k.CheckLimited(context.Background(), "ci", "wrong-y", func() bool { return false }); !errors.Is(err, ErrTooMany) {
		t.Errorf("check past the queue and the client's limit: %v, want ErrTooMany", err)
	}
	if err := k.CheckLimited(context.Background(), "ci", "ci-key", nil); !errors.Is(err, ErrBusy) {
		t.Errorf("good key past the queue: %v, want ErrBusy", err)
	}

	// Free the slots: every waiting check finishes, as a wrong key.
	for i := 0; i < cap(k.slots); i++ {
		<-k.slots
	}
	wg.Wait()
	close(results)
	for err := range results {
		if !errors.Is(err, ErrWrongKey) {
			t.Errorf("queued check: %v, want ErrWrongKey", err)
		}
	}
	if err := k.CheckLimited(context.Background(), "ci", "ci-key", nil); err != nil {
		t.Errorf("good key once the flood is over: %v", err)
	}
	// A key remembered as good never waits, whatever the queue.
	for i := 0; i < cap(k.slots); i++ {
		k.slots <- struct{}{}
	}
	if err := k.CheckLimited(context.Background(), "ci", "ci-key", nil); err != nil {
		t.Errorf("remembered key while the slots are taken: %v", err)
	}
}

// waitUntil polls cond for up to five seconds.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
