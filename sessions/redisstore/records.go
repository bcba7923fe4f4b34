package redisstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ioproxy/ioproxy/sessions"
)

// Create stores a new session; see sessions.Store. Its id and proxy key
// must be tokens of sessions.NewToken's shape, as lookups of anything
// else answer ErrNotFound without asking Redis.
func (s *Store) Create(ctx context.Context, sess sessions.Session) ([]sessions.Session, error) {
	if !sessions.WellFormedToken(sess.ID) || !sessions.WellFormedToken(sess.ProxyKey) {
		return nil, errors.New("create session: the id and the proxy key must be tokens of sessions.NewToken's shape")
	}
	v, err := s.encodeSession(&sess)
	if err != nil {
		return nil, fmt.Errorf("create session for %s: %w", sess.DID, err)
	}
	r, pr, acct := ref(sess.ID), ref(sess.ProxyKey), digest(sess.Host, sess.Account())
	gen := s.cache.generation()
	res, err := createScript.Run(ctx, s.rdb,
		[]string{s.keys.session(r), s.keys.proxy(pr), s.keys.account(acct), s.keys.all()},
		string(s.keys), s.keys.channel(), s.instance, r, v, pr, acct,
		micros(sess.CreatedAt), expireAtMillis(sess.Expiry), expiryScore(sess.Expiry),
		s.opts.MaxPerAccount, s.opts.MaxSessions).StringSlice()
	if err != nil {
		return nil, storeError("create session", err)
	}
	switch res[0] {
	case "exists":
		return nil, errors.New("create session: a session with this id or proxy key exists")
	case "full":
		return nil, fmt.Errorf("create session for %s: %s sessions stored: %w", sess.DID, res[1], sessions.ErrFull)
	}
	var evicted []sessions.Session
	for i := 1; i+1 < len(res); i += 2 {
		old := res[i]
		s.cache.wrote(old, nil, s.cache.generation())
		e, err := s.decodeSession([]byte(res[i+1]), old)
		if err != nil {
			// Deleted all the same; only its tokens cannot be revoked.
			s.log.Warn("redis session store: a session evicted for a new sign-in does not open", "err", err)
			continue
		}
		evicted = append(evicted, e)
	}
	s.cache.wrote(r, &sess, gen)
	return evicted, nil
}

// Get returns the live session with the given id: from the cache when
// it is there, else from Redis.
func (s *Store) Get(ctx context.Context, id string) (sessions.Session, error) {
	if !sessions.WellFormedToken(id) {
		return sessions.Session{}, sessions.ErrNotFound
	}
	return s.lookup(ctx, id, ref(id))
}

// staleWait bounds the wait for Redis when a stale cached copy could
// answer instead: a request pays it at most once per session per
// CacheMaxAge while Redis is out of reach.
const staleWait = 250 * time.Millisecond

// lookup returns the live session of ref r (whose id is id, when the
// caller knows it): a fresh cached one, else Redis's, else, when Redis
// cannot answer, a stale cached one.
func (s *Store) lookup(ctx context.Context, id, r string) (sessions.Session, error) {
	cached, fresh, ok := s.cache.get(r)
	ok = ok && (id == "" || cached.ID == id)
	if ok && fresh {
		return s.live(cached)
	}
	fetchCtx := ctx
	if ok {
		// A stale copy is at hand: wait for Redis only briefly.
		var cancel context.CancelFunc
		fetchCtx, cancel = context.WithTimeout(ctx, staleWait)
		defer cancel()
	}
	sess, err := s.fetch(fetchCtx, id, r)
	if err != nil && !errors.Is(err, sessions.ErrNotFound) && ok {
		s.cache.touch(r)
		return s.live(cached)
	}
	if ok && errors.Is(err, sessions.ErrNotFound) {
		// Gone without an invalidation (deleted by hand, evicted by
		// Redis's maxmemory, or the message was lost): kept, it would be
		// served again the next time Redis is out of reach.
		s.cache.invalidate(r)
	}
	if err != nil {
		return sessions.Session{}, err
	}
	return s.live(sess)
}

// ByProxyKey returns the live session whose proxy key is key.
func (s *Store) ByProxyKey(ctx context.Context, key string) (sessions.Session, error) {
	if !sessions.WellFormedToken(key) {
		return sessions.Session{}, sessions.ErrNotFound
	}
	pr := ref(key)
	r, ok := s.cache.refOfProxy(pr)
	if !ok {
		var err error
		r, err = s.rdb.Get(ctx, s.keys.proxy(pr)).Result()
		if errors.Is(err, redis.Nil) {
			return sessions.Session{}, sessions.ErrNotFound
		} else if err != nil {
			return sessions.Session{}, storeError("look up proxy key", err)
		}
	}
	// The caller knows the proxy key, not the id: the session's proxy
	// key is checked instead.
	sess, err := s.lookup(ctx, "", r)
	if err != nil {
		return sessions.Session{}, err
	}
	if sess.ProxyKey != key {
		return sessions.Session{}, sessions.ErrNotFound
	}
	return sess, nil
}

