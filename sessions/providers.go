package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The sessions of OAuth providers other than AT Protocol (a host's
// oauth "<name>" blocks) live beside the AT Protocol ones, in the same
// store and under the same limits, and go through the same Lifecycle:
// made from a grant, refreshed one at a time (under the store's lock,
// across replicas), ended with revocation. What differs is the client:
// a provider's tokens are plain bearer tokens, refreshed with the
// provider's token endpoint, and there is no account to check between.

// ProviderClient is what the Lifecycle needs of a provider's OAuth
// client (provider.Client is one).
type ProviderClient interface {
	// Refresh trades a refresh token for new tokens, for the account
	// whose subject is given (an ID token in the answer must be its). It
	// wraps ErrGrantDead when the session cannot go on: the provider
	// answered that the refresh token is no longer good (invalid_grant),
	// or its answer cannot be trusted (an ID token that fails its
	// checks, or names another subject). Any other error passes: the
	// session keeps the tokens it has.
	Refresh(ctx context.Context, refreshToken, subject string) (ProviderTokens, error)
	// Revoke revokes a token, when the provider can.
	Revoke(ctx context.Context, token string) error
}

// ProviderTokens are a provider's answer to a sign-in or a refresh.
type ProviderTokens struct {
	AccessToken, RefreshToken, Scope string
	// Expiry is zero when the provider gave no lifetime.
	Expiry time.Time
	// IdentityUnchecked: the answer had an ID token that could not be
	// checked now (its key not yet had), so nothing says it is still the
	// session's account. The session goes on, but the
	// maxUncheckedRefreshes-th such answer in a row ends it.
	// IdentityChecked: its ID token was checked and names the session's
	// account, which starts the count again; an answer with neither
	// (no ID token) leaves the count as it is.
	IdentityUnchecked, IdentityChecked bool
}

// maxUncheckedRefreshes bounds the refreshes in a row whose ID token
// could not be checked: past it, the session ends (its new tokens
// revoked) rather than go on for ever on tokens no check ties to its
// account.
const maxUncheckedRefreshes = 3

// ErrGrantDead is a provider's refusal of a refresh token; the session
// ends.
var ErrGrantDead = errors.New("the provider no longer accepts the session's refresh token")

// ErrNoRefreshToken is a provider session whose access token has expired
// and that has no refresh token: it can make no call until the user
// signs in again.
var ErrNoRefreshToken = errors.New("the access token has expired and the provider gave no refresh token")

// noRefreshToken is ErrNoRefreshToken for sess.
func noRefreshToken(sess Session) error {
	return fmt.Errorf("the %s session: %w: sign in again", sess.Provider, ErrNoRefreshToken)
}

// ProviderGrant is what a finished sign-in with a provider makes a
// session of.
type ProviderGrant struct {
	ProviderTokens
	Host, Provider string
	// Issuer and ClientID name the provider and ioproxy's client there.
	Issuer, ClientID string
	// Subject, Email (verified only) and Name are the account's.
	Subject, Email, Name string
}

// providerTokenLife is how long a provider's access token is taken to
// live when the provider says nothing (an hour, as most do).
const providerTokenLife = time.Hour

// tokenExpiry is when a provider's access token expires: as it said, or
// providerTokenLife from now.
func (p ProviderTokens) tokenExpiry(now time.Time) time.Time {
	if p.Expiry.IsZero() {
		return now.Add(providerTokenLife)
	}
	return p.Expiry
}

// CreateProvider makes and stores the session of a provider's grant, as
// Create does for AT Protocol.
func (t *Lifecycle) CreateProvider(ctx context.Context, g ProviderGrant) (Session, error) {
	now := t.cfg.Now()
	sess := Session{
		Host: g.Host, Provider: g.Provider, Subject: g.Subject, Email: g.Email, Name: g.Name,
		Issuer: g.Issuer, ClientID: g.ClientID, Scope: g.Scope,
		AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, TokenExpiry: g.tokenExpiry(now),
	}
	if sess.RefreshToken == "" {
		// Without a refresh token nothing can ask the provider again
		// whether the account may still sign in: the session lasts as
		// long as the provider's access token.
		sess.Expiry = sess.TokenExpiry
	}
	return t.create(ctx, now, sess)
}

// DiscardProvider revokes, in the background, a provider's grant that is
// not made a session (an account the host refuses).
func (t *Lifecycle) DiscardProvider(g ProviderGrant) {
	t.revoke(Session{Host: g.Host, Provider: g.Provider, Issuer: g.Issuer, ClientID: g.ClientID, AccessToken: g.AccessToken, RefreshToken: g.RefreshToken})
}

// refreshProvider is refresh's step for a provider session: its refresh
// token traded with the provider of its host, for the same subject, and
// the answer saved. A session without one has nothing to trade
// (ErrNoRefreshToken, which passes).
func (t *Lifecycle) refreshProvider(h heldRefresh) (Session, error) {
	cur := h.cur
	if cur.RefreshToken == "" {
		return Session{}, noRefreshToken(cur)
	}
	client, ok := t.providerClient(cur)
	if !ok {
		return t.end(h.ctx, cur, "its OAuth provider is no longer configured")
	}
	tctx, cancel := context.WithTimeout(h.ctx, tokenTimeout)
	tokens, err := client.Refresh(tctx, cur.RefreshToken, cur.Subject)
	cancel()
	switch {
	case errors.Is(err, ErrGrantDead):
		t.cfg.Recorder.TokenRefresh(false)
		return t.end(h.ctx, cur, err.Error())
	case err != nil:
		t.cfg.Recorder.TokenRefresh(false)
		return Session{}, fmt.Errorf("refresh the %s tokens of %s: %w", cur.Provider, cur.Subject, err)
	}
	if tokens.IdentityUnchecked && cur.UncheckedRefreshes+1 >= maxUncheckedRefreshes {
		t.cfg.Recorder.TokenRefresh(false)
		t.revoke(withTokens(cur, tokens))
		return t.end(h.ctx, cur, fmt.Sprintf("%d refreshes in a row answered ID tokens that could not be checked", maxUncheckedRefreshes))
	}
	return t.saveProviderTokens(h.ctx, h.saveBy, cur, tokens)
}

// withTokens is sess holding a refresh's tokens, to revoke them.
func withTokens(sess Session, tokens ProviderTokens) Session {
	sess.AccessToken = tokens.AccessToken
	if tokens.RefreshToken != "" {
		sess.RefreshToken = tokens.RefreshToken
	}
	return sess
}

// saveProviderTokens stores a provider refresh's tokens, tried again
// through a short store outage until saveBy.
func (t *Lifecycle) saveProviderTokens(ctx context.Context, saveBy time.Time, cur Session, tokens ProviderTokens) (Session, error) {
	now := t.cfg.Now()
	expiry := tokens.tokenExpiry(now)
	apply := func(s *Session) error {
		s.AccessToken, s.TokenExpiry = tokens.AccessToken, expiry
		if tokens.RefreshToken != "" {
			s.RefreshToken = tokens.RefreshToken
		}
		if tokens.Scope != "" {
			s.Scope = tokens.Scope
		}
		switch {
		case tokens.IdentityUnchecked:
			s.UncheckedRefreshes++
		case tokens.IdentityChecked:
			s.UncheckedRefreshes = 0
		}
		s.RefreshedAt, s.Expiry = now, now.Add(t.cfg.SessionLifetime)
		return nil
	}
	next, err := t.updateUntil(ctx, saveBy, cur.ID, apply)
	switch {
	case err == nil:
		t.cfg.Recorder.TokenRefresh(true)
		return next, nil
	case errors.Is(err, ErrNotFound):
		// Signed out meanwhile: the new tokens must not stay live.
		t.revoke(withTokens(cur, tokens))
		return Session{}, ErrEnded
	case errors.Is(err, ErrTooLarge):
		// As for an AT Protocol session (saveGrant): the new tokens
		// cannot be kept and the old refresh token may be spent.
		t.cfg.Recorder.TokenRefresh(false)
		t.revoke(withTokens(cur, tokens))
		return t.end(ctx, cur, err.Error())
	}
	t.cfg.Recorder.TokenRefresh(false)
	return Session{}, fmt.Errorf("save refreshed %s tokens of %s: %w", cur.Provider, cur.Subject, err)
}

// providerClient is the client of a provider session's provider on its
// host, if it is still configured.
func (t *Lifecycle) providerClient(sess Session) (ProviderClient, bool) {
	if t.cfg.Providers == nil {
		return nil, false
	}
	return t.cfg.Providers(sess)
}

// revokeProvider revokes a provider session's tokens in the background:
// the refresh token when there is one (which ends the grant at most
// providers), else the access token.
func (t *Lifecycle) revokeProvider(sess Session) {
	client, ok := t.providerClient(sess)
	token := sess.RefreshToken
	if token == "" {
		token = sess.AccessToken
	}
	if !ok || token == "" {
		return
	}
	t.running.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
		defer cancel()
		if err := client.Revoke(ctx, token); err != nil {
			t.cfg.Logger.Warn("revoke a provider token", "provider", sess.Provider, "err", err)
		}
	})
}
