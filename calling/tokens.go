package calling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/sessions"
)

// ErrSessionEnded means the session's tokens could not be refreshed and
// the session was deleted: the user must sign in again.
var ErrSessionEnded = errors.New("the session ended; sign in again")

// TokensConfig configures Tokens.
type TokensConfig struct {
	Sessions *sessions.Store
	// Clients are the OAuth clients by client id; a session is refreshed
	// by the client that signed it in.
	Clients map[string]*oauth.Client
	// SessionLifetime is how long a session lives after each refresh.
	SessionLifetime time.Duration
	// RefreshMargin is how long before expiry a token is refreshed
	// proactively (plus up to half as much jitter, so sessions that signed
	// in together do not refresh together).
	RefreshMargin time.Duration
	// Nonces are the DPoP nonces per server; the latest are saved with the
	// session at each refresh, so a restart starts from them.
	Nonces *dpop.Nonces
	// Recorder counts refreshes; observe.Discard when nil.
	Recorder observe.Recorder
	Logger   *slog.Logger
	Now      func() time.Time
}

// Tokens hands out fresh access tokens for sessions. Refresh tokens are
// single use and a replayed one makes the server delete the whole session,
// so each session refreshes at most once at a time: concurrent callers
// wait for the one refresh under way and share its result.
type Tokens struct {
	cfg TokensConfig

	mu       sync.Mutex
	inflight map[string]*refreshCall
	// running counts refreshes under way, so that shutdown waits for them
	// before the store closes: a refresh abandoned halfway (the server has
	// rotated the token, we have not saved it) loses the session.
	running sync.WaitGroup
	// failedAt remembers when a background refresh of a session last
	// failed for a passing reason, so a server that is down is not asked
	// again on every request.
	failedAt map[string]time.Time

	// keys caches parsed DPoP keys by session id: parsing the stored JWK
	// on every call was a quarter of the calling port's own CPU.
	keys sync.Map // session id -> cachedKey
}

type cachedKey struct {
	raw string
	key *dpop.Key
}

// Key returns the session's parsed DPoP key.
func (t *Tokens) Key(sess sessions.Session) (*dpop.Key, error) {
	if c, ok := t.keys.Load(sess.ID); ok && c.(cachedKey).raw == string(sess.DPoPKey) {
		return c.(cachedKey).key, nil
	}
	k, err := dpop.ParseKey(sess.DPoPKey)
	if err != nil {
		return nil, err
	}
	t.keys.Store(sess.ID, cachedKey{raw: string(sess.DPoPKey), key: k})
	return k, nil
}

type refreshCall struct {
	done chan struct{}
	sess sessions.Session
	err  error
}

// NewTokens returns a Tokens.
func NewTokens(cfg TokensConfig) *Tokens {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefreshMargin == 0 {
		cfg.RefreshMargin = time.Minute
	}
	if cfg.SessionLifetime == 0 {
		cfg.SessionLifetime = 30 * 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Recorder == nil {
		cfg.Recorder = observe.Discard{}
	}
	return &Tokens{cfg: cfg, inflight: map[string]*refreshCall{}, failedAt: map[string]time.Time{}}
}

// Fresh returns the session with an access token that is not about to
// expire, refreshing it first when needed. When a refresh ahead of expiry
// fails for a passing reason (the server is unreachable), the current
// token is used while it lasts.
func (t *Tokens) Fresh(ctx context.Context, sess sessions.Session) (sessions.Session, error) {
	margin := t.cfg.RefreshMargin + rand.N(t.cfg.RefreshMargin/2+1)
	now := t.cfg.Now()
	if now.Add(margin).Before(sess.TokenExpiry) {
		return sess, nil
	}
	next, err := t.Refresh(ctx, sess.ID, sess.AccessToken)
	if err != nil && !errors.Is(err, ErrSessionEnded) && now.Before(sess.TokenExpiry) {
		t.cfg.Logger.Warn("early token refresh failed; using the current token while it lasts", "did", sess.DID, "err", err)
		return sess, nil
	}
	return next, err
}

// RefreshLater starts a refresh of a stale session (its access token has
// expired, or its handle is due for a recheck) in the background, unless
// one is under way. Ingress calls it for signed-in browsers whose app
// makes no calls: the refresh re-checks the account and its handle, and a
// session that cannot be refreshed ends. A refresh that failed for a
// passing reason is tried again after a minute.
func (t *Tokens) RefreshLater(sess sessions.Session) {
	now := t.cfg.Now()
	if !sess.Stale(now) {
		return
	}
	t.mu.Lock()
	_, busy := t.inflight[sess.ID]
	failed, hasFailed := t.failedAt[sess.ID]
	if busy || (hasFailed && now.Sub(failed) < time.Minute) {
		t.mu.Unlock()
		return
	}
	// Counted before the goroutine starts, so that Wait cannot miss it.
	t.running.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.running.Done()
		_, err := t.Refresh(context.Background(), sess.ID, sess.AccessToken)
		t.mu.Lock()
		if err != nil && !errors.Is(err, ErrSessionEnded) {
			t.failedAt[sess.ID] = t.cfg.Now()
		} else {
			delete(t.failedAt, sess.ID)
		}
		t.mu.Unlock()
		if err != nil && !errors.Is(err, ErrSessionEnded) {
			t.cfg.Logger.Warn("background token refresh failed; next try in a minute", "did", sess.DID, "err", err)
		}
	}()
}

