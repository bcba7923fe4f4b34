package sessions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/internal/every"
	"github.com/ioproxy/ioproxy/internal/observe"
)

// ErrEnded means the session's tokens could not be refreshed and the
// session was deleted: the user must sign in again.
var ErrEnded = errors.New("the session ended; sign in again")

const (
	// refreshTimeout bounds the wait for a session's refresh lock.
	refreshTimeout = 30 * time.Second
	// checkTimeout bounds the account check before a refresh.
	checkTimeout = 15 * time.Second
	// tokenTimeout bounds the token request of a refresh.
	tokenTimeout = 20 * time.Second
	// saveTimeout bounds one try at saving a refresh's tokens, and
	// saveRetry is the pause between tries.
	saveTimeout = 5 * time.Second
	saveRetry   = 200 * time.Millisecond
	// refreshLease outlasts the holder's check, token request and saves:
	// another replica must not refresh with the token this one is
	// spending. The saves stop leaseMargin before it lapses.
	refreshLease = checkTimeout + tokenTimeout + 10*time.Second
	leaseMargin  = 2 * time.Second
	// MinRefreshInterval is the least time between two refreshes of one
	// session that another replica did not already do.
	MinRefreshInterval = time.Minute
)

// LifecycleConfig configures a Lifecycle.
type LifecycleConfig struct {
	// Store keeps the sessions and the sign-ins in progress.
	Store Store
	// Clients are the OAuth clients by client id; a session is refreshed
	// by the client that signed it in. SetClients replaces them.
	Clients map[string]*oauth.Client
	// SessionLifetime is how long a session lives after each refresh;
	// DefaultLifetime when zero.
	SessionLifetime time.Duration
	// RefreshMargin is how long before expiry a token is refreshed
	// proactively (plus up to half as much jitter, so sessions that signed
	// in together do not refresh together).
	RefreshMargin time.Duration
	// Nonces are the DPoP nonces per server; the latest are saved with the
	// session at each refresh, so a restart starts from them.
	Nonces *dpop.Nonces
	// Providers finds the client of a provider session's provider (its
	// host's oauth "<name>" block, with the issuer and client the session
	// was made with), for its refreshes and revocations; nil when no host
	// has one.
	Providers func(Session) (ProviderClient, bool)
	// Recorder counts refreshes; observe.Discard when nil.
	Recorder observe.Recorder
	Logger   *slog.Logger
	Now      func() time.Time
}

// Lifecycle is what becomes of sessions, from the sign-in in progress to
// the end: a session made from a grant, looked up, given fresh tokens,
// refreshed in the background, ended. Ingress and calling go through it,
// never to the Store.
//
// Refresh tokens are single use and a replayed one makes the server
// delete the whole session, so each session refreshes at most once at a
// time: concurrent callers share the one refresh under way
// (singleflight by session id), and replicas take the session's refresh
// lock in the store.
type Lifecycle struct {
	cfg LifecycleConfig
	// lockWait bounds the wait for a session's refresh lock
	// (refreshTimeout), and jitter draws the part of the refresh margin
	// that spreads sessions out (rand.N); tests change them.
	lockWait time.Duration
	jitter   func(bound time.Duration) time.Duration
	// endWait and forgetWait bound End's and Forget's wait for a refresh
	// under way (endLockWait, refreshLease); tests shorten them.
	endWait, forgetWait time.Duration
	// clients are cfg.Clients until SetClients replaces them.
	clients atomic.Pointer[map[string]*oauth.Client]
	flights singleflight.Group
	// running counts refreshes under way, so that shutdown waits for them
	// before the store closes: a refresh abandoned halfway (the server has
	// rotated the token, we have not saved it) loses the session.
	running sync.WaitGroup

	mu sync.Mutex
	// later are the sessions with a background refresh under way.
	later map[string]bool
	// failedAt remembers when a background refresh of a session last
	// failed for a passing reason, so a server that is down is not asked
	// again on every request.
	failedAt map[string]time.Time
}

