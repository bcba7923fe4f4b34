package ingress

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/ioproxy/ioproxy/access"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/httpguard"
	"github.com/ioproxy/ioproxy/sessions"
)

// gate applies a host's access block (require_atproto, apikey_auth) to
// requests. A host without one has no gate: anyone passes, signed in or not.
type gate struct {
	// rules is nil on a host with apikey_auth alone: only keys admit.
	rules *access.Rules
	// keys is nil without apikey_auth.
	keys  *access.Keys
	realm string
}

func newGate(h config.Host) *gate {
	if h.Access == nil {
		return nil
	}
	g := &gate{rules: h.Access.Rules, realm: h.ShortName}
	if len(h.Access.APIKeys) > 0 {
		g.keys = access.NewKeys(h.Access.APIKeys)
	}
	return g
}

// outcome is a gate's answer for one request.
type outcome int

const (
	admitted   outcome = iota // pass, with the identity in admission
	needSignIn                // no session and no key: 401, or sign-in for browsers
	wrongKey                  // credentials given but wrong: 401
	tooMany                   // too many wrong keys from this client: 429
	denied                    // signed in with an account the rules do not name: 403
	busy                      // too many key checks waiting: 503, try again
)

// admission is who a request passes as.
type admission struct {
	outcome outcome
	// session is the signed-in account passed on to the backend: set
	// only for an account the rules admit.
	session *sessions.Session
	// providers are the sessions of other OAuth providers passed on to
	// the backend: those their require_oauth admits, or whose provider
	// the host has no rules for.
	providers []*sessions.Session
	// keyUser is the apikey_auth entry that authenticated the request.
	keyUser string
	// account is the session of a denied request, for its 403 page.
	account *sessions.Session
	// verdict says why the account was denied.
	verdict access.Verdict
}

// publicPaths says whether a host's public paths apply to a request.
type publicPaths bool

const (
	publicPathsApply publicPaths = true
	// publicPathsIgnored: forward-auth requests carry no trustworthy path.
	publicPathsIgnored publicPaths = false
)

// admit decides a request. sess is the request's AT Protocol session,
// if any, and provs its sessions of the host's other providers. Any rule
// admits: an API key, require_atproto for the AT Protocol session, or a
// provider's require_oauth for that provider's session.
func (hr *hostRoute) admit(r *http.Request, sess *sessions.Session, provs []*sessions.Session, paths publicPaths) admission {
	g := hr.gate
	if g == nil {
		return admission{session: sess, providers: provs}
	}
	if g.keys != nil {
		if name, key, ok := r.BasicAuth(); ok {
			return hr.admitKey(r, g.keys, name, key)
		}
	}
	isPublic := paths == publicPathsApply && g.rules != nil && g.rules.IsPublic(r.URL)
	passed, ruled, refused := hr.judgeProviders(provs)
	var verdict access.Verdict
	if sess != nil && g.rules != nil {
		verdict = g.rules.Judge(access.Account{DID: sess.DID, Handle: sess.Handle, HandleChecked: sess.HandleChecked()}, hr.router.now())
		if verdict == access.Admitted {
			return admission{session: sess, providers: passed}
		}
	}
	if ruled {
		return admission{providers: passed}
	}
	switch {
	case isPublic:
		return admission{}
	case sess != nil && g.rules != nil:
		return admission{outcome: denied, account: sess, verdict: verdict}
	case refused != nil:
		return admission{outcome: denied, account: refused}
	}
	return admission{outcome: needSignIn}
}

