package ingress

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Sign-in starts per client address and minute. Each start makes ioproxy
// fetch documents from servers the client names and write to its store,
// so an unauthenticated client must not be able to start thousands.
const (
	signinStartsPerMinute = 30
	// wrongKeysPerMinute bounds API key guessing, and the bcrypt work a
	// client can make ioproxy do for nothing.
	wrongKeysPerMinute = 30
	// maxLimitedClients bounds the limiter's memory. Clients beyond it
	// share one overflow budget for the rest of the minute, so a flood of
	// addresses can neither grow the table nor lock everyone else out.
	maxLimitedClients = 100000
	overflowPerMinute = 600
)

// rateLimiter counts events (sign-in starts, wrong API keys) per client
// in fixed one-minute windows.
type rateLimiter struct {
	now       func() time.Time
	perMinute int

	mu       sync.Mutex
	window   time.Time
	counts   map[string]int
	overflow int
}

func newRateLimiter(now func() time.Time, perMinute int) *rateLimiter {
	return &rateLimiter{now: now, perMinute: perMinute, counts: map[string]int{}}
}

// allow counts one event of the client and reports whether it is within
// the limit.
func (l *rateLimiter) allow(client string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.roll()
	n, seen := l.counts[client]
	if !seen && len(l.counts) >= maxLimitedClients {
		l.overflow++
		return l.overflow <= overflowPerMinute
	}
	l.counts[client] = n + 1
	return n < l.perMinute
}

// refund takes back one event that allow counted, for an attempt that
// turned out not to be one to limit (an API key counted before its check,
// which was right).
func (l *rateLimiter) refund(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n, seen := l.counts[client]; seen {
		if n > 0 {
			l.counts[client] = n - 1
		}
	} else if l.overflow > 0 {
		l.overflow--
	}
}

func (l *rateLimiter) roll() {
	if now := l.now(); now.Sub(l.window) >= time.Minute {
		l.window = now
		clear(l.counts)
		l.overflow = 0
	}
}

// clientKey is the address a request is counted under: the peer or, behind
// trusted proxies, the nearest address they forwarded for that is not
// itself a trusted proxy. IPv6 clients are counted per /56, the usual
// delegation to one customer, within which addresses rotate freely.
func (routes *Routes) clientKey(r *http.Request) string {
	ip := peerIP(r)
	if routes.trusted(r) {
		var hops []string
		for _, v := range r.Header.Values("X-Forwarded-For") {
			hops = append(hops, strings.Split(v, ",")...)
		}
		for i := len(hops) - 1; i >= 0; i-- {
			hop := strings.TrimSpace(hops[i])
			if _, err := netip.ParseAddr(hop); err != nil {
				break // not an address: stop at the last one we can trust
			}
			ip = hop
			if !routes.trustedPeer(hop) {
				break
			}
		}
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(56)
		return p.String()
	}
	return a.String()
}
