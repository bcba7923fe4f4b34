// Package sessions keeps ioproxy's pending sign-ins, signed-in sessions and
// its client key in a bbolt file in the data dir.
//
// Every ingress request looks a session up, so lookups never touch the
// disk: all sessions live in memory as well, loaded at Open. bbolt is
// written only at sign-in, sign-out and token refresh, in short
// transactions (bbolt has one writer at a time). bbolt takes an exclusive
// lock on its file: one data dir belongs to one ioproxy process.
package sessions

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/internal/textutil"
)

// Errors returned by the store.
var (
	ErrNotFound = errors.New("not found")
	ErrExpired  = errors.New("expired")
)

var (
	bucketPending  = []byte("pending")
	bucketSessions = []byte("sessions")
	bucketKeys     = []byte("keys")
)

// Session is one signed-in browser. It holds the user's tokens, so it never
// leaves ioproxy: backends see only DID, handle and ProxyKey.
type Session struct {
	// ID is the cookie value: 256 random bits.
	ID string `json:"id"`
	// ProxyKey is what the backend receives as Proxy-Session and passes to
	// the calling port; distinct from ID so the cookie never reaches a
	// backend.
	ProxyKey string `json:"proxy_key"`
	// Host is the ingress host the session was made on; it is valid there only.
	Host   string `json:"host"`
	DID    string `json:"did"`
	Handle string `json:"handle"`
	PDS    string `json:"pds"`
	// Issuer is the authorization server that issued the tokens.
	Issuer string `json:"issuer"`
	// ClientID is the OAuth client the tokens belong to; refreshes use it.
	ClientID     string `json:"client_id"`
	Scope        string `json:"scope"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	// TokenExpiry is when the access token expires.
	TokenExpiry time.Time `json:"token_expiry"`
	// DPoPKey is the session's private DPoP key, stored as a JWK and
	// parsed once, when the session is loaded or made.
	DPoPKey *dpop.Key `json:"dpop_key"`
	// AuthServerNonce and PDSNonce are the last DPoP nonces seen, so a
	// restart does not cost a round trip per server.
	AuthServerNonce string    `json:"as_nonce,omitempty"`
	PDSNonce        string    `json:"pds_nonce,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	RefreshedAt     time.Time `json:"refreshed_at,omitzero"`
	// HandleCheckedAt is when Handle was last verified against the DID
	// (both ways): at sign-in, at each refresh, and at each recheck, even
	// when the refresh that followed the check failed.
	HandleCheckedAt time.Time `json:"handle_checked_at,omitzero"`
	// Expiry ends the session even if its tokens could still be refreshed;
	// each refresh extends it.
	Expiry time.Time `json:"expiry"`
}

// DefaultLifetime is how long a session lives without a token refresh;
// each refresh extends it by as much.
const DefaultLifetime = 30 * 24 * time.Hour

// HandleRecheck is how often a session in use has its handle checked
// again: access rules that name handles admit a session only while its
// last check is recent (access.DefaultHandleMaxAge, twice this).
const HandleRecheck = time.Hour

// HandleChecked is when the session's handle was last verified. Sessions
// stored before HandleCheckedAt existed were verified at their last
// refresh, or at sign-in.
func (s Session) HandleChecked() time.Time {
	switch {
	case !s.HandleCheckedAt.IsZero():
		return s.HandleCheckedAt
	case !s.RefreshedAt.IsZero():
		return s.RefreshedAt
	}
	return s.CreatedAt
}

// Stale reports whether the session needs a visit to its servers: its
// access token has expired, or its handle is due for a recheck.
func (s Session) Stale(now time.Time) bool {
	return now.After(s.TokenExpiry) || now.Sub(s.HandleChecked()) >= HandleRecheck
}

// Size limits of what a session stores. Tokens and URLs come from servers
// that anyone can run; without limits one sign-in could store megabytes
// for a month. Real ones are far below: the reference server's access
// tokens are about 1 KB, its refresh tokens 50 bytes.
const (
	MaxTokenBytes  = 8 << 10
	MaxScopeBytes  = 4 << 10
	MaxURLBytes    = 2 << 10
	MaxDIDBytes    = 2 << 10 // the DID syntax's own limit
	MaxHandleBytes = 253     // the handle syntax's own limit
	// MaxRecordBytes bounds a session as stored (JSON): every field at
	// its limit fits, and escapes cannot multiply it.
	MaxRecordBytes = 32 << 10
)

