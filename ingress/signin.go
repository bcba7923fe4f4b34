package ingress

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/ioproxy/ioproxy/atproto/identity"
	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/sessions"
)

// OAuthClient is what the sign-in routes need of a host's OAuth client;
// *oauth.Client is one.
type OAuthClient interface {
	ClientID() string
	Confidential() bool
	Authorize(ctx context.Context, input string) (*oauth.Request, string, error)
	Exchange(ctx context.Context, req *oauth.Request, code, iss string) (*oauth.Grant, error)
	Metadata(info oauth.MetadataInfo) oauth.ClientMetadata
}

var _ OAuthClient = (*oauth.Client)(nil)

// SignInConfig configures the sign-in routes of one host.
type SignInConfig struct {
	Host   config.Host
	Client OAuthClient
	// ClientKeys are the confidential client's keys, published at
	// /@/jwks.json (nil for the localhost client). A rotation stored
	// while the server runs shows there once ClientKeys holds it.
	ClientKeys *oauth.ClientKeys
	// BaseURL is the host's public origin, such as https://app.example.com.
	BaseURL string
	// Sessions keeps the sign-ins in progress and makes and ends sessions.
	Sessions *sessions.Lifecycle
	// Recorder is told how sign-ins go (observe.SignInStarted, …), for
	// metrics; observe.Discard when nil.
	Recorder observe.Recorder
	Logger   *slog.Logger
	Now      func() time.Time
}

// SignIn serves /@/signin, /@/callback, /@/client-metadata.json,
// /@/jwks.json and /@/signout for one host.
type SignIn struct {
	cfg SignInConfig
	mux *http.ServeMux

	// keyAlarmAt is when the unknown-client-key error was last logged
	// as an error: any authorization server can say it, so it must not
	// flood the log.
	keyAlarmMu sync.Mutex
	keyAlarmAt time.Time
}

// keyAlarmEvery bounds the unknown-client-key error lines; the others
// in between are warnings.
const keyAlarmEvery = 10 * time.Minute

// NewSignIn returns the sign-in handler of a host.
func NewSignIn(cfg SignInConfig) *SignIn {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Recorder == nil {
		cfg.Recorder = observe.Discard{}
	}
	s := &SignIn{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /@/signin", s.signinForm)
	s.mux.HandleFunc("POST /@/signin", s.signinStart)
	s.mux.HandleFunc("GET /@/callback", s.callback)
	s.mux.HandleFunc("GET /@/client-metadata.json", s.clientMetadata)
	s.mux.HandleFunc("GET /@/jwks.json", s.jwks)
	s.mux.HandleFunc("GET /@/signout", s.signoutForm)
	s.mux.HandleFunc("POST /@/signout", s.signout)
	s.mux.HandleFunc("/@/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, errorPage{Status: http.StatusNotFound, Title: "Not found", Message: "There is no such sign-in page."})
	})
	return s
}

