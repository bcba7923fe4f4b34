package ingress

import (
	"context"
	"net/http"
	"strings"
)

// serveOwn serves ioproxy's own routes under /@/. They belong to ioproxy,
// never to the backend, in any spelling ("//@/", "/./@/", "/x/../@/"): a
// backend that normalizes paths must not see one, so other spellings are
// redirected to the one clean path.
func (hr *hostRoute) serveOwn(w http.ResponseWriter, r *http.Request, clean string, tr *trace) {
	if clean != r.URL.Path {
		u := *r.URL
		u.Path, u.RawPath = clean, ""
		http.Redirect(w, r, u.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	tr.upstream = "ioproxy"
	if r.URL.Path == "/@/auth" {
		tr.operation = "auth"
		if hr.backend != nil {
			// A host with a backend is guarded here; answering
			// forward-auth for it too would only give a proxy in front,
			// pointed at the wrong host, a way around it.
			writeError(w, r, errorPage{Status: http.StatusNotFound, Title: "Not found", Message: "This host is not a forward-auth host (it has a backend); /@/auth answers only for hosts without one."})
			return
		}
		hr.forwardAuth(w, r)
		return
	}
	if hr.signIn == nil {
		writeError(w, r, errorPage{Status: http.StatusNotFound, Title: "Not found", Message: "This site does not offer sign-in."})
		return
	}
	if !hr.signInAllowed(w, r) {
		return
	}
	tr.operation = signInOperation(r.URL.Path)
	hr.signIn.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), clientCtxKey{}, hr.routes.clientKey(r))))
}

// signInAllowed counts a sign-in start or callback against its client's
// limits, and answers 429 past them. Each start makes ioproxy fetch
// documents from servers the client names, and each callback looks up the
// store and calls the authorization server.
func (hr *hostRoute) signInAllowed(w http.ResponseWriter, r *http.Request) bool {
	var limiter *rateLimiter
	var what string
	switch {
	case r.URL.Path == "/@/signin" && (r.Method == http.MethodPost || hasCookie(r, cookieName(r))):
		// A signed-in browser's GET may start a re-consent.
		limiter, what = hr.router.limiter, "started"
	case r.URL.Path == "/@/callback":
		limiter, what = hr.router.callbacks, "finished"
	default:
		return true
	}
	return hr.withinSignInLimit(w, r, limiter, what, "/@/signin")
}

// UnknownHost is the record's Source of requests for hosts not configured.
const UnknownHost = "(unknown)"

// signInOperation names the sign-in route of a path, from a fixed set:
// it becomes a metric label, so it never comes from the request itself.
func signInOperation(path string) string {
	switch path {
	case "/@/signin", "/@/callback", "/@/signout", "/@/client-metadata.json", "/@/jwks.json", "/@/auth":
		return strings.TrimSuffix(strings.TrimPrefix(path, "/@/"), ".json")
	}
	return ""
}
