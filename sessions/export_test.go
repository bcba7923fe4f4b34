package sessions

import "time"

// SetLockWait replaces the bound on a refresh's wait for the session's
// refresh lock (refreshTimeout), so that a test need not wait 30 s.
func SetLockWait(t *Lifecycle, d time.Duration) { t.lockWait = d }

// SetJitter replaces the draw of the refresh margin's jitter (rand.N),
// so that a test can tell which margin a refresh was judged by.
func SetJitter(t *Lifecycle, jitter func(bound time.Duration) time.Duration) { t.jitter = jitter }
