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

// Spread calls task first at a random point of the first interval, then
// every interval until ctx ends: tasks started together (the WebSockets
// that one reconnect opens) then do not run in step, and each runs
// within one interval of its start.
func Spread(ctx context.Context, interval time.Duration, task func(context.Context)) {
	first := time.NewTimer(rand.N(interval))
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	task(ctx)
	Tick(ctx, interval, task)
}
