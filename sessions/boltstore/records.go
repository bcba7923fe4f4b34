package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ioproxy/ioproxy/sessions"
)

// Create stores a new session; see sessions.Store.
func (s *Store) Create(_ context.Context, sess sessions.Session) (evicted []sessions.Session, err error) {
	if sess.ID == "" || sess.ProxyKey == "" {
		return nil, errors.New("create session: id and proxy key are required")
	}
	v, err := sessions.EncodeSession(&sess)
	if err != nil {
		return nil, fmt.Errorf("create session for %s: %w", clipDID(sess.DID), err)
	}
	s.writing.Lock()
	defer s.writing.Unlock()
	s.mu.RLock()
	total := len(s.byID)
	evicted = s.oldestBeyondLocked(sess.Account(), sess.Host, s.opts.MaxPerAccount-1)
	s.mu.RUnlock()
	if total-len(evicted) >= s.opts.MaxSessions {
		return nil, fmt.Errorf("create session for %s: %d sessions stored: %w", sess.DID, total, sessions.ErrFull)
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSessions)
		for _, old := range evicted {
			if err := b.Delete([]byte(old.ID)); err != nil {
				return err
			}
		}
		return b.Put([]byte(sess.ID), s.seal(sessionKind, sess.ID, v))
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

// oldestBeyondLocked returns the sessions of an account (Session.Account)
// on host beyond the keep newest ones, oldest first.
func (s *Store) oldestBeyondLocked(account, host string, keep int) []sessions.Session {
	var mine []sessions.Session
	for _, sess := range s.byID {
		if sess.Account() == account && sess.Host == host {
			mine = append(mine, *sess)
		}
	}
	if len(mine) <= keep {
		return nil
	}
	slices.SortFunc(mine, func(a, b sessions.Session) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return mine[:len(mine)-keep]
}

func (s *Store) forgetLocked(id string) {
	if sess, ok := s.byID[id]; ok {
		delete(s.byProxy, sess.ProxyKey)
		delete(s.byID, id)
	}
}

// Get returns the live session with the given id. It reads memory only.
func (s *Store) Get(_ context.Context, id string) (sessions.Session, error) {
	s.mu.RLock()
	sess := s.byID[id]
	s.mu.RUnlock()
	return s.live(sess)
}

// ByProxyKey returns the live session whose proxy key is key.
func (s *Store) ByProxyKey(_ context.Context, key string) (sessions.Session, error) {
	s.mu.RLock()
	sess := s.byProxy[key]
	s.mu.RUnlock()
	return s.live(sess)
}

func (s *Store) live(sess *sessions.Session) (sessions.Session, error) {
	if sess == nil || (!sess.Expiry.IsZero() && s.now().After(sess.Expiry)) {
		return sessions.Session{}, sessions.ErrNotFound
	}
	return *sess, nil
}

// Update applies fn to the session and saves the result; see
// sessions.Store.
//
// fn runs outside the write lock, on a copy; the result is saved only if
// the session is still the one fn saw, else fn runs again on the newer
// one. So a slow fn does not hold up other writers, and a Delete that
// lands while fn runs wins.
func (s *Store) Update(_ context.Context, id string, fn func(*sessions.Session) error) (sessions.Session, error) {
	for range maxUpdateAttempts {
		s.mu.RLock()
		cur := s.byID[id]
		s.mu.RUnlock()
		if cur == nil {
			return sessions.Session{}, sessions.ErrNotFound
		}
		next := *cur
		if err := fn(&next); err != nil {
			return sessions.Session{}, err
		}
		next.ID, next.ProxyKey = cur.ID, cur.ProxyKey
		saved, err := s.replace(cur, &next)
		if errors.Is(err, errChanged) {
			continue
		}
		return saved, err
	}
	return sessions.Session{}, fmt.Errorf("update session: %w after %d attempts", errChanged, maxUpdateAttempts)
}

// maxUpdateAttempts bounds how often Update runs fn again because another
// writer changed the session first; with fn quick, a handful suffice.
const maxUpdateAttempts = 100

// errChanged: the session changed (or went) between reading and saving.
var errChanged = errors.New("session changed by another writer")

// replace saves next in place of cur if cur is still the stored session.
func (s *Store) replace(cur, next *sessions.Session) (sessions.Session, error) {
	v, err := sessions.EncodeSession(next)
	if err != nil {
		return sessions.Session{}, fmt.Errorf("save session for %s: %w", next.DID, err)
	}
	s.writing.Lock()
	defer s.writing.Unlock()
	s.mu.RLock()
	now, still := s.byID[cur.ID]
	s.mu.RUnlock()
	if !still {
		// Deleted meanwhile (sign-out): an update never brings it back.
		return sessions.Session{}, sessions.ErrNotFound
	}
	if now != cur {
		return sessions.Session{}, errChanged
	}
	err = s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSessions).Put([]byte(cur.ID), s.seal(sessionKind, cur.ID, v))
	})
	if err != nil {
		return sessions.Session{}, fmt.Errorf("save session for %s: %w", next.DID, err)
	}
	s.mu.Lock()
	s.byID[cur.ID] = next
	s.byProxy[next.ProxyKey] = next
	s.mu.Unlock()
	return *next, nil
}

