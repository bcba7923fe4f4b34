package sessions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/oauth"
)

// refresh is one refresh of a session, of either kind: the session read
// under its refresh lock, then the kind's step (refreshATProto,
// refreshProvider) that trades the refresh token and saves the answer.
//
// It runs under the session's refresh lock in the store, so that of the
// replicas sharing a store one refreshes at a time: the server rotates
// the refresh token, and a second refresh with the spent one would end
// the session. The holder reads the session past any cache (Latest),
// and a refresh that another replica just finished is used as it is, as
// is a session refreshed under MinRefreshInterval ago. A replica that
// dies holding the lock holds it no longer than the lease, and the next
// refresh starts from what is stored.
//
// ctx bounds the wait for the lock. The holder then has budgets of its
// own, all within the lease: checkTimeout for the read (and AT
// Protocol's account check), tokenTimeout for the token request (a slow
// check must not starve it: a request cut off after the server rotated
// the token loses the session), and until the lease nearly ends to save
// the answer, tried again through a short store outage.
func (t *Lifecycle) refresh(ctx context.Context, id, stale string) (Session, error) {
	h, err := t.holdRefresh(ctx, id)
	if err != nil {
		return Session{}, err
	}
	defer h.release()
	cur, now := h.cur, t.cfg.Now()
	if cur.AccessToken != stale && now.Before(cur.TokenExpiry) {
		return cur, nil // another request or replica refreshed it already
	}
	if refreshedRecently(cur, now) {
		// A server that rejects every token, or grants tokens that live
		// a second, must not make each request a refresh: an account
		// check, a token request and a store write. The caller goes on
		// with the tokens it has.
		t.cfg.Logger.Debug("token refresh skipped: the session was refreshed under a minute ago", "did", cur.DID, "provider", cur.Provider)
		return cur, nil
	}
	if cur.Provider != "" {
		return t.refreshProvider(h)
	}
	return t.refreshATProto(h)
}

// refreshATProto is refresh's step for an AT Protocol session: the
// account checked with its issuer (and its handle verified), then the
// tokens traded with a DPoP proof and saved.
func (t *Lifecycle) refreshATProto(h heldRefresh) (Session, error) {
	cur, held := h.cur, h.ctx
	// The store's read and the account check share checkTimeout, from
	// the lock on: the lease counts on it.
	ctx, cancel := context.WithDeadline(held, h.checkBy)
	defer cancel()
	t.seedNonce(cur.Issuer, cur.AuthServerNonce)
	client, ok := t.client(cur.ClientID)
	if !ok {
		return t.end(ctx, cur, "its OAuth client is no longer configured")
	}
	key, err := t.Key(cur)
	if err != nil {
		return t.end(ctx, cur, "its DPoP key is damaged")
	}
	acct, checked, err := t.checkAccount(ctx, client, cur)
	if err != nil {
		return Session{}, err
	}
	tctx, cancelToken := context.WithTimeout(held, tokenTimeout)
	defer cancelToken()
	grant, err := client.Refresh(tctx, acct, cur.RefreshToken, key)
	if err != nil {
		t.cfg.Recorder.TokenRefresh(false)
		var ue *oauth.UserError
		if oauth.IsInvalidGrant(err) || errors.As(err, &ue) {
			// The refresh token is dead, or the answer could not be
			// trusted: the session cannot continue.
			return t.end(ctx, cur, err.Error())
		}
		// A passing failure after the account check: keep what the check
		// verified, so that access rules judge the handle as it is now,
		// not as it was at the last refresh that went through (a server
		// that keeps failing must not keep an old handle admitted).
		t.saveHandle(ctx, cur, acct.Handle, checked)
		return Session{}, fmt.Errorf("refresh tokens of %s: %w", cur.DID, err)
	}
	return t.saveGrant(held, h.saveBy, client, cur, key, grant, checked)
}

// refreshedRecently says whether a session's tokens were refreshed less
// than MinRefreshInterval ago; the first refresh after sign-in is never
// held back.
func refreshedRecently(s Session, now time.Time) bool {
	return !s.RefreshedAt.IsZero() && now.Sub(s.RefreshedAt) < MinRefreshInterval
}

