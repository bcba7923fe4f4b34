package redisstore

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/ioproxy/ioproxy/sessions"
)

// Reseal seals again, with the first key, every session sealed with
// another: after a key rotation (encryption_key = [new, old]) the old key
// may go once Reseal has run on a replica that has the new key first.
// Active sessions are sealed again at each refresh anyway; this reaches
// the idle ones. Secrets are sealed again when read. It says how many
// sessions it sealed again.
func (s *Store) Reseal(ctx context.Context) (int, error) {
	refs, err := s.rdb.ZRange(ctx, s.keys.all(), 0, -1).Result()
	if err != nil {
		return 0, storeError("reseal sessions", err)
	}
	n := 0
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
			return n, storeError("reseal sessions", err)
		}
		for i, c := range cmds {
			v, err := c.(*redis.StringCmd).Bytes()
			if err != nil || !s.seal.NeedsReseal(v) {
				continue
			}
			sess, err := s.decodeSession(v, batch[i])
			if err != nil {
				return n, storeError("reseal sessions", err)
			}
			// Update writes what it read, sealed with the first key.
			_, err = s.Update(ctx, sess.ID, func(*sessions.Session) error { return nil })
			if errors.Is(err, sessions.ErrNotFound) {
				continue // ended meanwhile
			} else if err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}
