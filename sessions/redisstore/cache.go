package redisstore

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ioproxy/ioproxy/sessions"
)

// cache is a replica's copy of the sessions it has seen, kept true by
// the invalidation channel. While the channel is down, what is cached
// stays and serves, read again from Redis every maxAge when Redis
// answers; when the channel is back, the cache starts empty.
//
// A lookup that misses reads Redis, then caches what it read only if no
// invalidation arrived meanwhile (gen unchanged): a write on another
// replica between the read and the caching would otherwise leave the
// older value cached for good.
type cache struct {
	max    int
	maxAge time.Duration

	// Entries are by ref (see ref), as invalidations name sessions.
	mu      sync.Mutex
	byRef   map[string]cached
	byProxy map[string]string // proxy key's ref → session's ref
	gen     uint64            // bumped by every invalidation
	live    bool              // subscribed: only then is anything cached
}

type cached struct {
	sess sessions.Session
	at   time.Time
}

func newCache(max int, maxAge time.Duration) *cache {
	return &cache{max: max, maxAge: maxAge, byRef: map[string]cached{}, byProxy: map[string]string{}}
}

// get returns the cached session of ref r, and whether it is fresh
// (younger than maxAge). A stale one is asked of Redis again, and used
// only when Redis cannot answer: so even while invalidations are down,
// what a replica serves is at most maxAge older than Redis, whenever
// Redis answers.
func (c *cache) get(r string) (sess sessions.Session, fresh, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byRef[r]
	if !ok {
		return sessions.Session{}, false, false
	}
	return e.sess, time.Since(e.at) <= c.maxAge, true
}

// touch makes the cached session of ref r fresh again: Redis could not
// be asked, and the next request should not wait to find that out again
// before maxAge has passed.
func (c *cache) touch(r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byRef[r]; ok {
		e.at = time.Now()
		c.byRef[r] = e
	}
}

// refOfProxy returns the ref of the cached session whose proxy key's
// ref is pr.
func (c *cache) refOfProxy(pr string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.byProxy[pr]
	return r, ok
}

// generation is the count of invalidations so far: pass it to put.
func (c *cache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put caches sess, read from Redis at generation gen, unless an
// invalidation came since or the subscription is down.
func (c *cache) put(sess sessions.Session, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	r := ref(sess.ID)
	if _, known := c.byRef[r]; !c.live && !known {
		// While invalidations are down, only what is cached already is
		// brought up to date (it is read again every maxAge); nothing new
		// is cached, as nothing would say when it changes.
		return
	}
	c.storeLocked(r, sess)
}

// storeLocked caches sess under its ref r.
func (c *cache) storeLocked(r string, sess sessions.Session) {
	if _, known := c.byRef[r]; !known && len(c.byRef) >= c.max {
		c.evictOneLocked()
	}
	c.byRef[r] = cached{sess: sess, at: time.Now()}
	c.byProxy[ref(sess.ProxyKey)] = r
}

// evictOneLocked drops one entry, any: the cache is at most as large as
// the store may be, so this happens only with entries of sessions gone.
func (c *cache) evictOneLocked() {
	for r := range c.byRef {
		c.dropLocked(r)
		return
	}
}

// invalidate drops what is cached for ref r.
func (c *cache) invalidate(r string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.dropLocked(r)
}

func (c *cache) dropLocked(r string) {
	if e, ok := c.byRef[r]; ok {
		delete(c.byProxy, ref(e.sess.ProxyKey))
		delete(c.byRef, r)
	}
}

// wrote records this replica's own write of the session of ref r: sess is its
// new value, nil when it was deleted. The write counts as an
// invalidation for lookups under way here, which may have read the older
// value; sess is cached only if no other invalidation came since gen,
// read before the write.
func (c *cache) wrote(r string, sess *sessions.Session, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	unchanged := c.gen == gen
	c.gen++
	c.dropLocked(r)
	if sess != nil && unchanged && c.live {
		c.storeLocked(r, *sess)
	}
}

// lost records that invalidations may be missed from now on: nothing
// new is cached, and what is cached stays, so that signed-in users keep
// working while Redis is out of reach.
func (c *cache) lost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.live = false
}

// subscribed records that invalidations arrive (again): the cache is
// emptied, as messages may have been missed while they did not.
func (c *cache) subscribed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.live = true
	clear(c.byRef)
	clear(c.byProxy)
}

// listen applies invalidations until ctx ends. go-redis reconnects a
// dropped subscription and subscribes again, which arrives as a
// *redis.Subscription: only then does the cache come back.
// Close ends it by closing ps: a Receive under way does not watch ctx.
func (s *Store) listen(ctx context.Context, ps *redis.PubSub) {
	defer close(s.done)
	backoff := newBackoff(50*time.Millisecond, 2*time.Second)
	down := false // logged once per outage, not per retry
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.cache.lost()
			if !down {
				s.log.Warn("redis session store: invalidations not received; cached sessions are served as they are until Redis is back", "err", err)
				down = true
			}
			if !backoff.wait(ctx) {
				return
			}
			continue
		}
		backoff.reset()
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				s.cache.subscribed()
				if down {
					s.log.Info("redis session store: invalidations received again; the cache starts empty")
					down = false
				}
			}
		case *redis.Message:
			from, r, _ := strings.Cut(m.Payload, " ")
			if from != s.instance {
				s.cache.invalidate(r)
			}
		}
	}
}

// invalidation is the message that drops the session of ref r from every
// other replica's cache.
func (s *Store) invalidation(r string) string { return s.instance + " " + r }

// backoff is a growing wait between attempts.
type backoff struct {
	first, max, next time.Duration
}

func newBackoff(first, max time.Duration) *backoff {
	return &backoff{first: first, max: max, next: first}
}

func (b *backoff) reset() { b.next = b.first }

// wait sleeps for the next wait, and says false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, b.max)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
