package ingress

import (
	"net/http"
	"time"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/sessions"
)

// Session cookie names. On HTTPS the __Host- prefix makes the browser
// refuse the cookie unless it is Secure, has Path=/ and no Domain, so no
// sibling subdomain can plant or overwrite it.
const (
	CookieName       = "ioproxy-session"
	SecureCookieName = "__Host-ioproxy-session"
)

func cookieName(r *http.Request) string {
	if r.TLS != nil {
		return SecureCookieName
	}
	return CookieName
}

// Session returns the live session of the request's cookie, if it belongs
// to host. It reads memory only: it runs on every ingress request.
func (rt *Router) Session(r *http.Request, host config.Host) (sessions.Session, bool) {
	if rt.store == nil {
		return sessions.Session{}, false
	}
	c, err := r.Cookie(cookieName(r))
	if err != nil || c.Value == "" {
		return sessions.Session{}, false
	}
	sess, ok := rt.store.Get(c.Value)
	if !ok || sess.Host != host.Name {
		return sessions.Session{}, false
	}
	return sess, true
}

// setSessionCookie scopes the cookie to the host (no Domain), HttpOnly,
// SameSite=Lax (sent on the top-level navigation back from the
// authorization server, not on cross-site subrequests), Secure on HTTPS.
func setSessionCookie(w http.ResponseWriter, r *http.Request, id string, expiry time.Time) {
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName(r),
		Value:    id,
		Path:     "/",
		Expires:  expiry,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
}

func clearSessionCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name:     cookieName(r),
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteLaxMode,
	})
}
