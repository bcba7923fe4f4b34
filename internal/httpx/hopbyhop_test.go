package httpx

import (
	"net/http"
	"testing"
)

// The hop-by-hop headers, in canonical form only: callers canonicalize
// once (net/http's Header keys are canonical already).
func TestIsHopByHop(t *testing.T) {
	for _, k := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"} {
		if !IsHopByHop(k) {
			t.Errorf("%s is hop-by-hop", k)
		}
		if http.CanonicalHeaderKey(k) != k {
			t.Errorf("%s is not canonical", k)
		}
	}
	for _, k := range []string{"Content-Length", "Cookie", "Authorization", "connection", "Trailers", ""} {
		if IsHopByHop(k) {
			t.Errorf("%s is not hop-by-hop", k)
		}
	}
}