func (s *SignIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A sign-in form is a small thing; a huge body is an attack (a
	// trickled one is cut by the listener's body limits).
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	s.mux.ServeHTTP(w, r)
}

type signinPage struct {
	AppName  string
	Handle   string
	Redirect string
	Error    string
	// Providers are the host's other ways to sign in (its oauth blocks).
	Providers []providerLink
}

// providerLink is a button to sign in with another provider.
type providerLink struct {
	Label, URL string
}

// providerLinks are the host's oauth blocks as sign-in buttons that come
// back to redirect.
func providerLinks(h config.Host, redirect string) []providerLink {
	var out []providerLink
	for _, p := range h.OAuth {
		out = append(out, providerLink{Label: providerLabel(p.Name), URL: providerPrefix(p.Name) + "signin?redirect=" + url.QueryEscape(redirect)})
	}
	return out
}

func (s *SignIn) signinForm(w http.ResponseWriter, r *http.Request) {
	redirect := SafeRedirect(r.URL.Query().Get("redirect"))
	if sess, ok, _ := lookupSession(s.cfg.Sessions, r, s.cfg.Host.Hostname); ok {
		if crossSite(r) && len(s.wantsConsent(sess)) > 0 {
			// Another site's link must not start a flow by itself: the
			// user presses the button (a POST, refused cross-site).
			w.Header().Set("Cache-Control", "no-store")
			render(w, http.StatusOK, "reconsent.html", signinPage{AppName: s.cfg.Host.ATProto.ClientName, Handle: sess.Handle, Redirect: redirect})
			return
		}
		if s.reconsent(w, r, sess, redirect) {
			return
		}
	}
	render(w, http.StatusOK, "signin.html", signinPage{
		AppName:   s.cfg.Host.ATProto.ClientName,
		Handle:    r.URL.Query().Get("handle"),
		Redirect:  redirect,
		Providers: providerLinks(s.cfg.Host, redirect),
	})
}

func (s *SignIn) signinStart(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, r, errorPage{Status: http.StatusBadRequest, Title: "Bad sign-in request", Message: "The sign-in form could not be read.", Retry: "/@/signin"})
		return
	}
	// Login CSRF: another site's form must not start a sign-in here (it
	// could sign the visitor into the attacker's account, or sign them
	// out). Browsers mark cross-site POSTs with Origin or Sec-Fetch-Site;
	// clients that send neither are not browsers, and need no protection.
	if crossSite(r) {
		writeError(w, r, errorPage{Status: http.StatusForbidden, Title: "Sign-in refused", Message: "This sign-in request came from another site. Use the sign-in form of this site.", Retry: "/@/signin"})
		return
	}
	input := strings.TrimSpace(r.PostForm.Get("handle"))
	redirect := SafeRedirect(r.PostForm.Get("redirect"))
	if r.PostForm.Get("reconsent") != "" {
		// The button of the re-consent page: the signed-in session stays
		// until the new grant arrives.
		if sess, ok, _ := lookupSession(s.cfg.Sessions, r, s.cfg.Host.Hostname); ok && s.reconsent(w, r, sess, redirect) {
			return
		}
		http.Redirect(w, r, redirect, http.StatusSeeOther)
		return
	}
	page := signinPage{AppName: s.cfg.Host.ATProto.ClientName, Handle: input, Redirect: redirect}
	if input == "" {
		page.Error = "Enter your handle, such as alice.bsky.social."
		render(w, http.StatusBadRequest, "signin.html", page)
		return
	}
	// A new sign-in always ends an old session in this browser (session
	// fixation: the new session gets a fresh id at the callback).
	if old, ok, _ := lookupSession(s.cfg.Sessions, r, s.cfg.Host.Hostname); ok {
		_ = s.cfg.Sessions.End(r.Context(), old)
	}
	clearSessionCookie(w, r)
	s.cfg.Recorder.SignIn(observe.SignInStarted)
	req, authURL, err := s.cfg.Client.Authorize(r.Context(), input)
	if err != nil {
		s.cfg.Recorder.SignIn(observe.SignInFailed)
		logged, why := loggableInput(input), error(err)
		if _, perr := identity.ParseInput(input); perr != nil && !strings.HasPrefix(input, "http") {
			// The error would quote the input.
			why = errors.New("not a handle, DID or server URL")
		}
		if oauth.IsUnknownClientKey(err) {
			s.unknownClientKey(w, page, err)
			return
		}
		s.cfg.Logger.Info("sign-in start failed", "host", s.cfg.Host.Hostname, "input", logged, "err", why)
		page.Error = userMessage(err, "Sign-in could not start. Please try again.")
		render(w, http.StatusBadGateway, "signin.html", page)
		return
	}
	p := s.newPending(req, redirect, clientOf(r))
	if !s.beginSignIn(w, r, p) {
		return
	}
	setCookie(w, r, stateCookie(r), p.Binding, time.Until(req.Expiry))
	http.Redirect(w, r, authURL, http.StatusSeeOther)
}

// beginSignIn keeps a sign-in in progress, or answers why it cannot
// (signInFlow.beginSignIn); a re-consent starts one too.
func (s *SignIn) beginSignIn(w http.ResponseWriter, r *http.Request, p sessions.Pending) bool {
	return s.flow().beginSignIn(w, r, p)
}

