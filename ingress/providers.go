package ingress

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/access"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/internal/textutil"
	"github.com/ioproxy/ioproxy/provider"
	"github.com/ioproxy/ioproxy/sessions"
)

// Sign-in with the OAuth providers other than AT Protocol (a host's
// oauth "<name>" blocks) lives under /@<name>/: signin starts it,
// callback finishes it, signout ends it. Each provider's session has a
// cookie of its own, so a browser may be signed in with AT Protocol and
// with several providers at once, each ending apart.

// ProviderClient is what a host's sign-in needs of a provider's OAuth
// client; provider.Client is one.
type ProviderClient interface {
	AuthCodeURL(ctx context.Context, a provider.AuthRequest) (string, error)
	Exchange(ctx context.Context, code, verifier, nonce string) (*provider.Grant, error)
	OpenID() bool
}

// providerRoute is one oauth "<name>" block of a host.
type providerRoute struct {
	cfg    config.OAuthProvider
	client ProviderClient
	// rules are the host's require_oauth "<name>" block; nil without one.
	rules *access.EmailRules
	// prefix is "/@<name>/".
	prefix string
}

// providerSignInLife bounds a provider sign-in in progress, as for AT
// Protocol: long enough for a password and a second factor.
const providerSignInLife = 10 * time.Minute

// providerCookiePrefix starts the session cookie of every provider;
// ioproxy's cookies all start with "ioproxy-" (ownCookie).
const providerCookiePrefix = "ioproxy-oauth-"

func providerCookie(r *http.Request, name string) string {
	if isHTTPS(r) {
		return "__Host-" + providerCookiePrefix + name
	}
	return providerCookiePrefix + name
}

func providerStateCookie(r *http.Request, name string) string {
	if isHTTPS(r) {
		return secureStateCookieName + "-" + name
	}
	return stateCookieName + "-" + name
}

// newProviderRoutes makes the provider routes of a host, in its order.
func newProviderRoutes(h config.Host, clients map[string]ProviderClient) ([]*providerRoute, error) {
	if len(h.OAuth) > config.MaxOAuthProviders {
		// config refuses them; providerCookieIDs counts on it.
		return nil, fmt.Errorf("host %s: %d oauth providers, at most %d", h.Hostname, len(h.OAuth), config.MaxOAuthProviders)
	}
	var out []*providerRoute
	for _, p := range h.OAuth {
		c, ok := clients[p.Name]
		if !ok {
			return nil, errors.New("host " + h.Hostname + ": oauth " + p.Name + " has no client")
		}
		pr := &providerRoute{cfg: p, client: c, prefix: providerPrefix(p.Name)}
		if h.Access != nil {
			pr.rules = h.Access.OAuth[p.Name]
		}
		out = append(out, pr)
	}
	return out, nil
}

// providerPrefix is where a provider's sign-in routes are: "/@<name>/".
func providerPrefix(name string) string { return "/@" + name + "/" }

// providerOf is the provider whose routes path is under, if any.
func (hr *hostRoute) providerOf(path string) *providerRoute {
	for _, pr := range hr.providers {
		if strings.HasPrefix(path, pr.prefix) || path == strings.TrimSuffix(pr.prefix, "/") {
			return pr
		}
	}
	return nil
}

