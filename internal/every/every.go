// Package every runs a background task on a fixed interval: the loop that
// the session cleanup, the back-off pruning and the client-key watch
// would otherwise each write out.
package every

import (
	"context"
	"math/rand/v2"
	"time"
)

// Tick calls task every interval until ctx ends, the first time one
// interval from now. A task that takes longer than the interval delays
// the next call (ticks are dropped, never queued).
func Tick(ctx context.Context, interval time.Duration, task func(context.Context)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			task(ctx)
		}
	}
}

// Spread is Tick after a random part of one interval first: tasks started
// together (the WebSockets that one reconnect opens) then do not run in
// step, each interval's work spread over it.
func Spread(ctx context.Context, interval time.Duration, task func(context.Context)) {
	first := time.NewTimer(rand.N(interval))
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	Tick(ctx, interval, task)
}