// Delete removes a session; deleting a missing session is not an error.
func (s *Store) Delete(_ context.Context, id string) error {
	s.writing.Lock()
	defer s.writing.Unlock()
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
func (s *Store) List(_ context.Context) ([]sessions.Session, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]sessions.Session, 0, len(s.byID))
	for _, sess := range s.byID {
		if live, err := s.live(sess); err == nil {
			out = append(out, live)
		}
	}
	return out, nil
}

// Count returns the number of sessions in memory.
func (s *Store) Count(_ context.Context) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.byID), nil
}

// DeleteExpired removes expired pending sign-ins and sessions; it returns
// how many it removed. With nothing expired it costs no write.
func (s *Store) DeleteExpired(_ context.Context) (int, error) {
	s.writing.Lock()
	defer s.writing.Unlock()
	now := s.now()
	var gone []string
	s.mu.RLock()
	for id, sess := range s.byID {
		if !sess.Expiry.IsZero() && now.After(sess.Expiry) {
			gone = append(gone, id)
		}
	}
	s.mu.RUnlock()
	if len(gone) == 0 && !s.anyPendingExpired(now) {
		// The sweep runs every minute and must not cost a write each time.
		return 0, nil
	}
	var n int
	var left []sessions.Pending // the pending sign-ins that stay
	err := s.update(func(tx *bolt.Tx) error {
		var err error
		if n, left, err = s.deleteExpiredPending(tx.Bucket(bucketPending), now); err != nil {
			return err
		}
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
		s.forgetLocked(id)
	}
	s.mu.Unlock()
	return n + len(gone), nil
}

// deleteExpiredPending removes the expired (or damaged) pending sign-ins
// of pb, and returns how many, and those that stay.
func (s *Store) deleteExpiredPending(pb *bolt.Bucket, now time.Time) (int, []sessions.Pending, error) {
	var keys [][]byte
	var left []sessions.Pending
	err := pb.ForEach(func(k, v []byte) error {
		p, err := s.decodePending(k, v)
		if err != nil || now.After(p.Expiry) {
			keys = append(keys, append([]byte(nil), k...))
		} else {
			left = append(left, p)
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	for _, k := range keys {
		if err := pb.Delete(k); err != nil {
			return 0, nil, err
		}
	}
	return len(keys), left, nil
}

// anyPendingExpired reports whether a pending sign-in has expired.
func (s *Store) anyPendingExpired(now time.Time) bool {
	found := false
	_ = s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
			if p, err := s.decodePending(k, v); err != nil || now.After(p.Expiry) {
				found = true
				return errStop
			}
			return nil
		})
	})
	return found
}

var errStop = errors.New("stop")

// decodePending opens and decodes the pending sign-in stored under state.
func (s *Store) decodePending(state, v []byte) (sessions.Pending, error) {
	plain, err := s.open(pendingKind, state, v)
	if err != nil {
		return sessions.Pending{}, err
	}
	var p sessions.Pending
	if err := json.Unmarshal(plain, &p); err != nil {
		return sessions.Pending{}, fmt.Errorf("decode pending sign-in: %w", err)
	}
	return p, nil
}

// PutPending stores an authorization request under its state; see
// sessions.Store.
func (s *Store) PutPending(_ context.Context, p sessions.Pending) error {
	if !sessions.WellFormedToken(p.State) {
		return errors.New("store pending sign-in: the state is not a token of NewToken's shape")
	}
	plain, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode pending sign-in: %w", err)
	}
	v := s.seal(pendingKind, p.State, plain)
	s.writing.Lock()
	defer s.writing.Unlock()
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

// TakePending deletes and returns the authorization request for state;
// see sessions.Store. A state ioproxy did not issue costs no write:
// anyone can send one, and a write is two fdatasyncs that every sign-in,
// sign-out and refresh would queue behind.
func (s *Store) TakePending(_ context.Context, state string) (sessions.Pending, error) {
	if !sessions.WellFormedToken(state) {
		return sessions.Pending{}, sessions.ErrNotFound
	}
	var exists bool
	if err := s.db.View(func(tx *bolt.Tx) error {
		exists = tx.Bucket(bucketPending).Get([]byte(state)) != nil
		return nil
	}); err != nil {
		return sessions.Pending{}, fmt.Errorf("look up pending sign-in: %w", err)
	}
	if !exists {
		return sessions.Pending{}, sessions.ErrNotFound
	}
	s.writing.Lock()
	defer s.writing.Unlock()
	var p sessions.Pending
	var found bool
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		v := b.Get([]byte(state))
		if v == nil {
			return nil // taken by a concurrent callback
		}
		found = true
		var err error
		if p, err = s.decodePending([]byte(state), v); err != nil {
			return err
		}
		return b.Delete([]byte(state))
	})
	if err != nil {
		return sessions.Pending{}, fmt.Errorf("take pending sign-in: %w", err)
	}
	if !found {
		return sessions.Pending{}, sessions.ErrNotFound
	}
	s.pending.release(p)
	if s.now().After(p.Expiry) {
		return sessions.Pending{}, sessions.ErrExpired
	}
	return p, nil
}