// flow is AT Protocol's sign-in on this host, for what it shares with the
// other providers' sign-ins.
func (s *SignIn) flow() signInFlow {
	return signInFlow{
		sessions: s.cfg.Sessions, recorder: s.cfg.Recorder, log: s.cfg.Logger,
		host: s.cfg.Host.Hostname, clientID: s.cfg.Client.ClientID(), prefix: "/@/",
		again: "Start again from the sign-in page.",
	}
}

// signInFlow is one host's sign-in with one provider: AT Protocol's
// (SignIn, under /@/) or another's (/@<name>/). Both go through its
// methods, so that a store that fails, a callback that is not this
// browser's and a sign-out from another site get one answer whichever
// way the person signed in.
type signInFlow struct {
	sessions *sessions.Lifecycle
	recorder observe.Recorder
	log      *slog.Logger
	// host, provider ("" for AT Protocol) and clientID are whose sign-ins
	// these are: a callback's sign-in in progress must be theirs.
	host, provider, clientID string
	// prefix is where the flow's routes are: "/@/" or "/@<name>/".
	prefix string
	// again ends a failed callback's message with how to try again: AT
	// Protocol's sign-in has a form to start from, a provider's has none.
	again string
}

// sessionCookieName is the cookie that holds the flow's session.
func (f signInFlow) sessionCookieName(r *http.Request) string {
	if f.provider == "" {
		return cookieName(r)
	}
	return providerCookie(r, f.provider)
}

// bindingCookieName is the cookie that binds the flow's sign-in in
// progress to the browser that started it.
func (f signInFlow) bindingCookieName(r *http.Request) string {
	if f.provider == "" {
		return stateCookie(r)
	}
	return providerStateCookie(r, f.provider)
}

// logAttrs are a log line's attributes kv, after whose sign-in it is.
func (f signInFlow) logAttrs(kv ...any) []any {
	attrs := []any{"host", f.host}
	if f.provider != "" {
		attrs = append(attrs, "provider", f.provider)
	}
	return append(attrs, kv...)
}

// beginSignIn keeps a sign-in in progress, or answers why it cannot. A
// store that holds all the sign-ins in progress it may (ErrFull: in all,
// or this client's share) is told apart from any other failure: it is a
// flood to wait out for minutes, which the store_full metric counts,
// where a store out of reach is worth trying again in a moment.
func (f signInFlow) beginSignIn(w http.ResponseWriter, r *http.Request, p sessions.Pending) bool {
	err := f.sessions.BeginSignIn(r.Context(), p)
	switch {
	case err == nil:
		return true
	case errors.Is(err, sessions.ErrFull):
		f.recorder.SignIn(observe.SignInStoreFull)
		f.log.Error("sign-in refused: too many sign-ins in progress", f.logAttrs("err", err)...)
		w.Header().Set("Retry-After", "60")
		writeError(w, r, errorPage{Status: http.StatusServiceUnavailable, Title: "Too many sign-ins", Message: "This site has too many sign-ins in progress right now. Please try again in a few minutes.", Retry: f.prefix + "signin"})
	default:
		f.log.Error("store pending sign-in", f.logAttrs("err", err)...)
		w.Header().Set("Retry-After", "5")
		writeError(w, r, errorPage{Status: http.StatusServiceUnavailable, Title: "Sign-in unavailable", Message: "Sign-in could not start: the session store is not reachable. Please try again in a moment.", Retry: f.prefix + "signin"})
	}
	return false
}

// withinSignInLimit counts a sign-in start or callback (what: "started",
// "finished") against the client's limiter, and answers 429 past it, for
// every sign-in route: each start makes ioproxy write to its store (and,
// for AT Protocol, fetch documents from servers the client names), each
// callback looks up the store and calls the authorization server.
func (hr *hostRoute) withinSignInLimit(w http.ResponseWriter, r *http.Request, limiter *rateLimiter, what, retry string) bool {
	if limiter.allow(hr.routes.clientKey(r)) {
		return true
	}
	w.Header().Set("Retry-After", "60")
	writeError(w, r, errorPage{Status: http.StatusTooManyRequests, Title: "Too many sign-in attempts", Message: "Too many sign-ins were " + what + " from your address. Wait a minute and try again.", Retry: retry})
	return false
}

