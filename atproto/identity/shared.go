package identity

import (
	"context"
	"fmt"
	"strings"
	"time"
)

const sharedWorkTimeout = 30 * time.Second

// shared runs fn once for all concurrent callers with the same key and
// caches the identity it finds. The work is detached from the first
// caller's cancellation (one impatient caller must not fail the others)
// but bounded in time; each caller still stops waiting when its own
// context ends. The result is cached inside the flight, so it lands even
// when every caller has stopped waiting.
func (r *Resolver) shared(ctx context.Context, key string, fn func(context.Context) (*Identity, error)) (*Identity, error) {
	subject := key[strings.IndexByte(key, ':')+1:]
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("look up %s: %w", subject, err)
	}
	ch := r.flights.DoChan(key, func() (any, error) {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedWorkTimeout)
		defer cancel()
		ident, err := fn(wctx)
		if err != nil {
			return nil, err
		}
		r.cache.store(*ident)
		return ident, nil
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("look up %s: %w", subject, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		ident := *res.Val.(*Identity) // each caller gets its own copy
		return &ident, nil
	}
}
