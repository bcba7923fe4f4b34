package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ioproxy/ioproxy/sessions"
)

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
		// the value is still the one read: a replica may have stored a
		// new one meanwhile.
		resealed := s.seal.Seal(plain, secretRecord(name))
		if err := resealSecretScript.Run(ctx, s.rdb, []string{s.keys.secret(name)}, v, resealed).Err(); err != nil {
			s.log.Warn("redis session store: a secret sealed with an older key was not sealed again; keep that key in encryption_key", "secret", name, "err", err)
		}
	}
	return plain, nil
}

// LoadSecret returns the secret called name, or sessions.ErrNotFound.
func (s *Store) LoadSecret(ctx context.Context, name string) ([]byte, error) {
	v, err := s.readSecret(ctx, name)
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("load secret %q: %w", name, sessions.ErrNotFound)
	}
	return v, err
}

// StoreSecret saves value as the secret called name, replacing any.
func (s *Store) StoreSecret(ctx context.Context, name string, value []byte) error {
	if err := sessions.CheckSecret(name, value); err != nil {
		return err
	}
	if err := s.rdb.Set(ctx, s.keys.secret(name), s.seal.Seal(value, secretRecord(name)), 0).Err(); err != nil {
		return storeError(fmt.Sprintf("store secret %q", name), err)
	}
	return nil
}

// DeleteSecret removes the secret called name.
func (s *Store) DeleteSecret(ctx context.Context, name string) error {
	if err := s.rdb.Del(ctx, s.keys.secret(name)).Err(); err != nil {
		return storeError(fmt.Sprintf("delete secret %q", name), err)
	}
	return nil
}
