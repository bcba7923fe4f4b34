package sessions

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// LocalLocks are named locks with a lease, within one process: what a
// store that one process owns offers as Store.Lock. A lock whose lease
// lapsed can be taken by the next caller; its first holder's release then
// does nothing.
type LocalLocks struct {
	now func() time.Time

	mu    sync.Mutex
	held  map[string]localLock
	freed chan struct{} // closed and replaced whenever a lock is released
	seq   uint64
}

type localLock struct {
	owner  uint64
	expiry time.Time
}

// NewLocalLocks returns locks on the clock now (time.Now when nil).
func NewLocalLocks(now func() time.Time) *LocalLocks {
	if now == nil {
		now = time.Now
	}
	return &LocalLocks{now: now, held: map[string]localLock{}, freed: make(chan struct{})}
}

// Lock takes the lock called name for at most lease; see Store.Lock.
func (l *LocalLocks) Lock(ctx context.Context, name string, lease time.Duration) (func(), error) {
	for {
		l.mu.Lock()
		now := l.now()
		cur, taken := l.held[name]
		if !taken || !now.Before(cur.expiry) {
			l.seq++
			owner := l.seq
			l.held[name] = localLock{owner: owner, expiry: now.Add(lease)}
			l.mu.Unlock()
			return func() { l.release(name, owner) }, nil
		}
		freed, wait := l.freed, cur.expiry.Sub(now)
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-freed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("lock %s: %w", name, ctx.Err())
		}
		t.Stop()
	}
}

// release frees the lock if owner still holds it.
func (l *LocalLocks) release(name string, owner uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.held[name]; ok && cur.owner == owner {
		delete(l.held, name)
		close(l.freed)
		l.freed = make(chan struct{})
	}
}