// fetch reads the session of ref r from Redis and caches it. id, when
// known, must be the session's.
func (s *Store) fetch(ctx context.Context, id, r string) (sessions.Session, error) {
	gen := s.cache.generation()
	v, err := s.rdb.HGet(ctx, s.keys.session(r), "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return sessions.Session{}, sessions.ErrNotFound
	} else if err != nil {
		return sessions.Session{}, storeError("get session", err)
	}
	sess, err := s.decodeSession(v, r)
	if err != nil {
		return sessions.Session{}, storeError("get session", err)
	}
	if ref(sess.ID) != r || id != "" && sess.ID != id {
		return sessions.Session{}, storeError("get session", errors.New("the stored session is not the one its key names"))
	}
	s.cache.put(sess, gen)
	return sess, nil
}

func (s *Store) live(sess sessions.Session) (sessions.Session, error) {
	if !sess.Expiry.IsZero() && s.now().After(sess.Expiry) {
		return sessions.Session{}, sessions.ErrNotFound
	}
	return sess, nil
}

// maxUpdateAttempts bounds how often Update runs fn again because
// another writer changed the session first.
const maxUpdateAttempts = 100

// Update applies fn to the session and saves the result; see
// sessions.Store. It reads and writes in one WATCH/MULTI transaction: a
// write by anyone else in between aborts it, and fn runs again on what
// they wrote.
func (s *Store) Update(ctx context.Context, id string, fn func(*sessions.Session) error) (sessions.Session, error) {
	if !sessions.WellFormedToken(id) {
		return sessions.Session{}, sessions.ErrNotFound
	}
	for range maxUpdateAttempts {
		next, err := s.updateOnce(ctx, id, fn)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		return next, err
	}
	return sessions.Session{}, fmt.Errorf("update session: other writers changed it %d times in a row", maxUpdateAttempts)
}

// fnError carries an error of Update's fn out of the transaction as it is.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

func (s *Store) updateOnce(ctx context.Context, id string, fn func(*sessions.Session) error) (sessions.Session, error) {
	r := ref(id)
	key := s.keys.session(r)
	var next sessions.Session
	gen := s.cache.generation()
	err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
		fields, err := tx.HMGet(ctx, key, "v", "a").Result()
		if err != nil {
			return storeError("update session", err)
		}
		v, ok := fields[0].(string)
		if !ok {
			return sessions.ErrNotFound
		}
		acct, _ := fields[1].(string)
		cur, err := s.decodeSession([]byte(v), r)
		if err != nil {
			return storeError("update session", err)
		}
		if cur.ID != id {
			return storeError("update session", errors.New("the stored session is not the one its key names"))
		}
		next = cur
		if err := fn(&next); err != nil {
			return fnError{err}
		}
		next.ID, next.ProxyKey = cur.ID, cur.ProxyKey
		sealed, err := s.encodeSession(&next)
		if err != nil {
			return fmt.Errorf("save session for %s: %w", next.DID, err)
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.HSet(ctx, key, "v", sealed)
			s.expireAt(ctx, p, key, next)
			s.expireAt(ctx, p, s.keys.proxy(ref(next.ProxyKey)), next)
			p.ZAdd(ctx, s.keys.all(), redis.Z{Score: expiryFloat(next.Expiry), Member: r})
			if acct != "" {
				s.extendAccount(ctx, p, s.keys.account(acct), next)
			}
			p.Publish(ctx, s.keys.channel(), s.invalidation(r))
			return nil
		})
		return err
	}, key)
	var fe fnError
	switch {
	case errors.As(err, &fe):
		return sessions.Session{}, fe.err
	case errors.Is(err, sessions.ErrNotFound), errors.Is(err, redis.TxFailedErr):
		return sessions.Session{}, err
	case err != nil:
		return sessions.Session{}, storeError("update session", err)
	}
	s.cache.wrote(r, &next, gen)
	return next, nil
}

