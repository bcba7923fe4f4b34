package ingress

import (
	"crypto/hmac"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/ioproxy/ioproxy/access"
	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/sessions"
)

// signInFailure is why a callback could not sign the browser in: what the
// person is shown, and what the log says.
type signInFailure struct {
	status int
	msg    string
	err    error
}

// callback finishes a sign-in: the pending request it belongs to, the code
// exchange and its checks, the host's rules, then the session.
func (s *SignIn) callback(w http.ResponseWriter, r *http.Request) {
	p, fail := s.takePending(w, r)
	var grant *oauth.Grant
	if fail == nil {
		fail = s.reconsentStillWanted(r, p)
	}
	if fail == nil {
		grant, fail = s.exchange(r, p)
		if fail != nil && declinedReconsent(r, p) {
			// Only past takePending's checks: the state is this
			// browser's, on this host.
			s.cfg.Recorder.SignIn(observe.SignInFailed)
			s.cfg.Logger.Info("re-consent declined: the session goes on as it was", "host", s.cfg.Host.Hostname)
			http.Redirect(w, r, SafeRedirect(p.Redirect), http.StatusSeeOther)
			return
		}
	}
	if fail != nil {
		s.flow().refuseCallback(w, r, fail)
		return
	}
	now := s.cfg.Now()
	if rules := s.rules(); rules != nil && rules.Judge(access.Account{DID: grant.DID, Handle: grant.Handle, HandleChecked: now}, now) != access.Admitted {
		// An account the host refuses gets no session: it could do
		// nothing with one, and anyone can mint accounts to fill the
		// store with.
		s.cfg.Sessions.Discard(s.grantOf(grant, p))
		s.cfg.Recorder.SignIn(observe.SignInFailed)
		s.cfg.Logger.Info("sign-in refused: the account may not use this host", "host", s.cfg.Host.Hostname, "did", grant.DID, "handle", grant.Handle)
		s.refusedPage(w, r, grant, p.Redirect)
		return
	}
	sess, ok := s.storeSession(w, r, s.grantOf(grant, p))
	if !ok {
		return
	}
	s.replaced(r, p, sess)
	if missing := missingScopes(s.cfg.Host.ATProto.Scopes, sess.Scope); len(missing) > 0 {
		s.cfg.Logger.Info("the authorization server granted less than the host asks for; the session goes on without it", "host", s.cfg.Host.Hostname, "did", sess.DID, "missing", strings.Join(missing, " "))
	}
	s.cfg.Recorder.SignIn(observe.SignInCompleted)
	s.cfg.Logger.Info("signed in", "host", s.cfg.Host.Hostname, "did", sess.DID, "handle", sess.Handle)
	setSessionCookie(w, r, sess.ID, sess.Expiry)
	http.Redirect(w, r, SafeRedirect(p.Redirect), http.StatusSeeOther)
}

// takePending finds the AT Protocol sign-in a callback belongs to
// (signInFlow.takePending), which must hold its DPoP key.
func (s *SignIn) takePending(w http.ResponseWriter, r *http.Request) (sessions.Pending, *signInFailure) {
	p, fail := s.flow().takePending(w, r)
	if fail == nil && p.DPoPKey == nil {
		return p, &signInFailure{http.StatusInternalServerError, "The stored sign-in is damaged. Please try again.", errors.New("pending sign-in without a DPoP key")}
	}
	return p, fail
}

// takePending finds the sign-in a callback belongs to, deleting it first,
// so that a replayed callback (same state or code) finds nothing; and it
// checks that this browser started it, with this flow.
func (f signInFlow) takePending(w http.ResponseWriter, r *http.Request) (sessions.Pending, *signInFailure) {
	state := r.URL.Query().Get("state")
	if state == "" {
		return sessions.Pending{}, &signInFailure{http.StatusBadRequest, "This sign-in link is incomplete, or the sign-in did not start in this browser. " + f.again, errors.New("callback without state")}
	}
	p, err := f.sessions.FinishSignIn(r.Context(), state)
	switch {
	case errors.Is(err, sessions.ErrNotFound):
		return p, &signInFailure{http.StatusBadRequest, "This sign-in link was already used or is unknown. " + f.again, err}
	case errors.Is(err, sessions.ErrExpired):
		return p, &signInFailure{http.StatusBadRequest, "This sign-in took too long and expired. " + f.again, err}
	case err != nil:
		f.log.Error("take pending sign-in", f.logAttrs("err", err)...)
		return p, &signInFailure{http.StatusServiceUnavailable, "The session store is not reachable. Please try again in a moment.", err}
	}
	binding := f.bindingCookieName(r)
	setCookie(w, r, binding, "", -1)
	// The browser must hold the random binding set when this sign-in
	// started, so a callback URL made by someone else (with their code)
	// cannot sign this browser into their account.
	if v := cookieValue(r, binding); v == "" || p.Binding == "" || !hmac.Equal([]byte(v), []byte(p.Binding)) {
		return p, &signInFailure{http.StatusBadRequest, "This sign-in did not start in this browser: another browser started it. " + f.again, errors.New("state cookie missing or different")}
	}
	if p.Host != f.host || p.Provider != f.provider || p.ClientID != f.clientID {
		return p, &signInFailure{http.StatusBadRequest, "This sign-in belongs to another site. " + f.again, errors.New("pending sign-in of another host, provider or client")}
	}
	return p, nil
}

// refuseCallback answers a callback that signs no one in: what went
// wrong, and a link to sign in again.
func (f signInFlow) refuseCallback(w http.ResponseWriter, r *http.Request, fail *signInFailure) {
	f.recorder.SignIn(observe.SignInFailed)
	f.log.Info("sign-in failed", f.logAttrs("err", fail.err)...)
	writeError(w, r, errorPage{Status: fail.status, Title: "Sign-in failed", Message: fail.msg, Retry: f.prefix + "signin"})
}

