package boltstore

import (
	"bytes"
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ioproxy/ioproxy/sessions"
)

// Secret returns the stored secret named name, creating it with generate
// the first time. ioproxy keeps its OAuth client key this way, so the key
// published at /@/jwks.json survives restarts.
func (s *Store) Secret(_ context.Context, name string, generate func() ([]byte, error)) ([]byte, error) {
	var out []byte
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKeys)
		if v := b.Get([]byte(name)); v != nil {
			plain, err := s.open(secretKind, []byte(name), v)
			if err != nil {
				return err
			}
			out = bytes.Clone(plain)
			return nil
		}
		v, err := generate()
		if err != nil {
			return err
		}
		out = v
		return b.Put([]byte(name), s.seal(secretKind, name, v))
	})
	if err != nil {
		return nil, fmt.Errorf("load secret %q: %w", name, err)
	}
	return out, nil
}

// LoadSecret returns the secret called name, or sessions.ErrNotFound.
func (s *Store) LoadSecret(_ context.Context, name string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKeys).Get([]byte(name))
		if v == nil {
			return sessions.ErrNotFound
		}
		plain, err := s.open(secretKind, []byte(name), v)
		if err != nil {
			return err
		}
		out = bytes.Clone(plain)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load secret %q: %w", name, err)
	}
	return out, nil
}

// StoreSecret saves value as the secret called name, replacing any.
func (s *Store) StoreSecret(_ context.Context, name string, value []byte) error {
	if err := sessions.CheckSecret(name, value); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).Put([]byte(name), s.seal(secretKind, name, value))
	})
	if err != nil {
		return fmt.Errorf("store secret %q: %w", name, err)
	}
	return nil
}

// DeleteSecret removes the secret called name.
func (s *Store) DeleteSecret(_ context.Context, name string) error {
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketKeys).Delete([]byte(name))
	})
	if err != nil {
		return fmt.Errorf("delete secret %q: %w", name, err)
	}
	return nil
}