func (s *SignIn) clientMetadata(w http.ResponseWriter, r *http.Request) {
	if !s.cfg.Client.Confidential() {
		writeError(w, r, errorPage{Status: http.StatusNotFound, Title: "No client metadata", Message: "This host signs in as a localhost development client, which has no metadata document."})
		return
	}
	a := s.cfg.Host.ATProto
	clientURI := a.ClientURI
	if clientURI == "" {
		clientURI = s.cfg.BaseURL
	}
	m := s.cfg.Client.Metadata(oauth.MetadataInfo{
		ClientName: a.ClientName, ClientURI: clientURI, LogoURI: a.LogoURI, TOSURI: a.TOSURI, PolicyURI: a.PolicyURI,
		JWKSURI: s.cfg.BaseURL + "/@/jwks.json",
	})
	writeJSON(w, m)
}

func (s *SignIn) jwks(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ClientKeys == nil {
		writeJSON(w, map[string]any{"keys": []any{}})
		return
	}
	b, err := s.cfg.ClientKeys.Ring().JWKS(s.cfg.Now())
	if err != nil {
		writeError(w, r, errorPage{Status: http.StatusInternalServerError, Message: "The key set could not be built."})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_ = json.NewEncoder(w).Encode(v)
}

type signoutPage struct {
	AppName  string
	Handle   string
	CSRF     string
	Redirect string
	// Action is where the form posts: /@/signout, or a provider's
	// /@<name>/signout, whose Provider (its name for people) and Email
	// (or display name) the page shows.
	Action   string
	Provider string
	Email    string
}

// csrfToken is derived from the session id, which only the browser and
// ioproxy know: a cross-site page can neither read nor compute it.
func csrfToken(sessionID string) string {
	h := sha256.Sum256([]byte("ioproxy-signout:" + sessionID))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

func (s *SignIn) signoutForm(w http.ResponseWriter, r *http.Request) {
	page := signoutPage{AppName: s.cfg.Host.ATProto.ClientName, Redirect: SafeRedirect(r.URL.Query().Get("redirect"))}
	if sess, ok, _ := lookupSession(s.cfg.Sessions, r, s.cfg.Host.Hostname); ok {
		page.Handle, page.CSRF = sess.Handle, csrfToken(sess.ID)
	}
	render(w, http.StatusOK, "signout.html", page)
}

// signout ends the AT Protocol session (signInFlow.signout).
func (s *SignIn) signout(w http.ResponseWriter, r *http.Request) {
	s.flow().signout(w, r, func() (*sessions.Session, error) {
		sess, ok, err := lookupSession(s.cfg.Sessions, r, s.cfg.Host.Hostname)
		if !ok {
			return nil, err
		}
		return &sess, nil
	})
}

// signout ends the flow's session, which lookup finds (nil without one),
// and clears the flow's cookies. It accepts a POST that carries the CSRF
// token of the session's confirmation page, or that a browser marks as
// coming from this very site (Origin, or Sec-Fetch-Site: same-origin), so
// that an app's own sign-out form works while no other site can sign its
// users out.
func (f signInFlow) signout(w http.ResponseWriter, r *http.Request, lookup func() (*sessions.Session, error)) {
	retry := f.prefix + "signout"
	if err := r.ParseForm(); err != nil {
		writeError(w, r, errorPage{Status: http.StatusBadRequest, Message: "The sign-out form could not be read."})
		return
	}
	sess, err := lookup()
	if err != nil {
		writeError(w, r, errorPage{Status: http.StatusServiceUnavailable, Message: "The session store is not reachable; you may still be signed in. Please try again in a moment.", Retry: retry})
		return
	}
	tokenOK := sess != nil && hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(csrfToken(sess.ID)))
	if !tokenOK && !sameOrigin(r) {
		writeError(w, r, errorPage{Status: http.StatusForbidden, Title: "Sign-out refused", Message: "This sign-out request did not come from this site. Use the sign-out button of the site itself.", Retry: retry})
		return
	}
	if sess != nil {
		if err := f.sessions.End(r.Context(), *sess); errors.Is(err, sessions.ErrUnavailable) {
			writeError(w, r, errorPage{Status: http.StatusServiceUnavailable, Message: "The session store is not reachable; you are still signed in. Please try again in a moment.", Retry: retry})
			return
		} else if err != nil {
			writeError(w, r, errorPage{Status: http.StatusInternalServerError, Message: "The session store failed; you may still be signed in. Please try again.", Retry: retry})
			return
		}
	}
	setCookie(w, r, f.sessionCookieName(r), "", -1)
	// A sign-in still in progress in this browser (a re-consent) ends
	// with the session.
	setCookie(w, r, f.bindingCookieName(r), "", -1)
	http.Redirect(w, r, SafeRedirect(r.PostForm.Get("redirect")), http.StatusSeeOther)
}

// sameOrigin reports whether the browser says the request comes from this
// host's own pages.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		return originIsHost(r, o)
	}
	return r.Header.Get("Sec-Fetch-Site") == "same-origin"
}

