package sessions

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/net/publicsuffix"
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
func (c *pendingCounts) admit(p Pending, o Options) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	issuer := issuerGroup(p.Issuer)
	switch {
	case c.total >= o.MaxPending:
		return fmt.Errorf("%d sign-ins in progress: %w", c.total, ErrFull)
	case p.Client != "" && c.byClient[p.Client] >= o.MaxPendingPerClient:
		return fmt.Errorf("%d sign-ins in progress from %s: %w", c.byClient[p.Client], p.Client, ErrFull)
	case c.byIssuer[issuer] >= o.MaxPendingPerIssuer:
		return fmt.Errorf("%d sign-ins in progress with %s: %w", c.byIssuer[issuer], issuer, ErrFull)
	}
	c.total++
	if p.Client != "" {
		c.byClient[p.Client]++
	}
	c.byIssuer[issuer]++
	return nil
}

// release counts p out.
func (c *pendingCounts) release(p Pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total--
	decrement(c.byClient, p.Client)
	decrement(c.byIssuer, issuerGroup(p.Issuer))
}

// reset counts exactly ps.
func (c *pendingCounts) reset(ps []Pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total = len(ps)
	clear(c.byClient)
	clear(c.byIssuer)
	for _, p := range ps {
		if p.Client != "" {
			c.byClient[p.Client]++
		}
		c.byIssuer[issuerGroup(p.Issuer)]++
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

// issuerGroup is the registrable domain of an issuer URL's host
// ("https://auth.pds.example.com" → "example.com"), so that one party's
// subdomains share one place; an IP address or a name without a public
// suffix stands for itself.
func issuerGroup(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil || u.Hostname() == "" {
		return strings.ToLower(issuer)
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if net.ParseIP(host) != nil {
		return host
	}
	if d, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return d
	}
	return host
}