// admitKey decides a request that carries an API key.
//
// A key that is not remembered as good is counted before its check (tens
// of milliseconds of bcrypt), not after: counted after, parallel guesses
// would all pass the limit. A key remembered as good is not counted at
// all, so a neighbour behind the same address cannot lock it out by
// guessing. An open tunnel's recheck is not counted either: it guesses
// nothing (its key is the one the tunnel was admitted with), and a limit
// it met would say nothing of that key, while the tunnel of a key that a
// reload removed must close even when its holder spends its address's
// limit at every recheck.
func (hr *hostRoute) admitKey(r *http.Request, keys *access.Keys, name, key string) admission {
	client := hr.routes.clientKey(r)
	spent := false
	var spend func() bool
	if !rechecking(r) {
		spend = func() bool {
			spent = true
			return hr.router.wrongKeys.allow(client)
		}
	}
	err := keys.CheckLimited(r.Context(), name, key, spend)
	switch {
	case errors.Is(err, access.ErrTooMany):
		return admission{outcome: tooMany}
	case errors.Is(err, access.ErrBusy), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		if spent {
			// Not compared: not a wrong key.
			hr.router.wrongKeys.refund(client)
		}
		return admission{outcome: busy}
	case err != nil:
		hr.router.log.Info("wrong API key", "host", hr.host.Hostname, "name", name, "remote", r.RemoteAddr)
		return admission{outcome: wrongKey}
	}
	if spent {
		// Only wrong keys count against the client.
		hr.router.wrongKeys.refund(client)
	}
	return admission{keyUser: name}
}

// judgeProviders sorts a request's provider sessions: passed are those
// their provider's require_oauth admits, or whose provider the host has
// no rules for; ruled says whether a rule admitted one (not merely let it
// through for want of one); refused is the first that its rules refuse.
//
// Those a rule admits come first: the first passed is the identity the
// backend is told of (User-Subject, User-Email), and it must be one the
// host's rules chose, not one it merely lets through.
func (hr *hostRoute) judgeProviders(provs []*sessions.Session) (passed []*sessions.Session, ruled bool, refused *sessions.Session) {
	var unruled []*sessions.Session
	for _, ps := range provs {
		pr := hr.providerRoute(ps.Provider)
		switch {
		case pr == nil:
		case pr.rules == nil:
			unruled = append(unruled, ps)
		case pr.rules.Admits(ps.Email, ps.Email != ""):
			passed = append(passed, ps)
		case refused == nil:
			refused = ps
		}
	}
	return append(passed, unruled...), len(passed) > 0, refused
}

// providerRoute is the host's provider of a name, if it has it.
func (hr *hostRoute) providerRoute(name string) *providerRoute {
	for _, pr := range hr.providers {
		if pr.cfg.Name == name {
			return pr
		}
	}
	return nil
}

// shownHandle is the handle a backend is told: the session's, while its
// last check is recent (the host's handle_max_age), handle.invalid after.
// A handle can move to another account; one not verified for a month
// must not be shown as this account's, wherever the account was admitted
// from.
func (hr *hostRoute) shownHandle(sess sessions.Session) string {
	maxAge := access.DefaultHandleMaxAge
	if hr.gate != nil && hr.gate.rules != nil && hr.gate.rules.HandleMaxAge > 0 {
		maxAge = hr.gate.rules.HandleMaxAge
	}
	if hr.router.now().Sub(sess.HandleChecked()) > maxAge {
		return syntax.HandleInvalid.String()
	}
	return sess.Handle
}

// refuse answers a request the gate did not admit.
func (hr *hostRoute) refuse(w http.ResponseWriter, r *http.Request, a admission) {
	httpguard.CloseIfBody(w, r)
	switch a.outcome {
	case busy:
		w.Header().Set("Retry-After", "1")
		writeError(w, r, errorPage{Status: http.StatusServiceUnavailable, Title: "Busy", Message: "Too many API keys are being checked at once right now. Try again in a moment."})
	case tooMany:
		w.Header().Set("Retry-After", "60")
		writeError(w, r, errorPage{Status: http.StatusTooManyRequests, Title: "Too many wrong keys", Message: "Too many wrong API keys came from your address. Wait a minute and try again with the right one."})
	case wrongKey:
		hr.challenge(w, r)
		writeError(w, r, errorPage{Status: http.StatusUnauthorized, Title: "Wrong API key", Message: "The name or key given is not one this site accepts."})
	case denied:
		hr.deniedPage(w, r, a, r.URL.RequestURI())
	default:
		hr.requireSignIn(w, r)
	}
}

// challenge offers Basic credentials to clients that were refused, on
// hosts that accept API keys.
// Browsers' own requests (which carry Sec-Fetch-Mode) get none: a
// challenge would pop up the browser's password dialog over the page.
func (hr *hostRoute) challenge(w http.ResponseWriter, r *http.Request) {
	_, _, gaveKey := r.BasicAuth()
	if hr.gate != nil && hr.gate.keys != nil && (gaveKey || r.Header.Get("Sec-Fetch-Mode") == "") {
		w.Header().Set("WWW-Authenticate", `Basic realm=`+strconv.Quote(hr.gate.realm)+`, charset="UTF-8"`)
	}
}

