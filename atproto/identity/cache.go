package identity

import (
	"sync"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

const maxCacheEntries = 10000

// identityCache holds verified identities by DID and by handle, each for
// ttl; a negative ttl keeps nothing. A handle entry only points at a DID
// entry, so an identity whose handle has moved on is never found under the
// old handle.
type identityCache struct {
	ttl time.Duration
	now func() time.Time

	mu       sync.Mutex
	byDID    map[syntax.DID]didEntry
	byHandle map[syntax.Handle]handleEntry
}

type didEntry struct {
	ident   Identity
	expires time.Time
}

type handleEntry struct {
	did     syntax.DID
	expires time.Time
}

// newIdentityCache applies the Config defaults: a zero ttl is
// DefaultCacheTTL, a nil now is time.Now.
func newIdentityCache(ttl time.Duration, now func() time.Time) identityCache {
	if ttl == 0 {
		ttl = DefaultCacheTTL
	}
	if now == nil {
		now = time.Now
	}
	return identityCache{
		ttl:      ttl,
		now:      now,
		byDID:    make(map[syntax.DID]didEntry),
		byHandle: make(map[syntax.Handle]handleEntry),
	}
}

func (c *identityCache) handle(h syntax.Handle) (*Identity, bool) {
	if c.ttl < 0 {
		return nil, false
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	he, ok := c.byHandle[h]
	if !ok || !now.Before(he.expires) {
		return nil, false
	}
	ident, ok := c.didLocked(he.did, now)
	if !ok || ident.Handle != h {
		return nil, false
	}
	return ident, true
}

func (c *identityCache) did(did syntax.DID) (*Identity, bool) {
	if c.ttl < 0 {
		return nil, false
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.didLocked(did, now)
}

// didLocked returns a copy of the identity cached for did, unless expired.
func (c *identityCache) didLocked(did syntax.DID, now time.Time) (*Identity, bool) {
	de, ok := c.byDID[did]
	if !ok || !now.Before(de.expires) {
		return nil, false
	}
	ident := de.ident
	return &ident, true
}

// store caches ident under its DID and, when verified, its handle.
func (c *identityCache) store(ident Identity) {
	if c.ttl < 0 {
		return
	}
	now := c.now()
	expires := now.Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byDID) >= maxCacheEntries || len(c.byHandle) >= maxCacheEntries {
		c.evictLocked(now)
	}
	c.byDID[ident.DID] = didEntry{ident: ident, expires: expires}
	if !ident.Handle.IsInvalidHandle() {
		c.byHandle[ident.Handle] = handleEntry{did: ident.DID, expires: expires}
	}
}

// evictLocked drops expired entries, then arbitrary ones, to make room.
func (c *identityCache) evictLocked(now time.Time) {
	for k, e := range c.byDID {
		if !now.Before(e.expires) {
			delete(c.byDID, k)
		}
	}
	for k, e := range c.byHandle {
		if !now.Before(e.expires) {
			delete(c.byHandle, k)
		}
	}
	for k := range c.byDID {
		if len(c.byDID) < maxCacheEntries*9/10 {
			break
		}
		delete(c.byDID, k)
	}
	for k := range c.byHandle {
		if len(c.byHandle) < maxCacheEntries*9/10 {
			break
		}
		delete(c.byHandle, k)
	}
}

// purge forgets a DID and any handle cached for it.
func (c *identityCache) purge(did syntax.DID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if de, ok := c.byDID[did]; ok {
		if he, ok := c.byHandle[de.ident.Handle]; ok && he.did == did {
			delete(c.byHandle, de.ident.Handle)
		}
	}
	delete(c.byDID, did)
}

// Purge forgets a DID and any handle cached for it.
func (r *Resolver) Purge(did syntax.DID) {
	r.cache.purge(did)
}
