package sessions

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The lock tests run in synctest bubbles: time there is fake, and
// synctest.Wait says when every goroutine is blocked, so that "still
// waiting" is a fact rather than a guess after a sleep.

// waiter is a Lock call under way in its own goroutine.
type waiter struct {
	done    chan struct{}
	release func()
	err     error
}

func startLock(ctx context.Context, l *LocalLocks, name string, lease time.Duration) *waiter {
	w := &waiter{done: make(chan struct{})}
	go func() {
		defer close(w.done)
		w.release, w.err = l.Lock(ctx, name, lease)
	}()
	return w
}

// returned reports whether the Lock call has returned, once every
// goroutine of the bubble is blocked.
func (w *waiter) returned() bool {
	synctest.Wait()
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func mustLock(t *testing.T, l *LocalLocks, name string, lease time.Duration) func() {
	t.Helper()
	release, err := l.Lock(t.Context(), name, lease)
	if err != nil {
		t.Fatalf("Lock(%q): %v", name, err)
	}
	return release
}

func TestLocalLocks(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, l *LocalLocks)
	}{
		{"a release wakes the waiter", func(t *testing.T, l *LocalLocks) {
			release := mustLock(t, l, "x", time.Hour)
			w := startLock(t.Context(), l, "x", time.Hour)
			if w.returned() {
				t.Fatalf("a second caller took a held lock: %v", w.err)
			}
			release()
			if !w.returned() || w.err != nil {
				t.Fatalf("the waiter after the release: returned %v, %v", w.returned(), w.err)
			}
			w.release()
		}},
		{"a lease lapses and the waiter gets the lock", func(t *testing.T, l *LocalLocks) {
			first := mustLock(t, l, "x", time.Minute)
			w := startLock(t.Context(), l, "x", time.Hour)
			time.Sleep(time.Minute - time.Second)
			if w.returned() {
				t.Fatal("the waiter got the lock before the lease lapsed")
			}
			time.Sleep(time.Second)
			if !w.returned() || w.err != nil {
				t.Fatalf("the waiter once the lease lapsed: returned %v, %v", w.returned(), w.err)
			}
			// The first holder, late, frees nothing.
			first()
			next := startLock(t.Context(), l, "x", time.Hour)
			if next.returned() {
				t.Fatal("the first holder's late release freed the second's lock")
			}
			w.release()
			if !next.returned() || next.err != nil {
				t.Fatalf("after the second holder's release: returned %v, %v", next.returned(), next.err)
			}
			next.release()
		}},
		{"release twice frees nothing more", func(t *testing.T, l *LocalLocks) {
			first := mustLock(t, l, "x", time.Hour)
			first()
			second := mustLock(t, l, "x", time.Hour)
			first()
			w := startLock(t.Context(), l, "x", time.Hour)
			if w.returned() {
				t.Fatal("a second release freed the next holder's lock")
			}
			second()
			second()
			if !w.returned() || w.err != nil {
				t.Fatalf("after the holder's release: %v", w.err)
			}
			w.release()
		}},
		{"waiting ends with the context", func(t *testing.T, l *LocalLocks) {
			release := mustLock(t, l, "refresh", time.Hour)
			defer release()
			ctx, cancel := context.WithCancel(t.Context())
			w := startLock(ctx, l, "refresh", time.Hour)
			if w.returned() {
				t.Fatal("took a held lock")
			}
			cancel()
			if !w.returned() || !errors.Is(w.err, context.Canceled) || !strings.Contains(w.err.Error(), "refresh") {
				t.Fatalf("canceled while waiting: %v, want context.Canceled naming the lock", w.err)
			}
			ctx, stop := context.WithTimeout(t.Context(), 5*time.Second)
			defer stop()
			if _, err := l.Lock(ctx, "refresh", time.Hour); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("waiting past the deadline: %v, want context.DeadlineExceeded", err)
			}
		}},
		{"names are apart", func(t *testing.T, l *LocalLocks) {
			x := mustLock(t, l, "x", time.Hour)
			y := mustLock(t, l, "y", time.Hour)
			w := startLock(t.Context(), l, "x", time.Hour)
			// The release of y wakes every waiter; x's goes back to waiting.
			y()
			if w.returned() {
				t.Fatal("the release of one lock freed another")
			}
			x()
			if !w.returned() || w.err != nil {
				t.Fatalf("after the release: %v", w.err)
			}
			w.release()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The bubble's clock: time.Now, the default.
			synctest.Test(t, func(t *testing.T) { tc.run(t, NewLocalLocks(nil)) })
		})
	}
}

// TestLocalLocksClock: leases lapse on the clock the locks were given, so
// that a store's tests can set it forward.
func TestLocalLocksClock(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLocalLocks(func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	first := mustLock(t, l, "x", time.Minute)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.Lock(ctx, "x", time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("a held lock: %v, want context.Canceled", err)
	}
	mu.Lock()
	now = now.Add(time.Minute)
	mu.Unlock()
	// Lapsed: taken at once, a canceled context notwithstanding.
	second, err := l.Lock(ctx, "x", time.Minute)
	if err != nil {
		t.Fatalf("a lapsed lock: %v", err)
	}
	first()
	if _, err := l.Lock(ctx, "x", time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("after the first holder's late release: %v, want the lock still held", err)
	}
	second()
}