// ErrTooLarge means a session field is over its limit.
var ErrTooLarge = errors.New("too large")

// CheckSizes reports the first field of the session over its limit.
func (s Session) CheckSizes() error {
	for _, f := range []struct {
		name  string
		value string
		limit int
	}{
		{"access token", s.AccessToken, MaxTokenBytes},
		{"refresh token", s.RefreshToken, MaxTokenBytes},
		{"scope", s.Scope, MaxScopeBytes},
		{"DID", s.DID, MaxDIDBytes},
		{"handle", s.Handle, MaxHandleBytes},
		{"PDS URL", s.PDS, MaxURLBytes},
		{"issuer", s.Issuer, MaxURLBytes},
		{"client id", s.ClientID, MaxURLBytes},
		{"authorization server nonce", s.AuthServerNonce, MaxTokenBytes},
		{"PDS nonce", s.PDSNonce, MaxTokenBytes},
	} {
		if len(f.value) > f.limit {
			return fmt.Errorf("the session's %s is %d bytes, over the limit of %d: %w", f.name, len(f.value), f.limit, ErrTooLarge)
		}
	}
	// Tokens and scope are printable ASCII (RFC 6749, appendix A): other
	// bytes are stored as escapes six times their size.
	for _, f := range []struct{ name, value string }{
		{"access token", s.AccessToken}, {"refresh token", s.RefreshToken}, {"scope", s.Scope},
	} {
		if i := strings.IndexFunc(f.value, func(r rune) bool { return r < 0x20 || r > 0x7e }); i >= 0 {
			return fmt.Errorf("the session's %s holds a byte that is not printable ASCII at %d: %w", f.name, i, ErrTooLarge)
		}
	}
	return nil
}

// encodeSession is a session as stored, within MaxRecordBytes.
func encodeSession(sess *Session) ([]byte, error) {
	v, err := json.Marshal(sess)
	if err != nil {
		return nil, fmt.Errorf("encode session: %w", err)
	}
	if len(v) > MaxRecordBytes {
		return nil, fmt.Errorf("the session is %d bytes stored, over the limit of %d: %w", len(v), MaxRecordBytes, ErrTooLarge)
	}
	return v, nil
}

// Pending is an authorization request between /@/signin and /@/callback.
type Pending struct {
	State    string `json:"state"`
	Host     string `json:"host"`
	ClientID string `json:"client_id"`
	Issuer   string `json:"issuer"`
	// ExpectedDID is set when the user typed a handle or DID; the token's
	// sub must equal it.
	ExpectedDID string `json:"expected_did,omitempty"`
	// Handle is the verified handle for ExpectedDID.
	Handle string `json:"handle,omitempty"`
	// PDS is set when the user typed a handle or DID.
	PDS          string    `json:"pds,omitempty"`
	PKCEVerifier string    `json:"pkce_verifier"`
	DPoPKey      *dpop.Key `json:"dpop_key"`
	// Redirect is the same-site path to return to after sign-in.
	Redirect string `json:"redirect"`
	// Client is the address the sign-in was started from (as the rate
	// limits count it), for its share of the sign-ins in progress.
	Client string `json:"client,omitempty"`
	// Binding is the random value of the browser's state cookie: only the
	// browser that started the sign-in can finish it.
	Binding   string    `json:"binding"`
	CreatedAt time.Time `json:"created_at"`
	Expiry    time.Time `json:"expiry"`
}

// Options configure Open.
type Options struct {
	// LockTimeout bounds the wait for bbolt's file lock (another ioproxy
	// using the same data dir). Default 2s.
	LockTimeout time.Duration
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

// Defaults of Options.
const (
	DefaultMaxSessions   = 100000
	DefaultMaxPerAccount = 10
	DefaultMaxPending    = 10000
	// DefaultMaxPendingPerClient is a minute of sign-in starts: a person
	// starts one at a time, an office behind one address a few.
	DefaultMaxPendingPerClient = 30
)

// ErrFull means the store holds as many sessions (or sign-ins in
// progress) as it may.
var ErrFull = errors.New("the session store is full")

// Store is the session store. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	now  func() time.Time
	opts Options
	// writes counts committed write transactions (each costs two
	// fdatasyncs): for metrics, and for tests that prove a request cost
	// none.
	writes atomic.Uint64
	// pending counts the pending sign-ins on disk, for the MaxPending
	// limits.
	pending *pendingCounts

	mu      sync.RWMutex
	byID    map[string]*Session
	byProxy map[string]*Session
}