// NewLifecycle returns a Lifecycle over cfg.Store.
func NewLifecycle(cfg LifecycleConfig) *Lifecycle {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RefreshMargin == 0 {
		cfg.RefreshMargin = time.Minute
	}
	if cfg.SessionLifetime == 0 {
		cfg.SessionLifetime = DefaultLifetime
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Recorder == nil {
		cfg.Recorder = observe.Discard{}
	}
	t := &Lifecycle{
		cfg: cfg, lockWait: refreshTimeout, endWait: endLockWait, forgetWait: refreshLease, jitter: rand.N[time.Duration],
		later: map[string]bool{}, failedAt: map[string]time.Time{},
	}
	t.SetClients(cfg.Clients)
	return t
}

// SetClients replaces the OAuth clients, on a reload of the
// configuration. A session whose client is among them refreshes with the
// new one; one whose client is gone (its host was removed, or a
// localhost client's scope changed its client id) ends at its next
// refresh, as after a restart. A refresh under way finishes with the
// client it began with.
func (t *Lifecycle) SetClients(clients map[string]*oauth.Client) {
	t.clients.Store(&clients)
}

// client is the OAuth client of a client id, if it is configured.
func (t *Lifecycle) client(id string) (*oauth.Client, bool) {
	c, ok := (*t.clients.Load())[id]
	return c, ok
}

// Key returns the session's DPoP key.
func (t *Lifecycle) Key(sess Session) (*dpop.Key, error) {
	if sess.DPoPKey == nil {
		return nil, errors.New("the session has no DPoP key")
	}
	return sess.DPoPKey, nil
}

// Fresh returns the session with an access token that is not about to
// expire, refreshing it first when needed; it serves both kinds of
// session, one refresh per session at a time, in this process
// (concurrent callers share it) and across replicas (the store's lock).
// A session whose refresh token the server refuses ends (ErrEnded). When
// a refresh ahead of expiry fails for a passing reason (the server is
// unreachable), the current token is used while it lasts. A session
// refreshed under MinRefreshInterval ago is not refreshed again: a
// server whose tokens live under the margin must not make every call a
// refresh. A provider session without a refresh token whose access token
// has expired cannot call (ErrNoRefreshToken), and lives on for its
// identity until it expires.
func (t *Lifecycle) Fresh(ctx context.Context, sess Session) (Session, error) {
	now := t.cfg.Now()
	if now.Add(t.refreshMargin()).Before(sess.TokenExpiry) {
		return sess, nil
	}
	if sess.Provider != "" && sess.RefreshToken == "" {
		if now.Before(sess.TokenExpiry) {
			return sess, nil
		}
		return Session{}, noRefreshToken(sess)
	}
	if refreshedRecently(sess, now) {
		return sess, nil
	}
	next, err := t.Refresh(ctx, sess.ID, sess.AccessToken)
	if err != nil && !errors.Is(err, ErrEnded) && now.Before(sess.TokenExpiry) {
		t.cfg.Logger.Warn("early token refresh failed; using the current token while it lasts", "did", sess.DID, "provider", sess.Provider, "err", err)
		return sess, nil
	}
	return next, err
}

// refreshMargin is how long before expiry a token is refreshed: the
// configured margin and up to half as much again, drawn anew each time,
// so that sessions that signed in together do not refresh together.
func (t *Lifecycle) refreshMargin() time.Duration {
	m := t.cfg.RefreshMargin
	return m + t.jitter(m/2+1)
}

// RefreshLater starts a refresh of a stale session (its access token has
// expired, or its handle is due for a recheck) in the background, unless
// one is under way. Ingress calls it for signed-in browsers whose app
// makes no calls: the refresh re-checks the account (and an AT Protocol
// session's handle) with its server, and a session that cannot be
// refreshed ends, a provider's grant withdrawn included. A refresh that failed for a
// passing reason is tried again after a minute.
func (t *Lifecycle) RefreshLater(sess Session) {
	now := t.cfg.Now()
	if !sess.Stale(now) || refreshedRecently(sess, now) {
		return
	}
	t.mu.Lock()
	failed, hasFailed := t.failedAt[sess.ID]
	if t.later[sess.ID] || (hasFailed && now.Sub(failed) < time.Minute) {
		t.mu.Unlock()
		return
	}
	t.later[sess.ID] = true
	// Counted before the goroutine starts, so that Wait cannot miss it.
	t.running.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.running.Done()
		_, err := t.Refresh(context.Background(), sess.ID, sess.AccessToken)
		passing := err != nil && !errors.Is(err, ErrEnded)
		t.mu.Lock()
		delete(t.later, sess.ID)
		if passing {
			t.failedAt[sess.ID] = t.cfg.Now()
		} else {
			delete(t.failedAt, sess.ID)
		}
		t.mu.Unlock()
		if passing {
			t.cfg.Logger.Warn("background token refresh failed; next try in a minute", "did", sess.DID, "err", err)
		}
	}()
}

// Wait waits for every refresh and revocation under way to finish (at
// shutdown, before the store closes). Each is bounded: a refresh by
// the lock wait and its lease, a revocation by revokeTimeout.
func (t *Lifecycle) Wait() { t.running.Wait() }

// Refresh refreshes the session's tokens (of either kind) unless they
// changed since the caller read staleAccessToken (another request
// refreshed them already). Concurrent callers share one refresh, whose
// wait for the session's refresh lock is bounded by refreshTimeout. The
// refresh finishes even if every caller gives up: the server consumes
// the old refresh token, so dropping its answer would lose the session.
func (t *Lifecycle) Refresh(ctx context.Context, id, staleAccessToken string) (Session, error) {
	ch := t.flights.DoChan(id, func() (any, error) {
		t.running.Add(1)
		defer t.running.Done()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.lockWait)
		defer cancel()
		return t.refresh(rctx, id, staleAccessToken)
	})
	// The caller waits on its context only once it has joined the
	// refresh (the tests count on it).
	select {
	case res := <-ch:
		sess, _ := res.Val.(Session)
		return sess, res.Err
	case <-ctx.Done():
		return Session{}, fmt.Errorf("refresh tokens: %w", ctx.Err())
	}
}

// RunPrune forgets, every interval until ctx ends, the back-off of
// sessions that have ended.
func (t *Lifecycle) RunPrune(ctx context.Context, interval time.Duration) {
	every.Tick(ctx, interval, t.prune)
}

// prune forgets the back-off of sessions the store no longer holds. It
// asks the store outside the lock: on Redis each question is a round
// trip, and refreshes wait on the lock.
func (t *Lifecycle) prune(ctx context.Context) {
	t.mu.Lock()
	ids := slices.Collect(maps.Keys(t.failedAt))
	t.mu.Unlock()
	for _, id := range ids {
		if _, err := t.cfg.Store.Get(ctx, id); errors.Is(err, ErrNotFound) {
			t.mu.Lock()
			delete(t.failedAt, id)
			t.mu.Unlock()
		}
	}
}