// Wait waits for every refresh under way to finish (at shutdown, before
// the store closes). Each is bounded by the refresh timeout.
func (t *Tokens) Wait() { t.running.Wait() }

// Refresh refreshes the session's tokens unless they changed since the
// caller read staleAccessToken (another request refreshed them already).
func (t *Tokens) Refresh(ctx context.Context, id, staleAccessToken string) (sessions.Session, error) {
	t.mu.Lock()
	if c, ok := t.inflight[id]; ok {
		t.mu.Unlock()
		select {
		case <-c.done:
			return c.sess, c.err
		case <-ctx.Done():
			return sessions.Session{}, ctx.Err()
		}
	}
	c := &refreshCall{done: make(chan struct{})}
	t.inflight[id] = c
	t.running.Add(1)
	t.mu.Unlock()
	defer t.running.Done()

	// The refresh must finish even if the caller gives up: the server
	// consumes the old refresh token, so dropping its answer would lose
	// the session.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	c.sess, c.err = t.refresh(rctx, id, staleAccessToken)
	cancel()

	t.mu.Lock()
	delete(t.inflight, id)
	t.mu.Unlock()
	close(c.done)
	return c.sess, c.err
}

func (t *Tokens) refresh(ctx context.Context, id, stale string) (sessions.Session, error) {
	cur, ok := t.cfg.Sessions.Get(id)
	if !ok {
		return sessions.Session{}, ErrSessionEnded
	}
	if cur.AccessToken != stale && t.cfg.Now().Before(cur.TokenExpiry) {
		return cur, nil
	}
	client, ok := t.cfg.Clients[cur.ClientID]
	if !ok {
		t.end(cur, "its OAuth client is no longer configured")
		return sessions.Session{}, ErrSessionEnded
	}
	key, err := t.Key(cur)
	if err != nil {
		t.end(cur, "its DPoP key is damaged")
		return sessions.Session{}, ErrSessionEnded
	}
	acct, err := client.CheckAccount(ctx, cur.DID, cur.Issuer)
	checked := t.cfg.Now()
	if err != nil {
		t.cfg.Recorder.TokenRefresh(false)
		var ue *oauth.UserError
		if errors.As(err, &ue) {
			// The account is no longer served by this issuer: the
			// session cannot continue.
			t.end(cur, err.Error())
			return sessions.Session{}, ErrSessionEnded
		}
		if acct != nil {
			// The account resolved and its handle was verified; only its
			// PDS could not be asked.
			t.saveHandle(cur, acct.Handle, checked)
		}
		// The refresh token is unspent. Without a verified handle, the
		// one stored ages, and rules that name handles stop admitting it.
		return sessions.Session{}, fmt.Errorf("refresh tokens of %s: %w", cur.DID, err)
	}
	grant, err := client.Refresh(ctx, acct, cur.RefreshToken, key)
	if err != nil {
		t.cfg.Recorder.TokenRefresh(false)
		var ue *oauth.UserError
		if oauth.IsInvalidGrant(err) || errors.As(err, &ue) {
			// The refresh token is dead, or the answer could not be
			// trusted: the session cannot continue.
			t.end(cur, err.Error())
			return sessions.Session{}, ErrSessionEnded
		}
		// A passing failure after the account check: keep what the check
		// verified, so that access rules judge the handle as it is now,
		// not as it was at the last refresh that went through (a server
		// that keeps failing must not keep an old handle admitted).
		t.saveHandle(cur, acct.Handle, checked)
		return sessions.Session{}, fmt.Errorf("refresh tokens of %s: %w", cur.DID, err)
	}
	now := t.cfg.Now()
	next, err := t.cfg.Sessions.Update(id, func(s *sessions.Session) error {
		s.AccessToken = grant.AccessToken
		if grant.RefreshToken != "" {
			s.RefreshToken = grant.RefreshToken
		}
		s.TokenExpiry = grant.Expiry
		s.Scope = grant.Scope
		s.Handle = grant.Handle
		s.PDS = grant.PDS
		s.RefreshedAt = now
		s.HandleCheckedAt = checked
		s.Expiry = now.Add(t.cfg.SessionLifetime)
		if t.cfg.Nonces != nil {
			s.AuthServerNonce = t.cfg.Nonces.Get(s.Issuer)
			s.PDSNonce = t.cfg.Nonces.Get(s.PDS)
		}
		return nil
	})
	if errors.Is(err, sessions.ErrNotFound) {
		// Signed out while the refresh was under way: the new tokens
		// belong to no session, so they must not stay live.
		t.cfg.Recorder.TokenRefresh(true)
		client.Revoke(ctx, cur.Issuer, grant.RefreshToken, key)
		return sessions.Session{}, ErrSessionEnded
	}
	if errors.Is(err, sessions.ErrTooLarge) {
		// The server's new tokens are too large to keep, and the old
		// refresh token is spent: the session cannot go on.
		t.cfg.Recorder.TokenRefresh(false)
		client.Revoke(ctx, cur.Issuer, grant.RefreshToken, key)
		t.end(cur, err.Error())
		return sessions.Session{}, ErrSessionEnded
	}
	if err != nil {
		t.cfg.Recorder.TokenRefresh(false)
		return sessions.Session{}, fmt.Errorf("save refreshed tokens of %s: %w", cur.DID, err)
	}
	t.cfg.Recorder.TokenRefresh(true)
	t.cfg.Logger.Debug("tokens refreshed", "did", next.DID)
	if next.Handle != cur.Handle {
		// Access rules that name handles apply the new one from now on.
		t.cfg.Logger.Info("handle changed", "did", next.DID, "from", cur.Handle, "to", next.Handle)
	}
	return next, nil
}