// Open opens (creating if needed) the store file at path and loads every
// live session into memory.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout == 0 {
		opts.LockTimeout = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxSessions <= 0 {
		opts.MaxSessions = DefaultMaxSessions
	}
	if opts.MaxPerAccount <= 0 {
		opts.MaxPerAccount = DefaultMaxPerAccount
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.MaxPendingPerClient <= 0 {
		opts.MaxPendingPerClient = DefaultMaxPendingPerClient
	}
	if opts.MaxPendingPerIssuer <= 0 {
		opts.MaxPendingPerIssuer = max(1, opts.MaxPending/4)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir for %s: %w", path, err)
	}
	if err := checkPrivate(filepath.Dir(path), path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open session store %s: the file is locked; another ioproxy is using this data dir (one data dir belongs to one process)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open session store %s: %w", path, err)
	}
	s := &Store{db: db, now: opts.Now, opts: opts, pending: newPendingCounts(), byID: map[string]*Session{}, byProxy: map[string]*Session{}}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) load() error {
	now := s.now()
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPending, bucketSessions, bucketKeys} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		var expired [][]byte
		err := tx.Bucket(bucketSessions).ForEach(func(k, v []byte) error {
			var sess Session
			if err := json.Unmarshal(v, &sess); err != nil {
				return fmt.Errorf("decode session: %w", err)
			}
			if !sess.Expiry.IsZero() && now.After(sess.Expiry) {
				expired = append(expired, append([]byte(nil), k...))
				return nil
			}
			s.byID[sess.ID] = &sess
			s.byProxy[sess.ProxyKey] = &sess
			return nil
		})
		if err != nil {
			return fmt.Errorf("load sessions: %w", err)
		}
		var pending []Pending
		_ = tx.Bucket(bucketPending).ForEach(func(_, v []byte) error {
			var p Pending
			_ = json.Unmarshal(v, &p) // a damaged one still takes a place until swept
			pending = append(pending, p)
			return nil
		})
		s.pending.reset(pending)
		for _, k := range expired {
			if err := tx.Bucket(bucketSessions).Delete(k); err != nil {
				return fmt.Errorf("delete expired session: %w", err)
			}
		}
		return nil
	})
}

// Close closes the bbolt file.
func (s *Store) Close() error { return s.db.Close() }

// NewToken returns 256 random bits, base64url-encoded: session ids, proxy
// keys, states.
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b)
}

// PutPending stores an authorization request under its state. It fails
// with ErrFull when MaxPending sign-ins are in progress.
func (s *Store) PutPending(p Pending) error {
	if !WellFormedToken(p.State) {
		return fmt.Errorf("store pending sign-in: the state is not a token of NewToken's shape")
	}
	v, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode pending sign-in: %w", err)
	}
	if err := s.pending.admit(p, s.opts); err != nil {
		return fmt.Errorf("store pending sign-in: %w", err)
	}
	if err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).Put([]byte(p.State), v)
	}); err != nil {
		s.pending.release(p)
		return fmt.Errorf("store pending sign-in: %w", err)
	}
	return nil
}

// WellFormedToken reports whether s has the shape of NewToken's tokens
// (43 base64url characters), so that junk costs no lookup at all.
func WellFormedToken(s string) bool {
	if len(s) != 43 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// TakePending deletes and returns the authorization request for state. It
// is deleted before the caller does anything with it, so a replayed state
// finds nothing. A state ioproxy did not issue costs no write: anyone can
// send one, and a write is two fdatasyncs that every sign-in, sign-out and
// refresh would queue behind.
func (s *Store) TakePending(state string) (Pending, error) {
	if !WellFormedToken(state) {
		return Pending{}, ErrNotFound
	}
	var exists bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		exists = tx.Bucket(bucketPending).Get([]byte(state)) != nil
		return nil
	}); err != nil {
		return Pending{}, fmt.Errorf("look up pending sign-in: %w", err)
	}
	if !exists {
		return Pending{}, ErrNotFound
	}
	var p Pending
	var found bool
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		v := b.Get([]byte(state))
		if v == nil {
			return nil // taken by a concurrent callback
		}
		found = true
		if err := json.Unmarshal(v, &p); err != nil {
			return fmt.Errorf("decode pending sign-in: %w", err)
		}
		return b.Delete([]byte(state))
	})
	if err != nil {
		return Pending{}, fmt.Errorf("take pending sign-in: %w", err)
	}
	if !found {
		return Pending{}, ErrNotFound
	}
	s.pending.release(p)
	if s.now().After(p.Expiry) {
		return Pending{}, ErrExpired
	}
	return p, nil
}

