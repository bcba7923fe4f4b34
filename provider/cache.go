package provider

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// cache is one document of a provider (its discovery document, its key
// set), fetched on first use and kept: fetched again once older than
// maxAge, though not within retryAfter of the last try, so a provider
// that is down is not asked on every call while an old copy works.
// Until a fetch works, every call tries again. A failed fetch keeps the
// copy held before. One fetch runs at a time: callers that come while it
// is under way wait for it instead of starting their own.
type cache[T any] struct {
	maxAge, retryAfter time.Duration
	now                func() time.Time

	mu        sync.Mutex
	held      T
	has       bool
	fetchedAt time.Time
	triedAt   time.Time
	// missAt is when a caller last found the copy held lacking (see
	// get's miss).
	missAt   time.Time
	inflight *fetch[T]
}

func newCache[T any](maxAge, retryAfter time.Duration, now func() time.Time) *cache[T] {
	return &cache[T]{maxAge: maxAge, retryAfter: retryAfter, now: now}
}

// cached is what a get found: the value, whether the copy held was
// lacking (miss), and the failure of a fetch whose value is the copy
// held before (stale).
type cached[T any] struct {
	val    T
	missed bool
	stale  error
}

// get returns the copy held, or fetches one with fetch. miss, when not
// nil, says whether the copy held lacks what the caller needs (a key set
// without the token's key, most likely a rotation): it is then fetched
// again at once whatever its age, but not again for such a caller within
// retryAfter, so that a run of them cannot make us hammer the provider.
func (c *cache[T]) get(ctx context.Context, fetch func(context.Context) (T, error), miss func(T) bool) (cached[T], error) {
	c.mu.Lock()
	now := c.now()
	var out cached[T]
	if c.has {
		var reuse bool
		if miss != nil && miss(c.held) {
			reuse = now.Sub(c.missAt) < c.retryAfter
			if !reuse {
				c.missAt, out.missed = now, true
			}
		} else {
			reuse = now.Sub(c.fetchedAt) < c.maxAge || now.Sub(c.triedAt) < c.retryAfter
		}
		if reuse {
			out.val = c.held
			c.mu.Unlock()
			return out, nil
		}
	}
	f := c.inflight
	if f == nil {
		f = startFetch(ctx, func(ctx context.Context) (T, error) { return c.fill(ctx, fetch) })
		c.inflight = f
	}
	held, has := c.held, c.has
	c.mu.Unlock()

	val, err := f.wait(ctx)
	switch {
	case err == nil:
		out.val = val
	case has:
		out.val, out.stale = held, err
	default:
		return cached[T]{}, err
	}
	return out, nil
}

// fill runs one fetch and keeps what it got.
func (c *cache[T]) fill(ctx context.Context, fetch func(context.Context) (T, error)) (T, error) {
	val, err := fetch(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight = nil
	c.triedAt = c.now()
	if err == nil {
		c.held, c.has, c.fetchedAt = val, true, c.triedAt
	}
	return val, err
}

// fetch is one fetch that several callers wait for. It runs on a context
// that the first caller's cancellation does not end (the others still
// want the answer) but that its own timeout does.
type fetch[T any] struct {
	done chan struct{}
	val  T
	err  error
}

func startFetch[T any](ctx context.Context, fn func(context.Context) (T, error)) *fetch[T] {
	f := &fetch[T]{done: make(chan struct{})}
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer close(f.done)
		f.val, f.err = fn(ctx)
	}()
	return f
}

func (f *fetch[T]) wait(ctx context.Context) (T, error) {
	select {
	case <-f.done:
		return f.val, f.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("%w: waiting for the provider: %w", ErrUnavailable, ctx.Err())
	}
}
