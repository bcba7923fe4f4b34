package boltstore

import (
	"fmt"
	"sync"

	"github.com/ioproxy/ioproxy/sessions"
)

// pendingCounts are the pending sign-ins on disk: in all, per client and
// per issuer (grouped by registrable domain), so that no one client and
// no one authorization server can take every place. A pending sign-in
// costs nothing but a started form and a pushed authorization request to
// a server the client chose, which may be its own: without shares, a
// handful of addresses could keep MaxPending full and every real sign-in
// refused.
type pendingCounts struct {
	mu       sync.Mutex
	total    int
	byClient map[string]int
	byIssuer map[string]int
}

func newPendingCounts() *pendingCounts {
	return &pendingCounts{byClient: map[string]int{}, byIssuer: map[string]int{}}
}

// admit counts p in, or says which limit it is over.
func (c *pendingCounts) admit(p sessions.Pending, o sessions.Options) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	issuer := sessions.IssuerGroup(p.Issuer)
	switch {
	case c.total >= o.MaxPending:
		return fmt.Errorf("%d sign-ins in progress: %w", c.total, sessions.ErrFull)
	case p.Client != "" && c.byClient[p.Client] >= o.MaxPendingPerClient:
		return fmt.Errorf("%d sign-ins in progress from %s: %w", c.byClient[p.Client], p.Client, sessions.ErrFull)
	case c.byIssuer[issuer] >= o.MaxPendingPerIssuer:
		return fmt.Errorf("%d sign-ins in progress with %s: %w", c.byIssuer[issuer], issuer, sessions.ErrFull)
	}
	c.total++
	if p.Client != "" {
		c.byClient[p.Client]++
	}
	c.byIssuer[issuer]++
	return nil
}

// release counts p out.
func (c *pendingCounts) release(p sessions.Pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	decrement(c.byClient, p.Client)
	decrement(c.byIssuer, sessions.IssuerGroup(p.Issuer))
}

// reset counts exactly ps.
func (c *pendingCounts) reset(ps []sessions.Pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total = len(ps)
	clear(c.byClient)
	clear(c.byIssuer)
	for _, p := range ps {
		if p.Client != "" {
			c.byClient[p.Client]++
		}
		c.byIssuer[sessions.IssuerGroup(p.Issuer)]++
	}
}

func decrement(m map[string]int, k string) {
	if k == "" {
		return
	}
	if m[k] <= 1 {
		delete(m, k) // the maps hold only keys in use
		return
	}
	m[k]--
}
