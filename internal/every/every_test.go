package every

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestTick: the task runs repeatedly, and Tick returns once ctx ends.
func TestTick(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		Tick(ctx, time.Millisecond, func(context.Context) {
			if calls.Add(1) == 3 {
				cancel()
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Tick still runs 5s after its context ended")
	}
	if n := calls.Load(); n < 3 {
		t.Errorf("task ran %d times, want at least 3", n)
	}
}

// TestTickNotBeforeInterval: nothing runs before the first interval.
func TestTickNotBeforeInterval(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	Tick(ctx, time.Hour, func(context.Context) { t.Error("the task ran on a context that had ended") })
}

// TestSpread: the task runs, and Spread returns once ctx ends, also
// before its first run.
func TestSpread(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Spread(ctx, time.Millisecond, func(context.Context) {
			select {
			case ran <- struct{}{}:
			default:
			}
		})
	}()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the task never ran")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Spread still runs 5s after its context ended")
	}
	ended, stop := context.WithCancel(context.Background())
	stop()
	Spread(ended, time.Hour, func(context.Context) { t.Error("the task ran on a context that had ended") })
}
