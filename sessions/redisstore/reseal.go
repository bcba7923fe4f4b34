package redisstore

import (
	"context"
	"errors"

	"github.com/ioproxy/ioproxy/sessions"
)

// Reseal seals again, with the first key, every session sealed with
// another: after a key rotation (encryption_key = [new, old]) the old key
// may go once Reseal has run on a replica that has the new key first.
// Active sessions are sealed again at each refresh anyway; this reaches
// the idle ones. Secrets are sealed again when read. It says how many
// sessions it sealed again.
func (s *Store) Reseal(ctx context.Context) (int, error) {
	n := 0
	err := s.eachStored(ctx, func(r string, v []byte) error {
		if !s.seal.NeedsReseal(v) {
			return nil
		}
		sess, err := s.decodeSession(v, r)
		if err != nil {
			return err
		}
		// Update writes what it read, sealed with the first key.
		_, err = s.Update(ctx, sess.ID, func(*sessions.Session) error { return nil })
		if errors.Is(err, sessions.ErrNotFound) {
			return nil // ended meanwhile
		} else if err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, storeError("reseal sessions", err)
	}
	return n, nil
}
