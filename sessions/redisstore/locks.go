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
		ok, err := s.setNX(ctx, key, token, lease)
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

// setNX sets key to token unless it is set, and says whether key holds
// token now. SET NX GET answers what key held: if go-redis sent the
// command again after a reply was lost, the first one's token is ours,
// and the lock too (a plain SETNX would say false, and we would wait out
// our own lease).
func (s *Store) setNX(ctx context.Context, key, token string, lease time.Duration) (bool, error) {
	old, err := s.rdb.SetArgs(ctx, key, token, redis.SetArgs{Mode: "NX", TTL: lease, Get: true}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return true, nil // key was not set; it is ours now
	case err != nil:
		return false, err
	}
	return old == token, nil
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