// crossSite reports whether the browser says the request comes from
// another origin (including a sibling subdomain, which may be another
// party's site).
func crossSite(r *http.Request) bool {
	fetchSite := r.Header.Get("Sec-Fetch-Site")
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		return !originIsHost(r, o)
	}
	if r.Header.Get("Origin") == "null" {
		// Pages with Referrer-Policy: no-referrer send Origin: null even
		// to themselves; Sec-Fetch-Site then tells.
		return fetchSite != "same-origin"
	}
	switch fetchSite {
	case "same-origin", "none":
		return false
	case "":
		// Old browsers send neither header; a Referer from another site
		// still gives a cross-site form away.
		if ref := r.Header.Get("Referer"); ref != "" {
			u, err := url.Parse(ref)
			return err != nil || !originIsHost(r, u.Scheme+"://"+u.Host)
		}
		return false
	}
	return true
}

func originIsHost(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	scheme := "http"
	if isHTTPS(r) {
		scheme = "https"
	}
	return u.Scheme == scheme && strings.EqualFold(u.Host, r.Host)
}

// maxRedirectLen bounds a return path; browsers and servers alike handle
// URLs of a few kilobytes.
const maxRedirectLen = 2048

// redirectTrick matches path starts that browsers read as another host:
// "//evil", "/\evil", "/ /evil", "/./\evil" and the like.
var redirectTrick = regexp.MustCompile(`^[/\\](?:[\s\v]*|\.{1,2})[/\\]`)

