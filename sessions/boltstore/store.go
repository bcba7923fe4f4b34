// Package boltstore is the session store in one bbolt file in the data
// dir: ioproxy's default, for one process.
//
// Every ingress request looks a session up, so lookups never touch the
// disk: all sessions live in memory as well, loaded at Open. bbolt is
// written only at sign-in, sign-out and token refresh, in short
// transactions (bbolt has one writer at a time). bbolt takes an exclusive
// lock on its file: one data dir belongs to one ioproxy process.
package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ioproxy/ioproxy/internal/textutil"
	"github.com/ioproxy/ioproxy/sessions"
)

var (
	bucketPending  = []byte("pending")
	bucketSessions = []byte("sessions")
	bucketKeys     = []byte("keys")
)

// lockTimeout bounds the wait for bbolt's file lock (another ioproxy
// using the same data dir).
const lockTimeout = 2 * time.Second

// Store is the bbolt session store.
type Store struct {
	db   *bolt.DB
	now  func() time.Time
	opts sessions.Options
	// writes counts committed write transactions (each costs two
	// fdatasyncs): for metrics, and for tests that prove a request cost
	// none.
	writes atomic.Uint64
	// pending counts the pending sign-ins on disk, for the MaxPending
	// limits.
	pending *pendingCounts
	locks   *sessions.LocalLocks

	// writing serializes the writers: each reads memory, writes bbolt,
	// then updates memory, and two interleaved would lose one's work
	// (an update, a cap, a pending count). bbolt has one writer at a time
	// anyway, so it costs no throughput.
	writing sync.Mutex

	mu      sync.RWMutex
	byID    map[string]*sessions.Session
	byProxy map[string]*sessions.Session
}

var _ sessions.Store = (*Store)(nil)

// Open opens (creating if needed) the store file at path, refusing one
// that other users can read, and loads every live session into memory.
func Open(path string, opts sessions.Options) (*Store, error) {
	opts = opts.WithDefaults()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir for %s: %w", path, err)
	}
	if err := checkPrivate(filepath.Dir(path), path); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("open session store %s: the file is locked; another ioproxy is using this data dir (one data dir belongs to one process)", path)
	}
	if err != nil {
		return nil, fmt.Errorf("open session store %s: %w", path, err)
	}
	s := &Store{db: db, now: opts.Now, opts: opts, pending: newPendingCounts(), locks: sessions.NewLocalLocks(opts.Now),
		byID: map[string]*sessions.Session{}, byProxy: map[string]*sessions.Session{}}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// load reads every session and pending sign-in at Open, dropping the
// expired sessions.
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
			sess, err := sessions.DecodeSession(v)
			if err != nil {
				return err
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
		var pending []sessions.Pending
		_ = tx.Bucket(bucketPending).ForEach(func(_, v []byte) error {
			var p sessions.Pending
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

// Lock takes an in-process lock: one process owns the file.
func (s *Store) Lock(ctx context.Context, name string, lease time.Duration) (func(), error) {
	return s.locks.Lock(ctx, name, lease)
}

// Secret returns the stored secret named name, creating it with generate
// the first time. ioproxy keeps its OAuth client key this way, so the key
// published at /@/jwks.json survives restarts.
func (s *Store) Secret(_ context.Context, name string, generate func() ([]byte, error)) ([]byte, error) {
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
		return nil, fmt.Errorf("load secret %q: %w", name, err)
	}
	return out, nil
}

func clipDID(did string) string { return textutil.Clip(did, 64) }
