package calling

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/sessions"
)

// A call block's auth puts a credential on each call to its upstream: a
// fixed one (an API key from the environment), or the access token of
// the user's session with an OAuth provider (credential =
// "session:<provider>"), found by the call's Proxy-Session and refreshed
// when it expires. The app sends neither: it never holds the user's
// provider token.

// credentialKey carries the credential of a call from the handler to the
// proxy's Rewrite.
type credentialKey struct{}

// withAuth wraps an upstream proxy with a session credential's auth: it
// finds the credential, or answers why there is none, before anything
// goes upstream. A fixed credential needs no finding: applyCredential
// puts it on.
func withAuth(cfg Config, next http.Handler) http.Handler {
	auth := cfg.Call.Auth
	if auth == nil || auth.Provider == "" {
		return next
	}
	// Decided once per port, not per call.
	prefix := ""
	if isAuthorization(auth) {
		prefix = "Bearer "
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, status, code, msg := credential(r.Context(), cfg, r.Header.Get(contract.ProxySession))
		if status != 0 {
			writeXRPCError(w, status, code, msg)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), credentialKey{}, prefix+token)))
	})
}

// credential is the access token of the session whose credential the
// call's auth puts upstream, or the status, code and message of an answer
// that says why there is none.
func credential(ctx context.Context, cfg Config, proxySession string) (token string, status int, code, msg string) {
	auth := cfg.Call.Auth
	label := cfg.Call.Label
	sess, err := credentialSession(ctx, cfg, proxySession)
	var refused *refusal
	switch {
	case errors.As(err, &refused):
		return "", refused.status, refused.code, refused.msg
	case err != nil:
		cfg.Logger.Error("session store failed", "call", label, "err", err)
		return "", http.StatusServiceUnavailable, "SessionStoreUnavailable", "the session store is not reachable; try again in a moment"
	}
	fresh, err := cfg.Sessions.Fresh(ctx, sess)
	switch {
	case errors.Is(err, sessions.ErrEnded):
		return "", http.StatusUnauthorized, "AuthRequired", fmt.Sprintf("the user's %s session has ended (the provider refused its refresh token): sign in again at /@%s/signin", auth.Provider, auth.Provider)
	case errors.Is(err, sessions.ErrNoRefreshToken):
		return "", http.StatusUnauthorized, "AuthRequired", fmt.Sprintf("the user's %s access token has expired and %s gave no refresh token (Google gives one with authorize_parameter access_type = \"offline\"): sign in again at /@%s/signin", auth.Provider, auth.Provider, auth.Provider)
	case err != nil:
		cfg.Logger.Warn("provider token refresh failed", "call", label, "provider", auth.Provider, "err", err)
		return "", http.StatusBadGateway, "UpstreamFailure", fmt.Sprintf("the user's %s token could not be refreshed: %v", auth.Provider, err)
	}
	return fresh.AccessToken, 0, "", ""
}

// refusal is why a call gets no session credential: its answer.
type refusal struct {
	status    int
	code, msg string
}

func (r *refusal) Error() string { return r.msg }

// credentialSession is the user's session with the call's provider among
// the Proxy-Session keys, if the host's rules still admit it: a refusal
// when not, another error when the store cannot answer (not logged: the
// caller decides). It refreshes nothing.
func credentialSession(ctx context.Context, cfg Config, proxySession string) (sessions.Session, error) {
	auth := cfg.Call.Auth
	if strings.TrimSpace(proxySession) == "" {
		return sessions.Session{}, &refusal{http.StatusUnauthorized, "AuthRequired", fmt.Sprintf("call %q makes calls with the user's %s session: pass on the Proxy-Session header ioproxy gave your backend", cfg.Call.Label, auth.Provider)}
	}
	sess, err := cfg.Sessions.ByProxyKeys(ctx, proxySession, auth.Provider)
	switch {
	case errors.Is(err, sessions.ErrNotFound):
		return sessions.Session{}, &refusal{http.StatusUnauthorized, "AuthRequired", fmt.Sprintf("the user is not signed in with %s (no %s session among the Proxy-Session keys): sign in at /@%s/signin", auth.Provider, auth.Provider, auth.Provider)}
	case err != nil:
		return sessions.Session{}, err
	}
	if cfg.ProviderAdmitted != nil && !cfg.ProviderAdmitted(sess) {
		return sessions.Session{}, &refusal{http.StatusUnauthorized, "AuthRequired", fmt.Sprintf("the user's %s account may no longer use this site (its host's rules or provider changed): sign in again at /@%s/signin", auth.Provider, auth.Provider)}
	}
	return sess, nil
}

// isAuthorization reports whether a session credential goes in the
// Authorization header, where a bearer token is written "Bearer <token>".
func isAuthorization(auth *config.CallAuth) bool {
	return auth.Location != "query" && strings.EqualFold(auth.Name, "Authorization")
}

// applyCredential puts the call's credential on the upstream request,
// and takes off what the app sent ioproxy that is not for the upstream:
// Proxy-Session and the other identity headers, and any credential of
// the same name the app set itself.
func applyCredential(out *http.Request, auth *config.CallAuth) {
	if auth == nil {
		// Proxy-Session is ioproxy's key to the user's sessions: it is
		// for calling ports, never for the service behind one.
		contract.StripProxySession(out.Header)
		return
	}
	contract.StripIdentity(out.Header)
	cred := auth.Static
	if auth.Provider != "" {
		var ok bool
		if cred, ok = out.Context().Value(credentialKey{}).(string); !ok {
			return // withAuth answers every call it finds no credential for
		}
	}
	if auth.Location == "query" {
		out.URL.RawQuery = withQueryParam(out.URL.RawQuery, auth.Name, cred)
		return
	}
	out.Header.Set(auth.Name, cred)
}

// withQueryParam is a raw query with name set to value alone: the app's
// other pairs stay as they were written (order, spelling, ";"), and any
// pair of that name it sent is dropped.
func withQueryParam(raw, name, value string) string {
	var b strings.Builder
	for pair := range strings.SplitSeq(raw, "&") {
		if pair == "" {
			continue
		}
		key, _, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(key); err == nil && k == name || key == name {
			continue
		}
		b.WriteString(pair)
		b.WriteByte('&')
	}
	b.WriteString(url.QueryEscape(name))
	b.WriteByte('=')
	b.WriteString(url.QueryEscape(value))
	return b.String()
}