// serveProvider serves a provider's sign-in routes.
func (hr *hostRoute) serveProvider(w http.ResponseWriter, r *http.Request, pr *providerRoute, clean string, tr *trace) {
	tr.upstream = "ioproxy"
	if clean != r.URL.Path {
		u := *r.URL
		u.Path, u.RawPath = clean, ""
		http.Redirect(w, r, u.RequestURI(), http.StatusPermanentRedirect)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	switch route := strings.TrimPrefix(clean, pr.prefix); {
	case route == "signin" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		tr.operation = "signin"
		hr.providerSignIn(w, r, pr)
	case route == "callback" && r.Method == http.MethodGet:
		tr.operation = "callback"
		hr.providerCallback(w, r, pr)
	case route == "signout" && r.Method == http.MethodGet:
		tr.operation = "signout"
		hr.providerSignoutForm(w, r, pr)
	case route == "signout" && r.Method == http.MethodPost:
		tr.operation = "signout"
		hr.providerSignout(w, r, pr)
	default:
		writeError(w, r, errorPage{Status: http.StatusNotFound, Title: "Not found", Message: "There is no such sign-in page."})
	}
}

// providerLabel is a provider's name for people: "google" is "Google".
func providerLabel(name string) string {
	if name == "" {
		return name
	}
	return strings.ToUpper(name[:1]) + name[1:]
}

// providerSignIn starts a sign-in with the provider: a sign-in in
// progress bound to this browser (state, PKCE, and the OpenID nonce), then
// off to the provider's authorization page.
func (hr *hostRoute) providerSignIn(w http.ResponseWriter, r *http.Request, pr *providerRoute) {
	retry := pr.prefix + "signin"
	if m, d := r.Header.Get("Sec-Fetch-Mode"), r.Header.Get("Sec-Fetch-Dest"); m != "" && m != "navigate" || d != "" && d != "document" {
		// An <img>, a fetch or an <iframe> on another site's page would
		// write a sign-in in progress per load, using up the visitor's
		// share.
		writeError(w, r, errorPage{Status: http.StatusForbidden, Title: "Sign-in not started", Message: "A sign-in starts from a link or a form, not from within another page.", Retry: retry})
		return
	}
	if !hr.withinSignInLimit(w, r, hr.router.limiter, "started", retry) {
		return
	}
	redirect := SafeRedirect(r.URL.Query().Get("redirect"))
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err == nil && r.PostForm.Has("redirect") {
			redirect = SafeRedirect(r.PostForm.Get("redirect"))
		}
	}
	now := hr.router.now()
	p := sessions.Pending{
		State: sessions.NewToken(), Host: hr.host.Hostname, Provider: pr.cfg.Name,
		ClientID: pr.cfg.ClientID, Issuer: pr.cfg.IssuerName(),
		PKCEVerifier: sessions.NewToken(), Redirect: redirect, Client: hr.routes.clientKey(r),
		Binding: sessions.NewToken(), CreatedAt: now, Expiry: now.Add(providerSignInLife),
	}
	if pr.client.OpenID() {
		p.Nonce = sessions.NewToken()
	}
	authURL, err := pr.client.AuthCodeURL(r.Context(), provider.AuthRequest{State: p.State, Nonce: p.Nonce, Verifier: p.PKCEVerifier})
	if err != nil {
		hr.router.log.Warn("provider sign-in could not start", "host", hr.host.Hostname, "provider", pr.cfg.Name, "err", err)
		writeError(w, r, errorPage{Status: http.StatusBadGateway, Title: "Sign-in unavailable", Message: providerLabel(pr.cfg.Name) + " could not be reached to start the sign-in. Please try again in a moment.", Retry: retry})
		return
	}
	if !hr.flow(pr).beginSignIn(w, r, p) {
		return
	}
	hr.router.recorder.SignIn(observe.SignInStarted)
	setCookie(w, r, providerStateCookie(r, pr.cfg.Name), p.Binding, providerSignInLife)
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// providerCallback finishes a sign-in: only in the browser that started
// it, once, with a code the provider exchanges and an identity it
// vouches for (the ID token, verified); the host's require_oauth decides
// whether it becomes a session.
func (hr *hostRoute) providerCallback(w http.ResponseWriter, r *http.Request, pr *providerRoute) {
	retry := pr.prefix + "signin"
	label := providerLabel(pr.cfg.Name)
	if !hr.withinSignInLimit(w, r, hr.router.callbacks, "finished", retry) {
		return
	}
	f := hr.flow(pr)
	p, fail := f.takePending(w, r)
	if fail != nil {
		f.refuseCallback(w, r, fail)
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		hr.router.recorder.SignIn(observe.SignInFailed)
		msg := label + " did not sign you in (" + textutil.Clip(e, 64) + ")."
		if e == "access_denied" {
			msg = "The sign-in with " + label + " was cancelled."
		}
		writeError(w, r, errorPage{Status: http.StatusForbidden, Title: "Not signed in", Message: msg, Retry: retry + "?redirect=" + url.QueryEscape(p.Redirect)})
		return
	}
	grant, err := pr.client.Exchange(r.Context(), q.Get("code"), p.PKCEVerifier, p.Nonce)
	if err != nil {
		hr.router.recorder.SignIn(observe.SignInFailed)
		hr.router.log.Warn("provider sign-in failed", "host", hr.host.Hostname, "provider", pr.cfg.Name, "err", err)
		status, msg := http.StatusBadGateway, label+"'s answer could not be verified, so you are not signed in. Please try again."
		if errors.Is(err, provider.ErrInvalidGrant) {
			status, msg = http.StatusBadRequest, "This sign-in link was used already or has expired. Please sign in again."
		}
		writeError(w, r, errorPage{Status: status, Title: "Not signed in", Message: msg, Retry: retry})
		return
	}
	hr.finishProviderSignIn(w, r, pr, p, grant)
}

// finishProviderSignIn makes the session of a verified grant, unless the
// host's rules refuse the account, and sends the browser back.
func (hr *hostRoute) finishProviderSignIn(w http.ResponseWriter, r *http.Request, pr *providerRoute, p sessions.Pending, grant *provider.Grant) {
	id := grant.Identity
	email := ""
	if id.EmailVerified {
		email = id.Email
	}
	g := sessions.ProviderGrant{
		ProviderTokens: sessions.ProviderTokens{AccessToken: grant.AccessToken, RefreshToken: grant.RefreshToken, Scope: grant.Scope, Expiry: grant.Expiry},
		Host:           hr.host.Hostname, Provider: pr.cfg.Name, Issuer: pr.cfg.IssuerName(), ClientID: pr.cfg.ClientID,
		Subject: id.Subject, Email: email, Name: id.Name,
	}
	if id.Subject == "" {
		hr.router.store.DiscardProvider(g)
		hr.router.recorder.SignIn(observe.SignInFailed)
		writeError(w, r, errorPage{Status: http.StatusBadGateway, Title: "Not signed in", Message: providerLabel(pr.cfg.Name) + " did not say who you are, so you are not signed in."})
		return
	}
	if pr.rules != nil && !pr.rules.Admits(id.Email, id.EmailVerified) {
		hr.router.store.DiscardProvider(g)
		hr.router.recorder.SignIn(observe.SignInFailed)
		hr.router.log.Info("provider account refused by require_oauth", "host", hr.host.Hostname, "provider", pr.cfg.Name, "subject", id.Subject)
		shown := email
		if shown == "" {
			shown = "this " + providerLabel(pr.cfg.Name) + " account (it has no verified email)"
		}
		writeError(w, r, errorPage{Status: http.StatusForbidden, Title: "Not allowed", Message: "The account " + shown + " may not use this site.", Retry: pr.prefix + "signin?redirect=" + url.QueryEscape(p.Redirect)})
		return
	}
	sess, err := hr.router.store.CreateProvider(r.Context(), g)
	if err != nil {
		hr.router.recorder.SignIn(observe.SignInFailed)
		hr.router.log.Error("create provider session", "host", hr.host.Hostname, "provider", pr.cfg.Name, "err", err)
		writeError(w, r, errorPage{Status: http.StatusServiceUnavailable, Title: "Not signed in", Message: "Your session could not be stored. Please try again in a moment.", Retry: pr.prefix + "signin"})
		return
	}
	hr.router.recorder.SignIn(observe.SignInCompleted)
	hr.router.log.Info("signed in", "host", hr.host.Hostname, "provider", pr.cfg.Name, "subject", sess.Subject)
	if old, _ := hr.providerSession(r, pr); old != nil {
		// The browser's session with the provider is replaced: its
		// tokens must not stay live behind a cookie that is gone. Of the
		// same account, it is only forgotten: revoking its token would
		// end the new grant too at providers that revoke a user's whole
		// grant to the client (Google).
		if old.Subject == sess.Subject {
			hr.router.store.Forget(*old)
		} else {
			_ = hr.router.store.End(r.Context(), *old)
		}
	}
	setCookie(w, r, providerCookie(r, pr.cfg.Name), sess.ID, time.Until(sess.Expiry))
	http.Redirect(w, r, SafeRedirect(p.Redirect), http.StatusSeeOther)
}

// providerSession is the request's live session with the provider on
// this host, if any; err is a store that could not answer.
func (hr *hostRoute) providerSession(r *http.Request, pr *providerRoute) (*sessions.Session, error) {
	return hr.providerSessionOf(r, pr, cookieValue(r, providerCookie(r, pr.cfg.Name)))
}

// providerSessionOf is the live session of id, the value of the
// provider's cookie, if it is one with the provider on this host.
func (hr *hostRoute) providerSessionOf(r *http.Request, pr *providerRoute, id string) (*sessions.Session, error) {
	if hr.router.store == nil || !sessions.WellFormedToken(id) {
		return nil, nil
	}
	sess, err := hr.router.store.Get(r.Context(), id)
	switch {
	case errors.Is(err, sessions.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case sess.Host != hr.host.Hostname || sess.Provider != pr.cfg.Name,
		!pr.cfg.Issued(sess.Issuer, sess.ClientID):
		// Another host's or provider's session; or one from before the
		// operator pointed the provider's name at another issuer or
		// client, whose subjects are not this one's.
		return nil, nil
	}
	return &sess, nil
}

// providerSessions are the request's provider sessions on this host, in
// the host's order, for serving it (a page, forward-auth). A stale one is
// handed to the stale hook, as AT Protocol sessions are: the refresh
// re-checks the account with the provider, whether or not the app makes
// calls. (The sign-in routes look sessions up with providerSession
// alone: a refresh there would only race the sign-in or sign-out.)
func (hr *hostRoute) providerSessions(r *http.Request) ([]*sessions.Session, error) {
	if len(hr.providers) == 0 {
		return nil, nil
	}
	ids := hr.providerCookieIDs(r)
	var out []*sessions.Session
	for i, pr := range hr.providers {
		sess, err := hr.providerSessionOf(r, pr, ids[i])
		if err != nil {
			hr.logLookupFailure(r, err)
			return nil, err
		}
		if sess == nil {
			continue
		}
		if hr.router.stale != nil && sess.Stale(hr.router.now()) {
			hr.router.stale(*sess)
		}
		out = append(out, sess)
	}
	return out, nil
}

// providerCookieIDs are the values of the request's provider cookies on
// this host, ids[i] that of hr.providers[i] ("" without one), as
// cookieValue reads each, in one pass over the Cookie header: every
// request of a browser passes here, whatever its cookies, and a host may
// have several providers.
func (hr *hostRoute) providerCookieIDs(r *http.Request) (ids [config.MaxOAuthProviders]string) {
	prefix := providerCookiePrefix
	if isHTTPS(r) {
		prefix = "__Host-" + providerCookiePrefix
	}
	// read marks the cookies found: net/http reads the first one of a
	// name, even when its value is empty.
	var read [config.MaxOAuthProviders]bool
	eachCookie(r, func(name, raw string) bool {
		provider, ok := strings.CutPrefix(name, prefix)
		if !ok {
			return true
		}
		for i, pr := range hr.providers {
			if pr.cfg.Name != provider {
				continue
			}
			if v, ok := readCookieValue(raw); ok && !read[i] {
				ids[i], read[i] = v, true
			}
			break
		}
		return true
	})
	return ids
}

func (hr *hostRoute) providerSignoutForm(w http.ResponseWriter, r *http.Request, pr *providerRoute) {
	page := signoutPage{AppName: hr.host.ShortName, Action: pr.prefix + "signout", Provider: providerLabel(pr.cfg.Name), Redirect: SafeRedirect(r.URL.Query().Get("redirect"))}
	if sess, _ := hr.providerSession(r, pr); sess != nil {
		page.Email, page.CSRF = sess.Email, csrfToken(sess.ID)
		if page.Email == "" {
			page.Email = sess.Name
		}
	}
	render(w, http.StatusOK, "signout.html", page)
}

// providerSignout ends the provider session, on the same terms as the AT
// Protocol sign-out (signInFlow.signout).
func (hr *hostRoute) providerSignout(w http.ResponseWriter, r *http.Request, pr *providerRoute) {
	hr.flow(pr).signout(w, r, func() (*sessions.Session, error) { return hr.providerSession(r, pr) })
}

// flow is the provider's sign-in on this host, for what it shares with
// AT Protocol's.
func (hr *hostRoute) flow(pr *providerRoute) signInFlow {
	return signInFlow{
		sessions: hr.router.store, recorder: hr.router.recorder, log: hr.router.log,
		host: hr.host.Hostname, provider: pr.cfg.Name, clientID: pr.cfg.ClientID, prefix: pr.prefix,
		again: "Please sign in again.",
	}
}

// providerHeaders are what the backend is told of a request's provider
// sessions: their names (Proxy-Provider), and the verified email and the
// subject of the first, both of that one account (judgeProviders puts a
// session a rule admitted first).
func providerHeaders(provs []*sessions.Session) (names, email, subject string) {
	var b strings.Builder
	for i, ps := range provs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(ps.Provider)
	}
	return b.String(), provs[0].Email, provs[0].Provider + ":" + provs[0].Subject
}

// proxyKeys is the Proxy-Session value of a request: the proxy key of
// each session passed on, the AT Protocol one first, comma-separated
// (calls pick the one they need, sessions.Lifecycle.ByProxyKeys).
func proxyKeys(sess *sessions.Session, provs []*sessions.Session) string {
	if len(provs) == 0 {
		if sess == nil {
			return ""
		}
		return sess.ProxyKey
	}
	keys := make([]string, 0, len(provs)+1)
	if sess != nil {
		keys = append(keys, sess.ProxyKey)
	}
	for _, ps := range provs {
		keys = append(keys, ps.ProxyKey)
	}
	return strings.Join(keys, ",")
}

// ProviderSessionAdmitted reports whether a provider session may still
// be used as the routes stand: its host still has the provider, with the
// same issuer and client, and the provider's require_oauth (if any)
// still admits the account. Calls ask it (a reload may have changed the
// rules since the session was made).
func (routes *Routes) ProviderSessionAdmitted(sess sessions.Session) bool {
	hr, ok := routes.hosts[sess.Host]
	if !ok || sess.Provider == "" {
		return false
	}
	pr := hr.providerRoute(sess.Provider)
	switch {
	case pr == nil, !pr.cfg.Issued(sess.Issuer, sess.ClientID):
		return false
	case pr.rules != nil:
		return pr.rules.Admits(sess.Email, sess.Email != "")
	}
	return true
}