// seedNonce gives this replica the DPoP nonce stored with the session
// when it has none of its own for the server: another replica signed
// the session in or refreshed it last, and without the nonce the first
// request would be refused once for want of it.
func (t *Lifecycle) seedNonce(server, nonce string) {
	if t.cfg.Nonces != nil && nonce != "" && t.cfg.Nonces.Get(server) == "" {
		t.cfg.Nonces.Set(server, nonce)
	}
}

// checkAccount checks, before the refresh token is spent, that the
// account is still served by the session's issuer. An account that left
// ends the session; a passing failure leaves the refresh token unspent,
// and keeps a handle verified on the way.
func (t *Lifecycle) checkAccount(ctx context.Context, client *oauth.Client, cur Session) (*oauth.Account, time.Time, error) {
	acct, err := client.CheckAccount(ctx, cur.DID, cur.Issuer)
	checked := t.cfg.Now()
	if err == nil {
		return acct, checked, nil
	}
	t.cfg.Recorder.TokenRefresh(false)
	var ue *oauth.UserError
	if errors.As(err, &ue) {
		_, err := t.end(ctx, cur, err.Error())
		return nil, checked, err
	}
	if acct != nil {
		// The account resolved and its handle was verified; only its PDS
		// could not be asked.
		t.saveHandle(ctx, cur, acct.Handle, checked)
	}
	// Without a verified handle, the one stored ages, and rules that name
	// handles stop admitting it.
	return nil, checked, fmt.Errorf("refresh tokens of %s: %w", cur.DID, err)
}

// saveGrant stores a refresh's new tokens, trying again until saveBy
// while the store is out of reach: the old refresh token is spent, so
// these are the session's only ones. A session signed out during the
// refresh stays ended, its new tokens revoked.
func (t *Lifecycle) saveGrant(ctx context.Context, saveBy time.Time, client *oauth.Client, cur Session, key *dpop.Key, grant *oauth.Grant, checked time.Time) (Session, error) {
	next, err := t.storeGrant(ctx, saveBy, cur.ID, grant, checked)
	switch {
	case errors.Is(err, ErrNotFound):
		// Signed out while the refresh was under way: the new tokens
		// belong to no session, so they must not stay live.
		t.cfg.Recorder.TokenRefresh(true)
		client.Revoke(ctx, cur.Issuer, grant.RefreshToken, key)
		return Session{}, ErrEnded
	case errors.Is(err, ErrTooLarge):
		// The server's new tokens are too large to keep, and the old
		// refresh token is spent: the session cannot go on.
		t.cfg.Recorder.TokenRefresh(false)
		client.Revoke(ctx, cur.Issuer, grant.RefreshToken, key)
		return t.end(ctx, cur, err.Error())
	case err != nil:
		t.cfg.Recorder.TokenRefresh(false)
		return Session{}, fmt.Errorf("save refreshed tokens of %s: %w", cur.DID, err)
	}
	t.cfg.Recorder.TokenRefresh(true)
	t.cfg.Logger.Debug("tokens refreshed", "did", next.DID)
	if next.Handle != cur.Handle {
		// Access rules that name handles apply the new one from now on.
		t.cfg.Logger.Info("handle changed", "did", next.DID, "from", cur.Handle, "to", next.Handle)
	}
	return next, nil
}

// storeGrant writes a refresh's tokens into the session, again and again
// (each try bounded by saveTimeout) until saveBy while the store fails
// for a reason that may pass.
func (t *Lifecycle) storeGrant(ctx context.Context, saveBy time.Time, id string, grant *oauth.Grant, checked time.Time) (Session, error) {
	now := t.cfg.Now()
	apply := func(s *Session) error {
		s.AccessToken = grant.AccessToken
		if grant.RefreshToken != "" {
			s.RefreshToken = grant.RefreshToken
		}
		s.TokenExpiry, s.Scope, s.Handle, s.PDS = grant.Expiry, grant.Scope, grant.Handle, grant.PDS
		s.RefreshedAt, s.HandleCheckedAt, s.Expiry = now, checked, now.Add(t.cfg.SessionLifetime)
		if t.cfg.Nonces != nil {
			s.AuthServerNonce = t.cfg.Nonces.Get(s.Issuer)
			s.PDSNonce = t.cfg.Nonces.Get(s.PDS)
		}
		return nil
	}
	return t.updateUntil(ctx, saveBy, id, apply)
}

