package provider

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCache: the value is fetched at first use, then kept for maxAge; a
// failed refetch keeps the old value (and is not tried again within
// retryAfter); a miss refetches at once, but not twice within
// retryAfter; until one fetch works, every call tries.
func TestCache(t *testing.T) {
	ctx := context.Background()
	clk := newClock()
	c := newCache[int](time.Hour, time.Minute, clk.Now)
	var fetches int
	fail := false
	fetch := func(context.Context) (int, error) {
		fetches++
		if fail {
			return 0, errors.New("down")
		}
		return fetches, nil
	}
	get := func(miss func(int) bool) (cached[int], error) { return c.get(ctx, fetch, miss) }
	step := func(name string, miss func(int) bool, wantVal, wantFetches int, wantStale, wantMissed bool) {
		t.Helper()
		got, err := get(miss)
		if err != nil || got.val != wantVal || fetches != wantFetches || (got.stale != nil) != wantStale || got.missed != wantMissed {
			t.Fatalf("%s: %+v, %v after %d fetches; want %d after %d, stale %v, missed %v", name, got, err, fetches, wantVal, wantFetches, wantStale, wantMissed)
		}
	}

	fail = true
	for i := 1; i <= 2; i++ {
		if _, err := get(nil); err == nil || fetches != i {
			t.Fatalf("down at first use: %v after %d fetches", err, fetches)
		}
	}
	fail = false
	step("first fetch", nil, 3, 3, false, false)
	step("cached", nil, 3, 3, false, false)
	clk.Advance(time.Hour)
	fail = true
	step("failed refetch keeps the old value", nil, 3, 4, true, false)
	step("not tried again at once", nil, 3, 4, false, false)
	clk.Advance(time.Minute)
	fail = false
	step("tried again after retryAfter", nil, 5, 5, false, false)
	lacks := func(int) bool { return true }
	step("a miss refetches at once", lacks, 6, 6, false, true)
	step("but not twice within retryAfter", lacks, 6, 6, false, false)
	clk.Advance(time.Minute)
	step("and again after it", lacks, 7, 7, false, true)
}

// TestCacheSharesFetch: callers that come while a fetch is under way wait
// for it. The fetch answers only once every caller has looked at the
// cache (each reads the clock there, under its lock).
func TestCacheSharesFetch(t *testing.T) {
	const callers = 8
	clk := newClock()
	var looked atomic.Int64
	c := newCache[string](time.Hour, time.Minute, func() time.Time {
		looked.Add(1)
		return clk.Now()
	})
	var fetches atomic.Int64
	fetch := func(context.Context) (string, error) {
		n := fetches.Add(1)
		deadline := time.Now().Add(5 * time.Second)
		for looked.Load() < callers && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		return fmt.Sprint("v", n), nil
	}
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			got, err := c.get(context.Background(), fetch, nil)
			if err != nil || got.val != "v1" {
				t.Errorf("get: %+v, %v; want v1", got, err)
			}
		})
	}
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for %d callers at once, want 1", n, callers)
	}
}
