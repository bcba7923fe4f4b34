// Package every runs a background task on a fixed interval: the loop that
// the session cleanup, the back-off pruning and the client-key watch
// would otherwise each write out.
package every

import (
	"context"
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
