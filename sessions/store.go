package sessions

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ioproxy/ioproxy/internal/every"
)

// Store keeps pending sign-ins, sessions and named secrets. Every method
// is safe for concurrent use, and takes the request's context: a shared
// store is a network away.
//
// Lookups (Get, ByProxyKey) run on every request and must not touch a
// disk or a network in the common case: stores keep sessions in memory,
// or in a cache they keep true.
type Store interface {
	// PutPending stores a sign-in in progress under its state. It fails
	// with ErrFull when the store holds as many as Options allow, in all,
	// for the client, or for the authorization server.
	PutPending(ctx context.Context, p Pending) error
	// TakePending deletes and returns the sign-in for state: it is
	// deleted before the caller does anything with it, so a replayed
	// state finds nothing (ErrNotFound). ErrExpired when it was too old.
	// A state that no store could have issued (see WellFormedToken) costs
	// no write.
	TakePending(ctx context.Context, state string) (Pending, error)

	// Create stores a new session. It refuses sessions over their size
	// limits (ErrTooLarge) and a full store (ErrFull); when the account
	// already has MaxPerAccount sessions on the host, the oldest are
	// deleted with it and returned, for the caller to revoke their tokens.
	Create(ctx context.Context, s Session) (evicted []Session, err error)
	// Get returns the live session with the given id (the cookie value),
	// or ErrNotFound.
	Get(ctx context.Context, id string) (Session, error)
	// Latest returns the live session with the given id as the store
	// itself holds it, not as a cache remembers it: what the last writer
	// saved, on any replica. A lock holder reads with it what the
	// previous holder wrote (a refresh must spend the newest refresh
	// token). It may cost a network round trip.
	Latest(ctx context.Context, id string) (Session, error)
	// ByProxyKey returns the live session whose proxy key is key, or
	// ErrNotFound.
	ByProxyKey(ctx context.Context, key string) (Session, error)
	// Update applies fn to the session and saves the result whole, or not
	// at all when fn or the write fails. Updates of one session apply one
	// after another, none lost; fn must be quick and do no I/O, as it may
	// run more than once (a shared store runs it again when another
	// replica wrote first). A session deleted meanwhile stays deleted
	// (ErrNotFound): an update never brings a session back.
	Update(ctx context.Context, id string, fn func(*Session) error) (Session, error)
	// Delete removes a session; a missing one is not an error.
	Delete(ctx context.Context, id string) error
	// Count is the number of sessions stored.
	Count(ctx context.Context) (int, error)
	// List returns every live session.
	List(ctx context.Context) ([]Session, error)
	// DeleteExpired removes expired sessions and pending sign-ins, and
	// says how many.
	DeleteExpired(ctx context.Context) (int, error)

	// Lock takes the lock called name for at most lease, waiting while
	// someone else holds it, until ctx ends. Release frees it, and does
	// nothing once the lease has lapsed and someone else took it: a holder
	// that dies loses the lock when its lease lapses, and nothing else.
	Lock(ctx context.Context, name string, lease time.Duration) (release func(), err error)

	// Secret returns the secret called name, creating it with generate
	// the first time (once, whoever asks at once).
	Secret(ctx context.Context, name string, generate func() ([]byte, error)) ([]byte, error)
	// LoadSecret returns the secret called name, or ErrNotFound.
	LoadSecret(ctx context.Context, name string) ([]byte, error)
	// StoreSecret saves value as the secret called name, replacing what
	// was there: a rotated key, a renewed certificate. A value over
	// MaxSecretBytes is refused (ErrTooLarge). Writers that read, change
	// and store a secret take a Lock around it.
	StoreSecret(ctx context.Context, name string, value []byte) error
	// DeleteSecret removes the secret called name; a missing one is not
	// an error.
	DeleteSecret(ctx context.Context, name string) error

	// Close releases the store.
	Close() error
}

// Checker is a Store that can say whether it can serve now: a shared
// store a network away. /readyz asks it, so that a load balancer sends
// traffic elsewhere while the store is out of reach.
type Checker interface {
	// Check returns nil when the store answers, else why not.
	Check(ctx context.Context) error
}

// Options are the limits every store applies, and its clock.
type Options struct {
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MaxSessions bounds the sessions stored (DefaultMaxSessions when 0):
	// sign-ins beyond it are refused with ErrFull.
	MaxSessions int
	// MaxPerAccount bounds the sessions of one account on one host
	// (DefaultMaxPerAccount when 0): a new sign-in beyond it ends the
	// oldest.
	MaxPerAccount int
	// MaxPending bounds the sign-ins in progress (DefaultMaxPending when
	// 0): starts beyond it are refused with ErrFull.
	MaxPending int
	// MaxPendingPerClient bounds the sign-ins in progress started by one
	// client (Pending.Client; DefaultMaxPendingPerClient when 0).
	MaxPendingPerClient int
	// MaxPendingPerIssuer bounds the sign-ins in progress with one
	// authorization server, its subdomains counted together (MaxPending/4
	// when 0, at least 1).
	MaxPendingPerIssuer int
}

// MaxSecretBytes bounds one secret: a key set, or a certificate chain
// with its key, is a few kilobytes.
const MaxSecretBytes = 64 << 10

// CheckSecret refuses a secret value that no store keeps.
func CheckSecret(name string, value []byte) error {
	if len(value) > MaxSecretBytes {
		return fmt.Errorf("secret %q is %d bytes, over the limit of %d: %w", name, len(value), MaxSecretBytes, ErrTooLarge)
	}
	return nil
}

// Defaults of Options.
const (
	DefaultMaxSessions   = 100000
	DefaultMaxPerAccount = 10
	DefaultMaxPending    = 10000
	// DefaultMaxPendingPerClient is a minute of sign-in starts: a person
	// starts one at a time, an office behind one address a few.
	DefaultMaxPendingPerClient = 30
)

// WithDefaults returns o with each limit left at zero set to its default.
func (o Options) WithDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxSessions <= 0 {
		o.MaxSessions = DefaultMaxSessions
	}
	if o.MaxPerAccount <= 0 {
		o.MaxPerAccount = DefaultMaxPerAccount
	}
	if o.MaxPending <= 0 {
		o.MaxPending = DefaultMaxPending
	}
	if o.MaxPendingPerClient <= 0 {
		o.MaxPendingPerClient = DefaultMaxPendingPerClient
	}
	if o.MaxPendingPerIssuer <= 0 {
		o.MaxPendingPerIssuer = max(1, o.MaxPending/4)
	}
	return o
}

// RunCleanup deletes expired pending sign-ins and sessions from store
// every interval until ctx ends.
func RunCleanup(ctx context.Context, store Store, interval time.Duration, log *slog.Logger) {
	every.Tick(ctx, interval, func(ctx context.Context) {
		if n, err := store.DeleteExpired(ctx); err != nil {
			log.Error("session cleanup failed", "err", err)
		} else if n > 0 {
			log.Debug("session cleanup", "removed", n)
		}
	})
}