// saveHandle stores the handle that an account check verified, when the
// refresh that followed failed. Only the handle: the tokens and the PDS
// they are for stay as the last refresh that went through left them.
func (t *Tokens) saveHandle(cur sessions.Session, handle string, checked time.Time) {
	next, err := t.cfg.Sessions.Update(cur.ID, func(s *sessions.Session) error {
		s.Handle, s.HandleCheckedAt = handle, checked
		return nil
	})
	if err != nil {
		if !errors.Is(err, sessions.ErrNotFound) {
			t.cfg.Logger.Warn("save checked handle", "did", cur.DID, "err", err)
		}
		return
	}
	if next.Handle != cur.Handle {
		t.cfg.Logger.Info("handle changed", "did", next.DID, "from", cur.Handle, "to", next.Handle)
	}
}

// RunPrune forgets the cached keys of ended sessions every interval until
// ctx ends.
func (t *Tokens) RunPrune(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.keys.Range(func(id, _ any) bool {
				if _, ok := t.cfg.Sessions.Get(id.(string)); !ok {
					t.keys.Delete(id)
				}
				return true
			})
			t.mu.Lock()
			for id := range t.failedAt {
				if _, ok := t.cfg.Sessions.Get(id); !ok {
					delete(t.failedAt, id)
				}
			}
			t.mu.Unlock()
		}
	}
}

func (t *Tokens) end(sess sessions.Session, why string) {
	t.keys.Delete(sess.ID)
	t.cfg.Logger.Info("session ended: token refresh failed", "did", sess.DID, "reason", why)
	if err := t.cfg.Sessions.Delete(sess.ID); err != nil {
		t.cfg.Logger.Error("delete session", "did", sess.DID, "err", err)
	}
}
