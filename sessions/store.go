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
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
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
	// DPoPKey is the session's private DPoP key as a JWK.
	DPoPKey json.RawMessage `json:"dpop_key"`
	// AuthServerNonce and PDSNonce are the last DPoP nonces seen, so a
	// restart does not cost a round trip per server.
	AuthServerNonce string    `json:"as_nonce,omitempty"`
	PDSNonce        string    `json:"pds_nonce,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	RefreshedAt     time.Time `json:"refreshed_at,omitzero"`
	// Expiry ends the session even if its tokens could still be refreshed;
	// each refresh extends it.
	Expiry time.Time `json:"expiry"`
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
	PDS          string          `json:"pds,omitempty"`
	PKCEVerifier string          `json:"pkce_verifier"`
	DPoPKey      json.RawMessage `json:"dpop_key"`
	// Redirect is the same-site path to return to after sign-in.
	Redirect string `json:"redirect"`
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
}

// Store is the session store. Its methods are safe for concurrent use.
type Store struct {
	db  *bolt.DB
	now func() time.Time

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
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir for %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open session store %s: the file is locked; another ioproxy is using this data dir (one data dir belongs to one process)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open session store %s: %w", path, err)
	}
	s := &Store{db: db, now: opts.Now, byID: map[string]*Session{}, byProxy: map[string]*Session{}}
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

// PutPending stores an authorization request under its state.
func (s *Store) PutPending(p Pending) error {
	v, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode pending sign-in: %w", err)
	}
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).Put([]byte(p.State), v)
	}); err != nil {
		return fmt.Errorf("store pending sign-in: %w", err)
	}
	return nil
}

// TakePending deletes and returns the authorization request for state. It
// is deleted before the caller does anything with it, so a replayed state
// finds nothing.
func (s *Store) TakePending(state string) (Pending, error) {
	var p Pending
	var found bool
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		v := b.Get([]byte(state))
		if v == nil {
			return nil
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
	err := s.db.Update(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketPending)
		var keys [][]byte
		err := pb.ForEach(func(k, v []byte) error {
			var p Pending
			if err := json.Unmarshal(v, &p); err != nil || now.After(p.Expiry) {
				keys = append(keys, append([]byte(nil), k...))
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
		s.mu.RLock()
		for id, sess := range s.byID {
			if !sess.Expiry.IsZero() && now.After(sess.Expiry) {
				gone = append(gone, id)
			}
		}
		s.mu.RUnlock()
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

// Create stores a new session.
func (s *Store) Create(sess Session) error {
	if sess.ID == "" || sess.ProxyKey == "" {
		return fmt.Errorf("create session: id and proxy key are required")
	}
	if err := s.write(&sess); err != nil {
		return fmt.Errorf("create session for %s: %w", sess.DID, err)
	}
	s.mu.Lock()
	s.byID[sess.ID] = &sess
	s.byProxy[sess.ProxyKey] = &sess
	s.mu.Unlock()
	return nil
}

func (s *Store) write(sess *Session) error {
	v, err := json.Marshal(sess)
	if err != nil {
		return fmt.Errorf("encode session: %w", err)
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).Put([]byte(sess.ID), v)
	})
}

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
	v, err := json.Marshal(&next)
	if err != nil {
		return Session{}, fmt.Errorf("encode session: %w", err)
	}
	// Write only a session that is still on disk: a Delete (sign-out)
	// that landed while fn ran must not be undone, or the session would
	// come back at the next restart. bbolt serializes the two.
	err = s.db.Update(func(tx *bolt.Tx) error {
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
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).Delete([]byte(id))
	})
	if err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	s.mu.Lock()
	if sess, ok := s.byID[id]; ok {
		delete(s.byProxy, sess.ProxyKey)
		delete(s.byID, id)
	}
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

// Key returns the stored key named name, creating it with generate the
// first time. ioproxy keeps its OAuth client key this way, so the key
// published at /@/jwks.json survives restarts.
func (s *Store) Key(name string, generate func() ([]byte, error)) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *bolt.Tx) error {
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
