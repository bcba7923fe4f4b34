package redisstore

import (
	"context"

	"github.com/ioproxy/ioproxy/sessions"
)

// Latest returns the live session with the given id as Redis holds it,
// past the cache; see sessions.Store. What it reads refreshes the cache.
func (s *Store) Latest(ctx context.Context, id string) (sessions.Session, error) {
	if !sessions.WellFormedToken(id) {
		return sessions.Session{}, sessions.ErrNotFound
	}
	sess, err := s.fetch(ctx, id, ref(id))
	if err != nil {
		return sessions.Session{}, err
	}
	return s.live(sess)
}