// requireSignIn sends a browser to the sign-in form, and tells any other
// client that it needs credentials.
func (hr *hostRoute) requireSignIn(w http.ResponseWriter, r *http.Request) {
	if signin := hr.signInPath(); signin != "" && isNavigation(r) {
		q := url.Values{"redirect": {r.URL.RequestURI()}}
		http.Redirect(w, r, signin+"?"+q.Encode(), http.StatusSeeOther)
		return
	}
	hr.challenge(w, r)
	p := errorPage{Status: http.StatusUnauthorized, Title: "Sign-in required", Message: "Sign in to use this site."}
	switch {
	case hr.serve != nil:
		p.Message = hr.serve.signInMessage()
	case hr.signInPath() != "":
		p.Retry = hr.signInPath()
	default:
		p.Message = "This site needs an API key."
	}
	writeError(w, r, p)
}

// signInPath is where a browser signs in on the host: AT Protocol's form
// (which offers the host's providers too), or the only provider's; ""
// on a host without sign-in.
func (hr *hostRoute) signInPath() string {
	switch {
	case hr.serve != nil:
		return ""
	case hr.host.ATProto != nil:
		return "/@/signin"
	case len(hr.providers) > 0:
		return hr.providers[0].prefix + "signin"
	}
	return ""
}

// isNavigation reports whether a browser is loading a page (rather than a
// script or program fetching data), so that a redirect to a sign-in form
// is what it wants.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if m := r.Header.Get("Sec-Fetch-Mode"); m != "" {
		return m == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

type deniedPageData struct {
	AppName  string
	Handle   string
	DID      string
	CSRF     string
	Redirect string
	// Unchecked: the handle is one the rules name, but it could not be
	// verified again lately.
	Unchecked bool
	// SignInAgain, when set, replaces the sign-out form with a link to
	// sign in with another account (the account has no session here).
	SignInAgain string
	// Provider and Action are set for another provider's account: its
	// name for people, and its sign-out route.
	Provider, Action string
}

// deniedPage tells a signed-in person that their account may not use the
// site, naming it (people often hold several) and offering to sign out.
// After signing out, the browser returns to back.
func (hr *hostRoute) deniedPage(w http.ResponseWriter, r *http.Request, a admission, back string) {
	sess := *a.account
	unchecked := a.verdict == access.HandleUnchecked
	if wantsJSON(r) || !acceptsHTML(r) {
		msg := "The account " + cmp.Or(sess.DID, sess.Email, sess.Provider+":"+sess.Subject) + " may not use this site."
		if unchecked {
			msg = "The handle of the account " + sess.DID + " could not be verified lately; sign in again."
		}
		writeError(w, r, errorPage{Status: http.StatusForbidden, Title: "Not allowed", Message: msg})
		return
	}
	page := deniedPageData{
		AppName:   hr.host.ShortName,
		Handle:    sess.Handle,
		DID:       sess.DID,
		CSRF:      csrfToken(sess.ID),
		Redirect:  SafeRedirect(back),
		Unchecked: unchecked,
	}
	if sess.Provider != "" {
		page.Provider, page.Action = providerLabel(sess.Provider), providerPrefix(sess.Provider)+"signout"
		page.Handle, page.DID = cmp.Or(sess.Email, sess.Name, "an account without a verified email"), sess.Provider+":"+sess.Subject
	}
	render(w, http.StatusForbidden, "denied.html", page)
}

func acceptsHTML(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return a == "" || strings.Contains(a, "text/html") || strings.Contains(a, "*/*")
}