// updateUntil applies a refresh's tokens to the session, again and again
// (each try bounded by saveTimeout) until saveBy while the store fails
// for a reason that may pass: the server has spent the old refresh token,
// so an answer not saved loses the session.
func (t *Lifecycle) updateUntil(ctx context.Context, saveBy time.Time, id string, apply func(*Session) error) (Session, error) {
	for {
		try := time.Now().Add(saveTimeout)
		if try.After(saveBy) {
			try = saveBy
		}
		sctx, cancel := context.WithDeadline(ctx, try)
		next, err := t.cfg.Store.Update(sctx, id, apply)
		cancel()
		if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrTooLarge) || !time.Now().Add(saveRetry).Before(saveBy) {
			return next, err
		}
		t.cfg.Logger.Warn("saving refreshed tokens failed; trying again", "err", err)
		time.Sleep(saveRetry)
	}
}

// heldRefresh is a session's refresh lock, held: the session as the
// store holds it now, the context of the holder (which no caller's
// leaving cancels) and when the saves must end, within the lease.
type heldRefresh struct {
	release func()
	ctx     context.Context
	// checkBy ends the read of the session and the account check;
	// saveBy ends the saves.
	checkBy, saveBy time.Time
	cur             Session
}

// holdRefresh takes the session's refresh lock (waiting until ctx ends)
// and reads the session past any cache; ErrEnded when it is gone.
func (t *Lifecycle) holdRefresh(ctx context.Context, id string) (heldRefresh, error) {
	release, err := t.cfg.Store.Lock(ctx, RefreshLock(id), refreshLease)
	if err != nil {
		return heldRefresh{}, fmt.Errorf("refresh tokens: wait for another refresh of the session: %w", err)
	}
	now := time.Now()
	h := heldRefresh{release: release, ctx: context.WithoutCancel(ctx), checkBy: now.Add(checkTimeout), saveBy: now.Add(refreshLease - leaseMargin)}
	rctx, cancel := context.WithDeadline(h.ctx, h.checkBy)
	defer cancel()
	h.cur, err = t.cfg.Store.Latest(rctx, id)
	if err != nil {
		release()
		if errors.Is(err, ErrNotFound) {
			return heldRefresh{}, ErrEnded
		}
		return heldRefresh{}, fmt.Errorf("refresh tokens: %w", err)
	}
	return h, nil
}

// saveHandle stores the handle that an account check verified, when the
// refresh that followed failed. Only the handle: the tokens and the PDS
// they are for stay as the last refresh that went through left them.
func (t *Lifecycle) saveHandle(ctx context.Context, cur Session, handle string, checked time.Time) {
	next, err := t.cfg.Store.Update(ctx, cur.ID, func(s *Session) error {
		s.Handle, s.HandleCheckedAt = handle, checked
		return nil
	})
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			t.cfg.Logger.Warn("save checked handle", "did", cur.DID, "err", err)
		}
		return
	}
	if next.Handle != cur.Handle {
		t.cfg.Logger.Info("handle changed", "did", next.DID, "from", cur.Handle, "to", next.Handle)
	}
}

// end deletes a session whose refresh failed for good, and says so to
// the caller.
func (t *Lifecycle) end(ctx context.Context, sess Session, why string) (Session, error) {
	t.cfg.Logger.Info("session ended: token refresh failed", "did", sess.DID, "provider", sess.Provider, "subject", sess.Subject, "reason", why)
	if err := t.cfg.Store.Delete(ctx, sess.ID); err != nil {
		t.cfg.Logger.Error("delete session", "did", sess.DID, "err", err)
	}
	return Session{}, ErrEnded
}

// RefreshLock is the name of the store lock that a session's refreshes
// take: a digest of its id, as lock names appear in errors and logs, and
// the id is the cookie.
func RefreshLock(id string) string {
	h := sha256.Sum256([]byte(id))
	return "refresh:" + hex.EncodeToString(h[:16])
}