// exchange trades the callback's code for tokens, which Exchange checks
// (iss, the account, its issuer).
func (s *SignIn) exchange(r *http.Request, p sessions.Pending) (*oauth.Grant, *signInFailure) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		msg := "The sign-in was not completed."
		if e == "access_denied" {
			msg = "You declined the sign-in, so you are not signed in."
		}
		return nil, &signInFailure{http.StatusForbidden, msg, errors.New("authorization server: " + e + ": " + q.Get("error_description"))}
	}
	code := q.Get("code")
	if code == "" {
		return nil, &signInFailure{http.StatusBadRequest, "This sign-in link is incomplete. Start again from the sign-in page.", errors.New("callback without code")}
	}
	grant, err := s.cfg.Client.Exchange(r.Context(), requestOf(p), code, q.Get("iss"))
	if err != nil {
		return nil, &signInFailure{http.StatusBadGateway, userMessage(err, "The sign-in could not be completed. Please try again."), err}
	}
	return grant, nil
}

// storeSession makes the grant a session, or answers why it cannot be
// kept. The account's oldest sessions on this host may end to make room.
func (s *SignIn) storeSession(w http.ResponseWriter, r *http.Request, g sessions.Grant) (sessions.Session, bool) {
	sess, err := s.cfg.Sessions.Create(r.Context(), g)
	switch {
	case errors.Is(err, sessions.ErrTooLarge):
		// A server anyone can run chose these sizes; keeping them would
		// let one sign-in cost megabytes for a month.
		s.cfg.Recorder.SignIn(observe.SignInFailed)
		s.cfg.Logger.Info("sign-in failed", "host", s.cfg.Host.Hostname, "err", err)
		writeError(w, r, errorPage{Status: http.StatusBadGateway, Title: "Sign-in failed", Message: "Your account's server sent an answer too large to keep, so you were not signed in. Its operators can make their tokens smaller.", Retry: "/@/signin"})
		return sess, false
	case errors.Is(err, sessions.ErrFull):
		s.cfg.Recorder.SignIn(observe.SignInStoreFull)
		s.cfg.Logger.Error("sign-in refused: the session store is full", "host", s.cfg.Host.Hostname, "did", g.DID, "err", err)
		w.Header().Set("Retry-After", "300")
		writeError(w, r, errorPage{Status: http.StatusServiceUnavailable, Title: "Sign-in unavailable", Message: "This site holds as many sessions as it can right now, so you were not signed in. Please try again later.", Retry: "/@/signin"})
		return sess, false
	case err != nil:
		s.cfg.Recorder.SignIn(observe.SignInFailed)
		s.cfg.Logger.Info("sign-in failed", "host", s.cfg.Host.Hostname, "err", err)
		writeError(w, r, errorPage{Status: http.StatusServiceUnavailable, Title: "Sign-in failed", Message: "The session store is not reachable. Please try again in a moment.", Retry: "/@/signin"})
		return sess, false
	}
	return sess, true
}

// newPending is what a sign-in in progress keeps of its authorization
// request, until the callback.
func (s *SignIn) newPending(req *oauth.Request, redirect, client string) sessions.Pending {
	return sessions.Pending{
		State: req.State, Host: s.cfg.Host.Hostname, ClientID: s.cfg.Client.ClientID(),
		Issuer: req.Issuer, ExpectedDID: req.ExpectedDID, Handle: req.Handle, PDS: req.PDS,
		PKCEVerifier: req.PKCEVerifier, DPoPKey: req.DPoPKey,
		Redirect: redirect, Client: client, Binding: sessions.NewToken(),
		CreatedAt: s.cfg.Now(), Expiry: req.Expiry,
	}
}

// requestOf is the authorization request a pending sign-in keeps.
func requestOf(p sessions.Pending) *oauth.Request {
	return &oauth.Request{
		State: p.State, Issuer: p.Issuer, ExpectedDID: p.ExpectedDID, Handle: p.Handle, PDS: p.PDS,
		PKCEVerifier: p.PKCEVerifier, DPoPKey: p.DPoPKey, Expiry: p.Expiry,
	}
}

// grantOf is what the callback's grant makes a session of, on this host.
func (s *SignIn) grantOf(g *oauth.Grant, p sessions.Pending) sessions.Grant {
	return sessions.Grant{Grant: g, Host: s.cfg.Host.Hostname, ClientID: s.cfg.Client.ClientID(), DPoPKey: p.DPoPKey, Asked: s.cfg.Host.ATProto.Scope()}
}

// rules are the host's require_atproto rules, nil without them.
func (s *SignIn) rules() *access.Rules {
	if s.cfg.Host.Access == nil {
		return nil
	}
	return s.cfg.Host.Access.Rules
}

// refusedPage tells a person who just signed in with an account the host
// refuses which account it was, and offers to sign in with another: no
// session was kept, so there is nothing to sign out of here.
func (s *SignIn) refusedPage(w http.ResponseWriter, r *http.Request, g *oauth.Grant, back string) {
	if wantsJSON(r) || !acceptsHTML(r) {
		writeError(w, r, errorPage{Status: http.StatusForbidden, Title: "Not allowed", Message: "The account " + g.DID + " may not use this site."})
		return
	}
	render(w, http.StatusForbidden, "denied.html", deniedPageData{
		AppName:  s.cfg.Host.ShortName,
		Handle:   g.Handle,
		DID:      g.DID,
		Redirect: SafeRedirect(back),
		// No session: the page offers another sign-in instead of a
		// sign-out.
		SignInAgain: "/@/signin?" + url.Values{"redirect": {SafeRedirect(back)}}.Encode(),
	})
}
