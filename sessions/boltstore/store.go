// Package boltstore is the session store in one bbolt file in the data
// dir: ioproxy's default, for one process.
//
// Every ingress request looks a session up, so lookups never touch the
// disk: all sessions live in memory as well, loaded at Open. bbolt is
// written only at sign-in, sign-out and token refresh, in short
// transactions (bbolt has one writer at a time). bbolt takes an exclusive
// lock on its file: one data dir belongs to one ioproxy process.
//
// With Config.Keys (encryption_key), every record is sealed (package
// sealed) for a record id that names its kind and key, as redisstore's:
// "session:<id>", "pending:<state>", "secret:<name>". Open seals the
// plaintext records an ioproxy without encryption_key wrote, reseals those
// of an older key, and compacts the file, so that a copy of it holds no
// token, DPoP key, PKCE verifier or client key in the clear.
package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/ioproxy/ioproxy/internal/textutil"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

var (
	bucketPending  = []byte("pending")
	bucketSessions = []byte("sessions")
	bucketKeys     = []byte("keys")
	// bucketMeta holds keySealedBy: a value sealed with the first key of
	// the last compaction, present while no plaintext or older key's
	// bytes can be left in the file's free pages.
	bucketMeta  = []byte("meta")
	keySealedBy = []byte("sealed-by")
)

// lockTimeout bounds the wait for bbolt's file lock (another ioproxy
// using the same data dir).
const lockTimeout = 2 * time.Second

// Store is the bbolt session store.
type Store struct {
	db   *bolt.DB
	now  func() time.Time
	opts sessions.Options
	// keys seal every record; nil keeps them plain.
	keys *sealed.Keys
	// resealed counts the records Open sealed or resealed.
	resealed int
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

// Config configures a Store.
type Config struct {
	Path    string           // the bbolt file; its directory is created 0700
	Options sessions.Options // limits and clock
	// Keys seal every record: sessions, pending sign-ins and secrets (the
	// OAuth client key). nil keeps them as plain JSON.
	Keys *sealed.Keys
}

// Open opens (creating if needed) the store file at cfg.Path, refusing
// one that other users can read, and loads every live session into
// memory.
//
// With Keys, Open also rewrites, in the transaction that loads them, the
// records that are plaintext (written without encryption_key) and those
// sealed with a key other than the first (a rotation), then compacts the
// file so that no freed page keeps their old bytes (nor those of records
// deleted before: the first Open with Keys, or with a new first key,
// compacts even with nothing to reseal); Resealed counts them.
// So turning encryption on, or putting a new key first, needs a restart,
// and the old key may go after it. A record that does not open (a key
// that is not in Keys, damage), or a sealed record when Keys is nil
// (ErrSealed), fails Open: nothing is dropped.
func Open(cfg Config) (*Store, error) {
	path, opts := cfg.Path, cfg.Options.WithDefaults()
	if err := checkPrivate(filepath.Dir(path), path); err != nil {
		return nil, err
	}
	db, err := openDB(path)
	if err != nil {
		return nil, fmt.Errorf("open session store %s: %w", path, err)
	}
	s := &Store{db: db, now: opts.Now, opts: opts, keys: cfg.Keys, pending: newPendingCounts(), locks: sessions.NewLocalLocks(opts.Now),
		byID: map[string]*sessions.Session{}, byProxy: map[string]*sessions.Session{}}
	compact, err := s.load()
	if err == nil && compact {
		err = s.compact(path)
	}
	if err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("open session store %s: %w", path, err)
	}
	return s, nil
}

// openDB opens the bbolt file, waiting lockTimeout for its lock.
func openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, errors.New("the file is locked; another ioproxy is using this data dir (one data dir belongs to one process)")
	}
	return db, err
}

// load reads every session, pending sign-in and secret at Open, dropping
// the expired sessions and sealing or resealing what needs it. It reports
// whether the file needs compacting: with Keys, unless the last
// compaction was under the same first key and nothing has needed sealing
// since (a compaction that did not finish leaves the need).
func (s *Store) load() (compact bool, err error) {
	l, err := newLoader(s.keys)
	if err != nil {
		return false, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPending, bucketSessions, bucketKeys, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		if err := s.loadSessions(tx, l); err != nil {
			return fmt.Errorf("load sessions: %w", err)
		}
		if err := s.loadPending(tx, l); err != nil {
			return fmt.Errorf("load pending sign-ins: %w", err)
		}
		if err := l.walk(tx, secretKind, func([]byte) (bool, error) { return true, nil }); err != nil {
			return fmt.Errorf("load secrets: %w", err)
		}
		meta := tx.Bucket(bucketMeta)
		if s.keys == nil || l.dirty {
			// Plaintext is, or may be, written now: kept until compacted.
			if err := meta.Delete(keySealedBy); err != nil {
				return fmt.Errorf("clear the compaction mark: %w", err)
			}
		}
		compact = s.keys != nil && !s.compactedUnderFirstKey(meta.Get(keySealedBy))
		return nil
	})
	s.resealed = l.resealed
	return compact, err
}

// loadSessions puts every live session in memory and deletes the expired
// ones.
func (s *Store) loadSessions(tx *bolt.Tx, l *loader) error {
	now := s.now()
	return l.walk(tx, sessionKind, func(plain []byte) (bool, error) {
		sess, err := sessions.DecodeSession(plain)
		if err != nil {
			return false, err
		}
		if !sess.Expiry.IsZero() && now.After(sess.Expiry) {
			return false, nil
		}
		s.byID[sess.ID] = &sess
		s.byProxy[sess.ProxyKey] = &sess
		return true, nil
	})
}

// loadPending counts the pending sign-ins.
func (s *Store) loadPending(tx *bolt.Tx, l *loader) error {
	var pending []sessions.Pending
	err := l.walk(tx, pendingKind, func(plain []byte) (bool, error) {
		var p sessions.Pending
		_ = json.Unmarshal(plain, &p) // a damaged one still takes a place until swept
		pending = append(pending, p)
		return true, nil
	})
	if err != nil {
		return err
	}
	s.pending.reset(pending)
	return nil
}

// Resealed is the number of records (sessions, pending sign-ins, secrets)
// that Open rewrote sealed with the first key: plaintext ones when
// encryption was just turned on, and those of an older key after a
// rotation. 0 without Keys, and once every record is sealed with the
// first key. For the caller to log.
func (s *Store) Resealed() int { return s.resealed }

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

func clipDID(did string) string { return textutil.Clip(did, 64) }