// expireAt gives key the TTL of sess (none when it does not expire).
func (s *Store) expireAt(ctx context.Context, p redis.Pipeliner, key string, sess sessions.Session) {
	if sess.Expiry.IsZero() {
		p.Persist(ctx, key)
		return
	}
	// A millisecond after: Redis keeps the session as long as it is live.
	p.PExpireAt(ctx, key, sess.Expiry.Add(time.Millisecond))
}

// extendAccount makes the account set key live at least as long as
// sess (see createScript): GT leaves a later expiry, and a set without
// one, as they are.
func (s *Store) extendAccount(ctx context.Context, p redis.Pipeliner, key string, sess sessions.Session) {
	if sess.Expiry.IsZero() {
		p.Persist(ctx, key)
		return
	}
	p.Do(ctx, "PEXPIREAT", key, sess.Expiry.Add(time.Millisecond).UnixMilli(), "GT")
}

// Delete removes a session; deleting a missing session is not an error.
func (s *Store) Delete(ctx context.Context, id string) error {
	if !sessions.WellFormedToken(id) {
		return nil
	}
	r := ref(id)
	gen := s.cache.generation()
	err := deleteScript.Run(ctx, s.rdb, []string{s.keys.session(r), s.keys.all()},
		string(s.keys), s.keys.channel(), s.instance, r).Err()
	if err != nil {
		return storeError("delete session", err)
	}
	s.cache.wrote(r, nil, gen)
	return nil
}

// Count is the number of sessions stored, expired ones included until
// the sweep deletes them.
func (s *Store) Count(ctx context.Context) (int, error) {
	n, err := s.rdb.ZCard(ctx, s.keys.all()).Result()
	if err != nil {
		return 0, storeError("count sessions", err)
	}
	return int(n), nil
}

// listBatch is how many sessions List and Reseal read per round trip.
const listBatch = 500

// List returns every live session. It reads them all from Redis: it is
// for the admin pages, not for requests.
func (s *Store) List(ctx context.Context) ([]sessions.Session, error) {
	var out []sessions.Session
	err := s.eachStored(ctx, func(r string, v []byte) error {
		sess, err := s.decodeSession(v, r)
		if err != nil {
			return err
		}
		if live, err := s.live(sess); err == nil {
			out = append(out, live)
		}
		return nil
	})
	if err != nil {
		return nil, storeError("list sessions", err)
	}
	return out, nil
}

// eachStored calls fn with the ref and the sealed value of every stored
// session, reading them in batches, until fn fails.
func (s *Store) eachStored(ctx context.Context, fn func(r string, v []byte) error) error {
	refs, err := s.rdb.ZRange(ctx, s.keys.all(), 0, -1).Result()
	if err != nil {
		return err
	}
	for len(refs) > 0 {
		batch := refs[:min(listBatch, len(refs))]
		refs = refs[len(batch):]
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, r := range batch {
				p.HGet(ctx, s.keys.session(r), "v")
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for i, c := range cmds {
			v, err := c.(*redis.StringCmd).Bytes()
			if errors.Is(err, redis.Nil) {
				continue // expired by Redis since ZRANGE
			} else if err != nil {
				// Pipelined says only the first error, which may be an
				// expired session's Nil: a session skipped here would be
				// missing from List, and left under an old key by Reseal.
				return err
			}
			if err := fn(batch[i], v); err != nil {
				return err
			}
		}
	}
	return nil
}

// sweepBatch is how many records one sweep script deletes: each script
// holds Redis for its whole run.
const sweepBatch = 500

// DeleteExpired removes expired sessions and pending sign-ins, and says
// how many.
func (s *Store) DeleteExpired(ctx context.Context) (int, error) {
	now := micros(s.now())
	total := 0
	for {
		refs, err := expireSessionsScript.Run(ctx, s.rdb, []string{s.keys.all()},
			string(s.keys), s.keys.channel(), s.instance, now, sweepBatch).StringSlice()
		if err != nil {
			return total, storeError("delete expired sessions", err)
		}
		for _, r := range refs {
			s.cache.wrote(r, nil, s.cache.generation())
		}
		total += len(refs)
		if len(refs) < sweepBatch {
			break
		}
	}
	for {
		n, err := expirePendingScript.Run(ctx, s.rdb, []string{s.keys.pendingAll()},
			string(s.keys), now, sweepBatch).Int()
		if err != nil {
			return total, storeError("delete expired sign-ins", err)
		}
		total += n
		if n < sweepBatch {
			break
		}
	}
	return total, nil
}

// expiryFloat is expiryScore as go-redis takes it.
func expiryFloat(t time.Time) float64 {
	if t.IsZero() {
		return math.Inf(1)
	}
	return float64(t.UnixMicro())
}
