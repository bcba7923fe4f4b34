package every

import (
	"context"
	"testing"
	"time"
)

// TestSpreadFirstRunWithinOneInterval: the first run comes within one
// interval of the start, so that a tunnel judged "every 30 s" sees a
// sign-out within 30 s (found in review: between one and two).
func TestSpreadFirstRunWithinOneInterval(t *testing.T) {
	const interval = 40 * time.Millisecond
	const runs = 10
	late := 0
	for range runs {
		ctx, cancel := context.WithCancel(context.Background())
		start := time.Now()
		first := make(chan time.Duration, 1)
		go Spread(ctx, interval, func(context.Context) {
			select {
			case first <- time.Since(start):
			default:
			}
		})
		if d := <-first; d >= interval {
			late++
		}
		cancel()
	}
	if late == runs {
		t.Fatalf("in all %d runs the first task came after more than one interval (%v): the first recheck of a tunnel waits up to two intervals", runs, interval)
	}
}
