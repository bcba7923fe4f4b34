package ingress

import (
	"net/http"
	"strings"
)

// The headers through which ioproxy tells a backend who is signed in.
// Backends trust them, so no client may ever set them.
const (
	HeaderUserDID      = "User-Did"
	HeaderUserHandle   = "User-Handle"
	HeaderProxySession = "Proxy-Session"
)

// isIdentityHeader reports whether a header name is, or could be read by
// some backend as, one of the identity headers: any case, and with "_" for
// "-" (some servers fold the two, a real advisory of a popular proxy).
func isIdentityHeader(name string) bool {
	if len(name) < len("user-did") || len(name) > len("proxy-session") {
		return false
	}
	n := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	return n == "user-did" || n == "user-handle" || n == "proxy-session" || n == "apikey-user"
}

// StripIdentityHeaders removes every spelling of the identity headers.
func StripIdentityHeaders(h http.Header) {
	for name := range h {
		if isIdentityHeader(name) {
			delete(h, name)
		}
	}
}

// removeCookie drops the named cookies from the Cookie header(s), so the
// session cookie never reaches a backend (it would let the backend act as
// the user's browser); the backend gets Proxy-Session instead.
func removeCookie(h http.Header, names ...string) {
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		for _, part := range strings.Split(line, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			name, _, _ := strings.Cut(part, "=")
			drop := false
			for _, n := range names {
				if strings.TrimSpace(name) == n {
					drop = true
				}
			}
			if !drop {
				kept = append(kept, part)
			}
		}
	}
	if len(kept) == 0 {
		h.Del("Cookie")
		return
	}
	h.Set("Cookie", strings.Join(kept, "; "))
}