// SafeRedirect returns target if it is a same-site relative path, and "/"
// otherwise. Absolute URLs, scheme-relative URLs and backslash tricks are
// all refused, and so are paths with an escaped "/", "\" or "." (they
// read differently raw and decoded); paths under /@/ are refused so that
// a redirect cannot bounce into sign-out.
func SafeRedirect(target string) string {
	if len(target) > maxRedirectLen {
		// Kept with every sign-in in progress: 10,000 of them at the
		// form's 16 KB would be 160 MB of store.
		return "/"
	}
	if target == "" || !strings.HasPrefix(target, "/") || redirectTrick.MatchString(target) {
		return "/"
	}
	for _, r := range target {
		// Browsers drop leading and trailing spaces and controls, and tabs
		// and newlines anywhere, before they read a Location: "/@ " is
		// "/@" to them. A path written by an app has none of them raw.
		if r <= 0x20 || r == 0x7f || r == '\\' {
			return "/"
		}
	}
	if escapesSeparator(target) {
		return "/"
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	// The same checks on the decoded path: "/%2F/evil" or "/%5Cevil" is
	// harmless in our Location header, but becomes "//evil" for a backend
	// that redirects again on the decoded path.
	if redirectTrick.MatchString(u.Path) || strings.ContainsAny(u.Path, "\\") {
		return "/"
	}
	for _, r := range u.Path {
		if r < 0x20 || r == 0x7f {
			return "/"
		}
	}
	// As the browser sends it and as the router reads it: "/@/..;" is
	// /@/… on the wire though the router reads "/"; "/@;//.." is "/@;/"
	// once the browser removed its dot segments (keeping empty ones), and
	// "/@/" to the router; "/@;x/signout" is /@/signout to the router.
	// http.Redirect cleans everything before "?" as a path, a fragment
	// included: "/0#0/../@" would leave as "/@".
	if _, frag, ok := strings.Cut(target, "#"); ok && hasDotSegment(frag) {
		return "/"
	}
	// ResolveReference removes dot segments as RFC 3986 says, as browsers do.
	root := url.URL{Scheme: "https", Host: "site.invalid", Path: "/"}
	sent := root.ResolveReference(&url.URL{Path: u.Path}).Path
	for _, p := range []string{u.Path, sent} {
		if ownPath(p) || ownPath(normalizePath(p)) || redirectTrick.MatchString(p) {
			return "/"
		}
	}
	return target
}

// escapesSeparator reports whether the path of target (before "?" or
// "#") holds an escaped "/", "" or ".". Without them the path has the
// same segments and dot segments raw and decoded: http.Redirect and the
// browser clean the raw one, where "/x/b%2Fc/../../@/" is "/@/", while
// the decoded one reads "/x/@/".
func escapesSeparator(target string) bool {
	p, _, _ := strings.Cut(target, "?")
	p, _, _ = strings.Cut(p, "#")
	p = strings.ToLower(p)
	return strings.Contains(p, "%2f") || strings.Contains(p, "%5c") || strings.Contains(p, "%2e")
}

// unknownClientKey answers a sign-in that the authorization server
// refused because it does not know the key our client signs with: an
// operator's problem, which the log says plainly, and which the person
// signing in can only wait out.
func (s *SignIn) unknownClientKey(w http.ResponseWriter, page signinPage, err error) {
	now := s.cfg.Now()
	s.keyAlarmMu.Lock()
	alarm := now.Sub(s.keyAlarmAt) >= keyAlarmEvery
	if alarm {
		s.keyAlarmAt = now
	}
	s.keyAlarmMu.Unlock()
	if alarm {
		s.cfg.Logger.Error("sign-in refused: the authorization server holds an older key set of this client; "+
			"it refuses every sign-in until its cache of /@/jwks.json expires. "+
			"Was the OAuth client key replaced (a new data dir, a replica with its own key, a store moved without ioproxy sessions migrate)? "+
			"To change it on purpose, ioproxy key rotate publishes the next key a day before it signs. "+
			"If the server named is not one your users sign in with, someone's own server may be saying so; further refusals within 10 minutes are warnings",
			"host", s.cfg.Host.Hostname, "err", err)
	} else {
		s.cfg.Logger.Warn("sign-in refused again: the authorization server does not know this client's key", "host", s.cfg.Host.Hostname, "err", err)
	}
	page.Error = "This site's sign-in key changed recently, and your account's server has not picked up the new one yet. Please try again later."
	w.Header().Set("Retry-After", "600")
	render(w, http.StatusServiceUnavailable, "signin.html", page)
}

// hasDotSegment reports whether s has a "." or ".." between slashes.
func hasDotSegment(s string) bool {
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// ownPath reports whether p is under ioproxy's own /@/ routes.
func ownPath(p string) bool { return p == "/@" || strings.HasPrefix(p, "/@/") }

// loggableInput is what the log may say of a sign-in form's input: the
// input itself when it is a handle, a DID or a server URL, its length
// otherwise (people type passwords into the handle box).
func loggableInput(input string) string {
	if _, err := identity.ParseInput(input); err == nil {
		return input
	}
	if u, err := url.Parse(input); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil {
		return u.Scheme + "://" + u.Host
	}
	return fmt.Sprintf("(%d characters that are not a handle, DID or URL)", len(input))
}

// userMessage picks the message to show a person for err.
func userMessage(err error, fallback string) string {
	var ue *oauth.UserError
	if errors.As(err, &ue) && ue.Message != "" {
		return ue.Message
	}
	return fallback
}
