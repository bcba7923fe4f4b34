package ingress

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

func TestStartLimiter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRateLimiter(func() time.Time { return now }, signinStartsPerMinute)
	for i := 0; i < signinStartsPerMinute; i++ {
		if !l.allow("a") {
			t.Fatalf("start %d refused", i+1)
		}
	}
	if l.allow("a") {
		t.Fatal("start over the limit allowed")
	}
	if !l.allow("b") {
		t.Fatal("another client was refused")
	}
	now = now.Add(time.Minute)
	if !l.allow("a") {
		t.Fatal("a new minute did not reset the count")
	}
}

// A full table does not lock new clients out: they share an overflow
// budget.
func TestStartLimiterOverflow(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newRateLimiter(func() time.Time { return now }, signinStartsPerMinute)
	for i := 0; i < maxLimitedClients; i++ {
		l.allow(fmt.Sprint(i))
	}
	if !l.allow("newcomer") {
		t.Fatal("a new client was refused when the table was full")
	}
	allowed := 1
	for i := 0; i < 2*overflowPerMinute; i++ {
		if l.allow(fmt.Sprint("flood", i)) {
			allowed++
		}
	}
	if allowed != overflowPerMinute {
		t.Fatalf("overflow allowed %d, want %d", allowed, overflowPerMinute)
	}
	if len(l.counts) != maxLimitedClients {
		t.Fatalf("table grew to %d", len(l.counts))
	}
}

func TestClientKey(t *testing.T) {
	routes := &Routes{trustedProxies: mustConfig(t, `ingress { trusted_proxies = ["10.0.0.0/8"] }`).Ingress.TrustedProxies}
	for _, tt := range []struct{ remote, xff, want string }{
		{"203.0.113.7:1234", "1.1.1.1", "203.0.113.7"},
		{"10.0.0.2:1234", "1.1.1.1, 198.51.100.4", "198.51.100.4"},
		{"[2001:db8:1:2:3:4:5:6]:1234", "", "2001:db8:1::/56"},
		{"10.0.0.2:1234", "198.51.100.1, 10.0.0.9", "198.51.100.1"},
		{"10.0.0.2:1234", "198.51.100.1, evil-garbage", "10.0.0.2"},
		{"10.0.0.2:1234", "1.2.3.4:5555", "10.0.0.2"},
		{"[::ffff:203.0.113.7]:1234", "", "203.0.113.7"},
	} {
		r := httptest.NewRequest(http.MethodPost, "http://a.example.com/@/signin", nil)
		r.RemoteAddr = tt.remote
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		if got := routes.clientKey(r); got != tt.want {
			t.Errorf("clientKey(%s, %q) = %q, want %q", tt.remote, tt.xff, got, tt.want)
		}
	}
}

// Past the limit, POST /@/signin answers 429 before any outbound fetch.
func TestSignInStartsAreRateLimited(t *testing.T) {
	e := newSigninEnv(t, envConfig{})
	b := e.browser(t)
	var last *http.Response
	for i := 0; i <= signinStartsPerMinute; i++ {
		last, _ = b.do("POST", "/@/signin", url.Values{"handle": {"alice.test"}}, nil)
	}
	body, _ := b.do("POST", "/@/signin", url.Values{"handle": {"alice.test"}}, nil)
	if last.StatusCode != http.StatusTooManyRequests || body.StatusCode != http.StatusTooManyRequests || body.Header.Get("Retry-After") == "" {
		t.Fatalf("status after %d starts: %d", signinStartsPerMinute+1, last.StatusCode)
	}
	if pars := e.srv.Counts().PAR; pars > 2*signinStartsPerMinute {
		t.Fatalf("%d PAR requests for %d allowed starts", pars, signinStartsPerMinute)
	}
}
