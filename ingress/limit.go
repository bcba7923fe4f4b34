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
	// maxLimitedClients bounds the limiter's memory; past it, new
	// addresses are refused until the minute ends.
	maxLimitedClients = 100000
)

// startLimiter counts sign-in starts per client in fixed one-minute windows.
type startLimiter struct {
	now func() time.Time

	mu     sync.Mutex
	window time.Time
	counts map[string]int
}

func newStartLimiter(now func() time.Time) *startLimiter {
	return &startLimiter{now: now, counts: map[string]int{}}
}

func (l *startLimiter) allow(client string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := l.now(); now.Sub(l.window) >= time.Minute {
		l.window = now
		clear(l.counts)
	}
	n, seen := l.counts[client]
	if !seen && len(l.counts) >= maxLimitedClients {
		return false
	}
	l.counts[client] = n + 1
	return n < signinStartsPerMinute
}

// clientKey is the address a request is counted under: the peer, or for a
// trusted proxy the last address it forwarded for. IPv6 clients are
// counted per /64, which one host can easily rotate within.
func (rt *Router) clientKey(r *http.Request) string {
	ip := peerIP(r)
	if rt.trustedPeer(ip) {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			ip = strings.TrimSpace(parts[len(parts)-1])
		}
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