// forwardAuth answers an auth subrequest from a proxy in front (nginx
// auth_request, Traefik forwardAuth, Caddy forward_auth): 200 with the
// identity headers for an admitted request, 401 or 403 otherwise. Nothing
// else: nginx turns any other status, redirects included, into a 500.
// Traefik and Caddy show a refusal's body to the visitor, so it is the
// same page ioproxy shows when it is the only proxy.
func (hr *hostRoute) forwardAuth(w http.ResponseWriter, r *http.Request) {
	sess, provs, err := hr.signedIn(r)
	if err != nil {
		// A 503 would be a 500 in nginx; a 401 would send people to a
		// sign-in that cannot work either. 403 says "not now".
		writeError(w, r, errorPage{Status: http.StatusForbidden, Title: "Sign-in unavailable", Message: "Your session could not be looked up just now. Try again in a moment."})
		return
	}
	a := hr.admit(r, sess, provs, publicPathsIgnored)
	switch a.outcome {
	case admitted:
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Type", "application/json")
		// Proxy-Session is for backends, never for browsers (a script on
		// the page could read it here): only a proxy listed in
		// trusted_proxies gets it, to pass on.
		hr.tellIdentity(newHeaderValues(h), a.session, a.providers, a.keyUser, hr.routes.trusted(r))
		body := map[string]string{}
		for _, f := range forwardAuthBody {
			if vv, ok := h[f.header]; ok {
				body[f.field] = vv[0]
			}
		}
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(body)
	case denied:
		hr.deniedPage(w, r, a, hr.routes.forwardedURI(r))
	case tooMany:
		// 429 would become a 500 in nginx; 403 says as much.
		writeError(w, r, errorPage{Status: http.StatusForbidden, Title: "Too many wrong keys", Message: "Too many wrong API keys came from your address. Wait a minute and try again with the right one."})
	case busy:
		// 503 would become a 500 in nginx; 403 says as much.
		writeError(w, r, errorPage{Status: http.StatusForbidden, Title: "Busy", Message: "Too many API keys are being checked at once right now. Try again in a moment."})
	default:
		hr.challenge(w, r)
		p := errorPage{Status: http.StatusUnauthorized, Title: "Sign-in required", Message: "Sign in to use this site."}
		if a.outcome == wrongKey {
			p.Title, p.Message = "Wrong API key", "The name or key given is not one this site accepts."
		} else if signin := hr.signInPath(); signin != "" {
			p.Retry = signin + "?" + url.Values{"redirect": {SafeRedirect(hr.routes.forwardedURI(r))}}.Encode()
			if isNavigation(r) {
				// A redirect would be a 500 in nginx (which drops this
				// header anyway); Traefik and Caddy pass the answer on, and
				// browsers follow Refresh as they would a redirect.
				w.Header().Set("Refresh", "0; url="+p.Retry)
			}
		}
		writeError(w, r, p)
	}
}

// forwardAuthBody names the JSON fields of an admitted forward-auth
// answer's body and the identity header each repeats.
var forwardAuthBody = []struct{ field, header string }{
	{"did", contract.UserDID},
	{"handle", contract.UserHandle},
	{"apikey_user", contract.APIKeyUser},
	{"email", contract.UserEmail},
	{"subject", contract.UserSubject},
}

// forwardedURI is the page a forward-auth request is about, as a trusted
// proxy in front names it (Traefik and Caddy: X-Forwarded-Uri; the nginx
// example: X-Original-URI). It is only ever a same-site redirect target,
// through SafeRedirect.
func (routes *Routes) forwardedURI(r *http.Request) string {
	if !routes.trusted(r) {
		return ""
	}
	if u := r.Header.Get("X-Forwarded-Uri"); u != "" {
		return u
	}
	return r.Header.Get("X-Original-Uri")
}

// ATProtoSessionAdmitted reports whether an AT Protocol session may still
// call its PDS as the routes stand: its host is still configured, and
// the host's require_atproto (if any) still names the account. A handle
// whose last check is old counts as named: the call starts a refresh in
// the background that checks it again, and the next call or page is
// judged by what it found.
func (routes *Routes) ATProtoSessionAdmitted(sess sessions.Session) bool {
	hr, ok := routes.hosts[sess.Host]
	if !ok || sess.Provider != "" {
		return false
	}
	g := hr.gate
	switch {
	case g == nil:
		return true
	case g.rules == nil:
		return false // keys alone admit on this host, never a session
	}
	v := g.rules.Judge(access.Account{DID: sess.DID, Handle: sess.Handle, HandleChecked: sess.HandleChecked()}, hr.router.now())
	return v != access.NotNamed
}
