// Package httpguard holds the checks a proxy applies to a request before
// passing it on, shared by ingress and the calling ports: which Upgrade
// requests may become tunnels, and which headers a client must not be able
// to send to a backend that would trust them.
package httpguard

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/ioproxy/ioproxy/internal/textutil"
)

// ErrUpgradeMessage says why a request with a forbidden Upgrade is refused.
const ErrUpgradeMessage = "Only WebSocket upgrades are passed on (Upgrade: websocket); this request asked for another protocol."

// UpgradeAllowed reports whether a request's Upgrade header, if any, may
// be passed to a backend. Only "websocket" may: any other upgrade that a
// lenient backend accepts turns the client's connection into a tunnel
// past every later check. Hypercorn, for one, answers 101 to "Upgrade:
// h2c" without looking at Connection, after which the client speaks raw
// HTTP/2 to the app, with whatever User-Did it likes. A header sent more
// than once, or naming several protocols, is refused too: the proxy and
// the backend could each read a different one.
func UpgradeAllowed(h http.Header) bool {
	vs, ok := h["Upgrade"]
	if !ok {
		return true
	}
	return len(vs) == 1 && strings.EqualFold(strings.TrimSpace(vs[0]), "websocket")
}

// StripOverrides removes, in every spelling, headers that some backend
// frameworks trust to change what a request means: method overrides
// (Express's method-override, Rails, Symfony, Laravel and others read
// them, so a POST becomes a DELETE past a check on the method), and URL
// or scheme overrides (X-Original-URL and X-Rewrite-URL in IIS and
// Symfony, X-Override-URL, X-Scheme in Tornado). Ingress and calling
// ports strip them from every request, a trusted proxy's too: it passes
// its clients' headers on as they came.
func StripOverrides(h http.Header) {
	for name := range h {
		if IsOverride(name) {
			delete(h, name)
		}
	}
}

// IsOverride reports whether StripOverrides removes a header name: a
// method or URL override, or HTTP2-Settings (it only means something
// with an h2c upgrade, which is never passed on, and a backend that sees
// it may still try one), in any spelling.
func IsOverride(name string) bool {
	var b [64]byte
	n := textutil.FoldHeader(b[:0], name)
	return overrideNames[string(n)] || string(n) == "http2-settings"
}

// overrideNames are the headers StripOverrides removes, as fold spells them.
var overrideNames = map[string]bool{
	"x-http-method-override": true,
	"x-http-method":          true,
	"x-method-override":      true,
	"x-original-method":      true,
	"x-original-url":         true,
	"x-rewrite-url":          true,
	"x-override-url":         true,
	"x-scheme":               true,
}

// HostAllowed reports whether a request's Host names a listener that is
// meant to be reached only from this machine or a private network (the
// admin listener, calling ports): an IP literal, localhost or a name
// under .localhost (browsers resolve those to loopback themselves), or
// one of names (lower case, no port). Any other name may be an
// attacker's that resolves to 127.0.0.1 (DNS rebinding): a web page on it
// could otherwise read metrics or make calls as any signed-in user.
func HostAllowed(host string, names map[string]bool) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if host == "" {
		// HTTP/1.0 without Host: nobody's page made that request.
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	return host == "localhost" || strings.HasSuffix(host, ".localhost") || names[host]
}

// CloseIfBody makes an answer given without reading the request's body
// close the connection. Otherwise net/http reads up to 256 KiB of the
// unread body before it sends the answer, at the client's pace and with
// no deadline: a refusal would hold the connection as long as the client
// trickles. Call it before writing the header.
func CloseIfBody(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		w.Header().Set("Connection", "close")
	}
}
