package ingress

import (
	"net/http"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/atproto/scope"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/sessions"
)

// Re-consent: the host's scopes ask for more than a session was granted
// (the operator added a permission after the user signed in). The app
// sees it in User-Scope and sends the user to /@/signin?redirect=…; a
// signed-in user is taken straight to the authorization server, with the
// account as login_hint, and comes back to the page with the new grant.
// The old session stays until then: declined, it goes on as it was.

// missingScopes returns the host's scopes that sess was not granted, as
// the permission grammar reads them (so spellings do not matter).
// Permission sets (include:) are left out: the server grants what they
// expand to, never the include: itself, and asking again would never end.
func missingScopes(configured []string, granted string) []string {
	have := map[scope.Scope]bool{}
	for _, g := range strings.Fields(granted) {
		if p, err := scope.Parse(g); err == nil {
			have[p] = true
		}
	}
	var missing []string
	for _, c := range configured {
		p, err := scope.Parse(c)
		if err != nil || p.Resource() == scope.Include || have[p] {
			continue
		}
		missing = append(missing, c)
	}
	return missing
}

// wantsConsent returns the host's scopes that sess lacks and that its
// sign-in did not ask for already: those a re-consent may obtain. A
// session whose server granted less than it asked is not asked again
// until the host asks for more.
func (s *SignIn) wantsConsent(sess sessions.Session) []string {
	if sess.Asked == s.cfg.Host.ATProto.Scope() {
		return nil
	}
	return missingScopes(s.cfg.Host.ATProto.Scopes, sess.Scope)
}

// reconsent starts a sign-in of sess's own account for the host's
// scopes, keeping sess. It reports false when sess needs none.
func (s *SignIn) reconsent(w http.ResponseWriter, r *http.Request, sess sessions.Session, redirect string) bool {
	missing := s.wantsConsent(sess)
	if len(missing) == 0 {
		return false
	}
	s.cfg.Recorder.SignIn(observe.SignInStarted)
	req, authURL, err := s.cfg.Client.Authorize(r.Context(), sess.DID)
	if err != nil {
		// The session goes on as it was; the app sees the scope still
		// missing.
		s.cfg.Recorder.SignIn(observe.SignInFailed)
		s.cfg.Logger.Info("re-consent could not start", "host", s.cfg.Host.Hostname, "did", sess.DID, "err", err)
		http.Redirect(w, r, redirect, http.StatusSeeOther)
		return true
	}
	p := s.newPending(req, redirect, clientOf(r))
	p.Replaces = sess.ID
	if !s.beginSignIn(w, r, p) {
		return true
	}
	s.cfg.Logger.Info("re-consent started: the host asks for scopes the session was not granted", "host", s.cfg.Host.Hostname, "did", sess.DID, "missing", strings.Join(missing, " "))
	setCookie(w, r, stateCookie(r), p.Binding, time.Until(req.Expiry))
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, authURL, http.StatusSeeOther)
	return true
}

// reconsentStillWanted refuses the callback of a re-consent whose session
// ended meanwhile (signed out): the flow was for that session, and must
// not sign the browser back in.
func (s *SignIn) reconsentStillWanted(r *http.Request, p sessions.Pending) *signInFailure {
	if p.Replaces == "" {
		return nil
	}
	if _, err := s.cfg.Sessions.Get(r.Context(), p.Replaces); err != nil {
		return &signInFailure{http.StatusBadRequest, "You signed out while granting more permissions, so this sign-in was not finished. Sign in again if you want to.", err}
	}
	return nil
}

// replaced ends, after a re-consent's new session is stored, the session
// it started from (if it is still this host's, for the same account).
func (s *SignIn) replaced(r *http.Request, p sessions.Pending, next sessions.Session) {
	if p.Replaces == "" {
		return
	}
	old, err := s.cfg.Sessions.Get(r.Context(), p.Replaces)
	if err != nil || old.Host != s.cfg.Host.Hostname || old.DID != next.DID {
		return
	}
	if err := s.cfg.Sessions.End(r.Context(), old); err != nil {
		s.cfg.Logger.Warn("re-consent: the old session was not ended", "did", old.DID, "err", err)
	}
}

// declinedReconsent reports whether a failed callback is a re-consent the
// user declined: its old session goes on, and the browser back to its
// page.
func declinedReconsent(r *http.Request, p sessions.Pending) bool {
	return p.Replaces != "" && r.URL.Query().Get("error") == "access_denied"
}