// DeleteExpired removes expired pending sign-ins and sessions; it returns
// how many it removed.
func (s *Store) DeleteExpired() (int, error) {
	now := s.now()
	var n int
	var gone []string
	var left []Pending // the pending sign-ins that stay
	s.mu.RLock()
	for id, sess := range s.byID {
		if !sess.Expiry.IsZero() && now.After(sess.Expiry) {
			gone = append(gone, id)
		}
	}
	s.mu.RUnlock()
	if len(gone) == 0 && !s.anyPendingExpired(now) {
		// Nothing to do: the sweep runs every minute and must not cost
		// a write each time.
		return 0, nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketPending)
		var keys [][]byte
		err := pb.ForEach(func(k, v []byte) error {
			var p Pending
			if err := json.Unmarshal(v, &p); err != nil || now.After(p.Expiry) {
				keys = append(keys, append([]byte(nil), k...))
			} else {
				left = append(left, p)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := pb.Delete(k); err != nil {
				return err
			}
		}
		n += len(keys)
		sb := tx.Bucket(bucketSessions)
		for _, id := range gone {
			if err := sb.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("delete expired sign-ins and sessions: %w", err)
	}
	s.pending.reset(left)
	s.mu.Lock()
	for _, id := range gone {
		if sess, ok := s.byID[id]; ok {
			delete(s.byProxy, sess.ProxyKey)
			delete(s.byID, id)
		}
	}
	s.mu.Unlock()
	return n + len(gone), nil
}

// Create stores a new session. Sessions over their size limits are
// refused with ErrTooLarge, and a full store refuses with ErrFull. When
// the account already has MaxPerAccount sessions on the host, the oldest
// are deleted in the same write and returned, for the caller to revoke
// their tokens.
func (s *Store) Create(sess Session) (evicted []Session, err error) {
	if sess.ID == "" || sess.ProxyKey == "" {
		return nil, fmt.Errorf("create session: id and proxy key are required")
	}
	if err := sess.CheckSizes(); err != nil {
		return nil, fmt.Errorf("create session for %s: %w", textutil.Clip(sess.DID, 64), err)
	}
	v, err := encodeSession(&sess)
	if err != nil {
		return nil, fmt.Errorf("create session for %s: %w", textutil.Clip(sess.DID, 64), err)
	}
	s.mu.RLock()
	total := len(s.byID)
	evicted = s.oldestBeyondLocked(sess.DID, sess.Host, s.opts.MaxPerAccount-1)
	s.mu.RUnlock()
	if total-len(evicted) >= s.opts.MaxSessions {
		return nil, fmt.Errorf("create session for %s: %d sessions stored: %w", sess.DID, total, ErrFull)
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		for _, old := range evicted {
			if err := b.Delete([]byte(old.ID)); err != nil {
				return err
			}
		}
		return b.Put([]byte(sess.ID), v)
	})
	if err != nil {
		return nil, fmt.Errorf("create session for %s: %w", sess.DID, err)
	}
	s.mu.Lock()
	for _, old := range evicted {
		s.forgetLocked(old.ID)
	}
	s.byID[sess.ID] = &sess
	s.byProxy[sess.ProxyKey] = &sess
	s.mu.Unlock()
	return evicted, nil
}

// oldestBeyondLocked returns the sessions of did on host beyond the keep
// newest ones, oldest first.
func (s *Store) oldestBeyondLocked(did, host string, keep int) []Session {
	var mine []Session
	for _, sess := range s.byID {
		if sess.DID == did && sess.Host == host {
			mine = append(mine, *sess)
		}
	}
	if len(mine) <= keep {
		return nil
	}
	slices.SortFunc(mine, func(a, b Session) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return mine[:len(mine)-keep]
}

func (s *Store) forgetLocked(id string) {
	if sess, ok := s.byID[id]; ok {
		delete(s.byProxy, sess.ProxyKey)
		delete(s.byID, id)
	}
}

// update runs a write transaction and counts it.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	err := s.db.Update(fn)
	if err == nil {
		s.writes.Add(1)
	}
	return err
}

// Writes is the number of write transactions committed since Open.
func (s *Store) Writes() uint64 { return s.writes.Load() }

// anyPendingExpired reports whether a pending sign-in has expired.
func (s *Store) anyPendingExpired(now time.Time) bool {
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).ForEach(func(_, v []byte) error {
			var p Pending
			if err := json.Unmarshal(v, &p); err != nil || now.After(p.Expiry) {
				found = true
				return errStop
			}
			return nil
		})
	})
	return found
}

