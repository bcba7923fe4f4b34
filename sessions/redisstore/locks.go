package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ioproxy/ioproxy/sessions"
)

// Lock takes the lock called name for at most lease; see sessions.Store.
// The lock is a key holding the holder's random token, with the lease
// as its TTL on the Redis server's clock; release deletes it only while
// it still holds that token.
func (s *Store) Lock(ctx context.Context, name string, lease time.Duration) (func(), error) {
	key := s.keys.lock(name)
	token := sessions.NewToken()
	lease = max(lease, time.Millisecond) // Redis counts in milliseconds
	wait := newBackoff(2*time.Millisecond, 50*time.Millisecond)
	for {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		ok, err := s.rdb.SetNX(ctx, key, token, lease).Result()
		if ctx.Err() != nil {
			// Redis may have given us the lock as ctx ended (ok), or
			// after it (the reply is lost): free it, or no one could
			// until the lease lapses. By the token, so only ours.
			switch release := s.releaser(key, token); {
			case ok:
				release()
			case err != nil:
				go release()
			}
			return nil, fmt.Errorf("lock %s: %w", name, ctx.Err())
		} else if err != nil {
			return nil, storeError("lock "+name, err)
		}
		if ok {
			return s.releaser(key, token), nil
		}
		if !wait.wait(ctx) {
			return nil, fmt.Errorf("lock %s: %w", name, ctx.Err())
		}
	}
}

// releaseTimeout bounds a release, which has no context of its own.
const releaseTimeout = 5 * time.Second

// releaser frees the lock key once, if token still holds it. A release
// that fails leaves the lock to its lease.
func (s *Store) releaser(key, token string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
			defer cancel()
			if err := releaseScript.Run(ctx, s.rdb, []string{key}, token).Err(); err != nil {
				s.log.Warn("redis session store: a lock was not released; it lapses with its lease", "err", err)
			}
		})
	}
}

// secretLease bounds how long a replica that makes a secret holds others
// off.
const secretLease = 30 * time.Second

// Secret returns the secret called name, creating it with generate the
// first time; see sessions.Store. The first replica to ask makes it,
// under a lock, and the others wait for it and read it.
func (s *Store) Secret(ctx context.Context, name string, generate func() ([]byte, error)) ([]byte, error) {
	if v, err := s.readSecret(ctx, name); err == nil || !errors.Is(err, redis.Nil) {
		return v, err
	}
	release, err := s.Lock(ctx, "secret:"+name, secretLease)
	if err != nil {
		return nil, fmt.Errorf("load secret %q: %w", name, err)
	}
	defer release()
	if v, err := s.readSecret(ctx, name); err == nil || !errors.Is(err, redis.Nil) {
		return v, err
	}
	v, err := generate()
	if err != nil {
		return nil, fmt.Errorf("load secret %q: %w", name, err)
	}
	ok, err := s.rdb.SetNX(ctx, s.keys.secret(name), s.seal.Seal(v, secretRecord(name)), 0).Result()
	if err != nil {
		return nil, storeError(fmt.Sprintf("store secret %q", name), err)
	}
	if !ok {
		// Made meanwhile by a replica whose lock lapsed: theirs stands.
		return s.readSecret(ctx, name)
	}
	return v, nil
}

// readSecret reads a stored secret; redis.Nil when there is none.
func (s *Store) readSecret(ctx context.Context, name string) ([]byte, error) {
	v, err := s.rdb.Get(ctx, s.keys.secret(name)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, err
	} else if err != nil {
		return nil, storeError(fmt.Sprintf("load secret %q", name), err)
	}
	plain, err := s.open(v, secretRecord(name))
	if err != nil {
		return nil, storeError(fmt.Sprintf("load secret %q", name), err)
	}
	if s.seal.NeedsReseal(v) {
		// Sealed with a key that is not the first: seal it with the
		// first, so that the old key can go after a rotation. Only if
		// the value is still the one read (XX and a compare would need
		// a script; a secret never changes once made, so SET XX does).
		resealed := s.seal.Seal(plain, secretRecord(name))
		if err := s.rdb.SetXX(ctx, s.keys.secret(name), resealed, redis.KeepTTL).Err(); err != nil {
			s.log.Warn("redis session store: a secret sealed with an older key was not sealed again; keep that key in encryption_key", "secret", name, "err", err)
		}
	}
	return plain, nil
}
