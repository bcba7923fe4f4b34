package ingress

import (
	"context"
	"errors"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/sessions"
)

// Cookie names. On HTTPS the __Host- prefix makes the browser refuse a
// cookie unless it is Secure, has Path=/ and no Domain, so no sibling
// subdomain can plant or overwrite it.
const (
	CookieName       = "ioproxy-session"
	SecureCookieName = "__Host-ioproxy-session"
	// The state cookie binds a sign-in to the browser that started it.
	stateCookieName       = "ioproxy-signin"
	secureStateCookieName = "__Host-ioproxy-signin"
)

// httpsKey marks in a request's context whether the browser reached us
// over HTTPS, directly or through a trusted TLS-terminating proxy.
type httpsKey struct{}

func withHTTPS(r *http.Request, https bool) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), httpsKey{}, https))
}

// isHTTPS reports whether the browser uses HTTPS: it decides cookie names
// and flags, and the origin that same-origin checks expect.
func isHTTPS(r *http.Request) bool {
	if v, ok := r.Context().Value(httpsKey{}).(bool); ok {
		return v
	}
	return r.TLS != nil
}

func cookieName(r *http.Request) string {
	if isHTTPS(r) {
		return SecureCookieName
	}
	return CookieName
}

func stateCookie(r *http.Request) string {
	if isHTTPS(r) {
		return secureStateCookieName
	}
	return stateCookieName
}

// hasCookie reports whether the request carries a cookie called name.
func hasCookie(r *http.Request, name string) bool {
	return cookieValue(r, name) != ""
}

// cookieValue is the value of the request's first cookie called name, ""
// without one. It reads the Cookie lines exactly as net/http's r.Cookie
// does (FuzzCookieValue holds them to it) but makes nothing: it runs on
// every request of a signed-in browser, where r.Cookie allocates a Cookie
// and a slice each time.
func cookieValue(r *http.Request, name string) string {
	value := ""
	eachCookie(r, func(n, raw string) bool {
		if n != name {
			return true
		}
		v, ok := readCookieValue(raw)
		if !ok {
			// net/http skips a value it cannot read, and reads on.
			return true
		}
		value = v
		return false
	})
	return value
}

// eachCookie calls yield with the name and raw value of each cookie of the
// request's Cookie lines, in order, as net/http splits them, until yield
// returns false; readCookieValue reads a raw value as net/http does. A
// caller after several names (providerCookieIDs) reads the header once.
func eachCookie(r *http.Request, yield func(name, raw string) bool) {
	lines := r.Header["Cookie"]
	if len(lines) == 0 {
		return
	}
	// net/http reads no cookie at all from a header of more than its
	// limit (GODEBUG httpcookiemaxnum, 3000 by default).
	count := 0
	for _, line := range lines {
		count += strings.Count(line, ";") + 1
	}
	if count > maxCookies {
		return
	}
	for _, line := range lines {
		line = textproto.TrimString(line)
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			n, v, _ := strings.Cut(textproto.TrimString(part), "=")
			if !yield(textproto.TrimString(n), v) {
				return
			}
		}
	}
}

// readCookieValue is a cookie's value as net/http reads it from a raw one:
// without its double quotes, if valid.
func readCookieValue(raw string) (string, bool) {
	if len(raw) > 1 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	return raw, validCookieValue(raw)
}

// maxCookies is net/http's default limit of the cookies of a request.
const maxCookies = 3000

// validCookieValue reports whether v holds only the bytes net/http
// accepts in the cookies it reads (RFC 6265's cookie-octets, and space
// and comma besides, as browsers send them).
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == ';' || c == '\\' {
			return false
		}
	}
	return true
}

// lookupSession returns the live session of the request's cookie, if it
// belongs to host: ok is false without one. err is a store that could not
// answer (a shared store out of reach), not a missing session. It runs on
// every ingress request; stores answer it from memory.
func lookupSession(store *sessions.Lifecycle, r *http.Request, host string) (sess sessions.Session, ok bool, err error) {
	if store == nil {
		return sessions.Session{}, false, nil
	}
	id := cookieValue(r, cookieName(r))
	if id == "" {
		return sessions.Session{}, false, nil
	}
	sess, err = store.Get(r.Context(), id)
	switch {
	case errors.Is(err, sessions.ErrNotFound):
		return sessions.Session{}, false, nil
	case err != nil:
		return sessions.Session{}, false, err
	case sess.Host != host || sess.Provider != "":
		// Another host's session, or another provider's: a provider
		// session's id in this cookie is no AT Protocol session.
		return sessions.Session{}, false, nil
	}
	return sess, true, nil
}

// setCookie sets one of ioproxy's cookies: scoped to the host (no Domain),
// HttpOnly, SameSite=Lax (sent on the top-level navigation back from the
// authorization server, not on cross-site subrequests or POSTs), Secure on
// HTTPS. maxAge < 0 deletes the cookie.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge time.Duration) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		HttpOnly: true,
		Secure:   isHTTPS(r),
		SameSite: http.SameSiteLaxMode,
	}
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge.Seconds())
	}
	http.SetCookie(w, c)
}

func setSessionCookie(w http.ResponseWriter, r *http.Request, id string, expiry time.Time) {
	setCookie(w, r, cookieName(r), id, time.Until(expiry))
}

func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	setCookie(w, r, cookieName(r), "", -1)
}

// removeCookies drops the cookies whose name drop reports from the
// Cookie header(s), so that no cookie of ioproxy's (ownCookie) reaches a
// backend (a session's would let the backend act as the user's browser);
// the backend gets Proxy-Session instead.
func removeCookies(h http.Header, drop func(name string) bool) {
	lines := h["Cookie"]
	if len(lines) == 0 || !cookiesNamed(lines, drop) {
		return // the common case of a signed-out browser: nothing to copy
	}
	var b strings.Builder
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.TrimSpace(part)
			if part == "" || isCookieNamed(part, drop) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString("; ")
			}
			b.WriteString(part)
		}
	}
	if b.Len() == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{b.String()}
}

// cookiesNamed reports whether Cookie header lines hold a cookie whose
// name drop reports.
func cookiesNamed(lines []string, drop func(string) bool) bool {
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			if isCookieNamed(strings.TrimSpace(part), drop) {
				return true
			}
		}
	}
	return false
}

// isCookieNamed reports whether drop reports a cookie's ("name=value")
// name.
func isCookieNamed(part string, drop func(string) bool) bool {
	name, _, _ := strings.Cut(part, "=")
	return drop(strings.TrimSpace(name))
}

// ownCookie reports whether a cookie name is one of ioproxy's own
// (sessions of AT Protocol and of each provider, sign-ins in progress):
// its cookies all start with "ioproxy-" (or "__Host-ioproxy-"), so that
// no backend may set one and none reaches a backend.
func ownCookie(name string) bool {
	return strings.HasPrefix(name, "ioproxy-") || strings.HasPrefix(name, "__Host-ioproxy-")
}