var errStop = errors.New("stop")

// Get returns the live session with the given id. It reads memory only.
func (s *Store) Get(id string) (Session, bool) {
	s.mu.RLock()
	sess, ok := s.byID[id]
	s.mu.RUnlock()
	return s.live(sess, ok)
}

// ByProxyKey returns the live session whose proxy key is key.
func (s *Store) ByProxyKey(key string) (Session, bool) {
	s.mu.RLock()
	sess, ok := s.byProxy[key]
	s.mu.RUnlock()
	return s.live(sess, ok)
}

func (s *Store) live(sess *Session, ok bool) (Session, bool) {
	if !ok || (!sess.Expiry.IsZero() && s.now().After(sess.Expiry)) {
		return Session{}, false
	}
	return *sess, true
}

// Update applies fn to the session and saves the result atomically: in
// memory and on disk, or not at all when fn or the write fails. Callers
// that refresh tokens serialize per session themselves (a refresh token is
// single use); Update only guarantees that each write is whole.
func (s *Store) Update(id string, fn func(*Session) error) (Session, error) {
	s.mu.RLock()
	cur, ok := s.byID[id]
	s.mu.RUnlock()
	if !ok {
		return Session{}, ErrNotFound
	}
	next := *cur
	if err := fn(&next); err != nil {
		return Session{}, err
	}
	next.ID, next.ProxyKey = cur.ID, cur.ProxyKey
	if err := next.CheckSizes(); err != nil {
		return Session{}, fmt.Errorf("save session for %s: %w", next.DID, err)
	}
	v, err := encodeSession(&next)
	if err != nil {
		return Session{}, fmt.Errorf("save session for %s: %w", next.DID, err)
	}
	// Write only a session that is still on disk: a Delete (sign-out)
	// that landed while fn ran must not be undone, or the session would
	// come back at the next restart. bbolt serializes the two.
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		if b.Get([]byte(id)) == nil {
			return ErrNotFound
		}
		return b.Put([]byte(id), v)
	})
	if errors.Is(err, ErrNotFound) {
		return Session{}, ErrNotFound
	} else if err != nil {
		return Session{}, fmt.Errorf("save session for %s: %w", next.DID, err)
	}
	s.mu.Lock()
	if _, still := s.byID[id]; still {
		s.byID[id] = &next
		s.byProxy[next.ProxyKey] = &next
	}
	s.mu.Unlock()
	return next, nil
}

// Delete removes a session; deleting a missing session is not an error.
func (s *Store) Delete(id string) error {
	s.mu.RLock()
	_, known := s.byID[id]
	s.mu.RUnlock()
	if !known {
		// Every stored session is in memory: nothing to write.
		return nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	s.mu.Lock()
	s.forgetLocked(id)
	s.mu.Unlock()
	return nil
}

// List returns a copy of every live session.
func (s *Store) List() []Session {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Session, 0, len(s.byID))
	for _, sess := range s.byID {
		if live, ok := s.live(sess, true); ok {
			out = append(out, live)
		}
	}
	return out
}

// Count returns the number of sessions in memory.
func (s *Store) Count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byID)
}

// Secret returns the stored secret named name, creating it with generate the
// first time. ioproxy keeps its OAuth client key this way, so the key
// published at /@/jwks.json survives restarts.
func (s *Store) Secret(name string, generate func() ([]byte, error)) ([]byte, error) {
	var out []byte
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if v := b.Get([]byte(name)); v != nil {
			out = append([]byte(nil), v...)
			return nil
		}
		v, err := generate()
		if err != nil {
			return err
		}
		out = v
		return b.Put([]byte(name), v)
	})
	if err != nil {
		return nil, fmt.Errorf("load key %q: %w", name, err)
	}
	return out, nil
}

// RunCleanup deletes expired pending sign-ins and sessions every interval
// until ctx ends.
func (s *Store) RunCleanup(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.DeleteExpired(); err != nil {
				log.Error("session cleanup failed", "err", err)
			} else if n > 0 {
				log.Debug("session cleanup", "removed", n)
			}
		}
	}
}
