package sessions

import (
	"context"
	"time"
)

// SetLockWait replaces the bound on a refresh's wait for the session's
// refresh lock (refreshTimeout), so that a test need not wait 30 s.
func SetLockWait(t *Lifecycle, d time.Duration) { t.lockWait = d }

// SetJitter replaces the draw of the refresh margin's jitter (rand.N),
// so that a test can tell which margin a refresh was judged by.
func SetJitter(t *Lifecycle, jitter func(bound time.Duration) time.Duration) { t.jitter = jitter }

// Prune runs one round of RunPrune.
func Prune(t *Lifecycle, ctx context.Context) { t.prune(ctx) }

// MarkFailed records a failed background refresh of id, as RefreshLater
// does.
func MarkFailed(t *Lifecycle, id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failedAt[id] = t.cfg.Now()
}

// HasFailed reports whether the back-off of id is remembered.
func HasFailed(t *Lifecycle, id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.failedAt[id]
	return ok
}

// LockFree reports whether the lifecycle's lock is free at this moment.
func LockFree(t *Lifecycle) bool {
	if !t.mu.TryLock() {
		return false
	}
	t.mu.Unlock()
	return true
}

// SetEndWaits replaces End's and Forget's bounds on their wait for a
// refresh under way (endLockWait, refreshLease).
func SetEndWaits(t *Lifecycle, end, forget time.Duration) { t.endWait, t.forgetWait = end, forget }
