package sessions

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/oauth"
)

// BeginSignIn keeps a sign-in in progress until its callback; see
// Store.PutPending for the limits (ErrFull).
func (t *Lifecycle) BeginSignIn(ctx context.Context, p Pending) error {
	return t.cfg.Store.PutPending(ctx, p)
}

// FinishSignIn takes the sign-in in progress of state, once: see
// Store.TakePending (ErrNotFound, ErrExpired).
func (t *Lifecycle) FinishSignIn(ctx context.Context, state string) (Pending, error) {
	return t.cfg.Store.TakePending(ctx, state)
}

// Grant is what a finished sign-in makes a session of: the tokens, the
// DPoP key they are bound to, and the host and client they are for.
type Grant struct {
	*oauth.Grant
	Host     string
	ClientID string
	DPoPKey  *dpop.Key
	// Asked is the scope the sign-in asked for (the host's scopes).
	Asked string
}

// Create makes and stores the session of a grant: fresh random ids, the
// tokens, the nonce the server gave. When it cannot be kept (ErrTooLarge,
// ErrFull, a store out of reach) its new refresh token is revoked; when
// the account's oldest sessions on the host made room, theirs are.
func (t *Lifecycle) Create(ctx context.Context, g Grant) (Session, error) {
	now := t.cfg.Now()
	return t.create(ctx, now, Session{
		Host: g.Host, DID: g.DID, Handle: g.Handle, PDS: g.PDS, Issuer: g.Issuer, ClientID: g.ClientID,
		Scope: g.Scope, Asked: g.Asked, AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, TokenExpiry: g.Expiry,
		DPoPKey:         g.DPoPKey,
		AuthServerNonce: g.AuthServerNonce,
		// The exchange has just verified the handle both ways.
		HandleCheckedAt: now,
	})
}

// create gives a new session of either kind (Create, CreateProvider) what
// does not depend on its kind, fresh random ids and a lifetime from now
// (sess.Expiry, when set, may end it sooner), and stores it. When it
// cannot be kept its tokens are revoked; when the account's oldest
// sessions on the host made room, theirs are.
func (t *Lifecycle) create(ctx context.Context, now time.Time, sess Session) (Session, error) {
	sess.ID, sess.ProxyKey, sess.CreatedAt = NewToken(), NewToken(), now
	if end := now.Add(t.cfg.SessionLifetime); sess.Expiry.IsZero() || end.Before(sess.Expiry) {
		sess.Expiry = end
	}
	evicted, err := t.cfg.Store.Create(ctx, sess)
	if err != nil {
		t.revoke(sess)
		return Session{}, fmt.Errorf("store the new session: %w", err)
	}
	for _, old := range evicted {
		t.cfg.Logger.Info("session ended: the account has too many sessions on this host", "host", old.Host, "did", old.DID, "provider", old.Provider, "subject", old.Subject)
		t.revoke(old)
	}
	return sess, nil
}

// Discard revokes, in the background, a grant that is not made a session:
// an account the host refuses gets none, and its tokens must not stay
// live.
func (t *Lifecycle) Discard(g Grant) {
	t.revoke(Session{ClientID: g.ClientID, Issuer: g.Issuer, RefreshToken: g.RefreshToken, DPoPKey: g.DPoPKey})
}

// Get returns the live session of a cookie's id, or ErrNotFound. It runs
// on every ingress request; stores answer it from memory.
func (t *Lifecycle) Get(ctx context.Context, id string) (Session, error) {
	return t.cfg.Store.Get(ctx, id)
}

// MaxProxyKeys bounds the keys one Proxy-Session value may list.
const MaxProxyKeys = 8

// ByProxyKeys returns the live session of the given provider ("" for AT
// Protocol) among the keys of a Proxy-Session value: a browser signed in
// with AT Protocol and other providers at once gets one key of each,
// comma-separated, and each call picks the session it needs. ErrNotFound
// when none of them is that provider's. It runs on every call.
func (t *Lifecycle) ByProxyKeys(ctx context.Context, value, provider string) (Session, error) {
	n := 0
	for key := range strings.SplitSeq(value, ",") {
		if n++; n > MaxProxyKeys {
			break
		}
		key = strings.TrimSpace(key)
		if !WellFormedToken(key) {
			continue
		}
		sess, err := t.cfg.Store.ByProxyKey(ctx, key)
		switch {
		case errors.Is(err, ErrNotFound):
			continue
		case err != nil:
			return Session{}, err
		case sess.Provider == provider:
			return sess, nil
		}
	}
	return Session{}, ErrNotFound
}

// End ends a session that its user signed out of: deleted at once (every
// replica refuses it), its refresh token revoked in the background, as
// nobody should wait for the server to agree.
//
// The token revoked is the one the store holds, read under the
// session's refresh lock: the caller's copy may be older than a refresh
// another replica just made, and revoking a spent token would leave the
// new one live.
func (t *Lifecycle) End(ctx context.Context, sess Session) error {
	latest, err := t.deleteLocked(ctx, sess, t.endWait)
	if err != nil {
		t.cfg.Logger.Error("delete session", "did", sess.DID, "err", err)
		return err
	}
	t.revoke(latest)
	t.cfg.Logger.Info("signed out", "host", sess.Host, "did", sess.DID, "provider", sess.Provider)
	return nil
}

// endLockWait bounds how long a sign-out waits for a refresh under way.
const endLockWait = 5 * time.Second

// deleteLocked deletes the session under its refresh lock, waiting at
// most wait for it, and returns the session as the store held it then:
// no refresh can rotate its tokens between the read and the delete, on
// any replica. When the lock or the read fails the caller's copy is
// returned (a sign-out must not wait for a store in trouble) and the
// delete goes on.
func (t *Lifecycle) deleteLocked(ctx context.Context, sess Session, wait time.Duration) (Session, error) {
	latest := sess
	lctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if release, err := t.cfg.Store.Lock(lctx, RefreshLock(sess.ID), refreshLease); err == nil {
		defer release()
		if cur, err := t.cfg.Store.Latest(lctx, sess.ID); err == nil {
			latest = cur
		}
	}
	return latest, t.cfg.Store.Delete(ctx, sess.ID)
}

// Forget deletes a session without revoking its tokens: one that a new
// sign-in of the same account replaces, where revoking would end the
// new grant too (Google revokes a user's whole grant to a client). The
// delete is made under the refresh lock, so that no refresh under way
// finds the session gone and revokes what it got: it waits for the lock
// as long as a refresh may hold it (refreshLease), where a sign-out
// waits endLockWait. So it runs in the background (Wait waits for it):
// the sign-in that forgets must not wait that long, nor cut the wait
// short when its browser leaves (found in review).
func (t *Lifecycle) Forget(sess Session) {
	t.running.Go(func() {
		if _, err := t.deleteLocked(context.Background(), sess, t.forgetWait); err != nil {
			t.cfg.Logger.Error("forget the replaced session", "provider", sess.Provider, "subject", sess.Subject, "err", err)
		}
	})
}

// revokeTimeout bounds a background revocation.
const revokeTimeout = 10 * time.Second

// revoke revokes a session's refresh token in the background; Wait waits
// for it.
func (t *Lifecycle) revoke(sess Session) {
	if sess.Provider != "" {
		t.revokeProvider(sess)
		return
	}
	client, ok := t.client(sess.ClientID)
	if !ok || sess.DPoPKey == nil || sess.RefreshToken == "" {
		return
	}
	t.running.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
		defer cancel()
		client.Revoke(ctx, sess.Issuer, sess.RefreshToken, sess.DPoPKey)
	})
}
