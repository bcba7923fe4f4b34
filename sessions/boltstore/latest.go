package boltstore

import (
	"context"

	"github.com/ioproxy/ioproxy/sessions"
)

// Latest returns the live session with the given id; see
// sessions.Store. One process owns the file, and its memory is what it
// wrote, so this is Get.
func (s *Store) Latest(ctx context.Context, id string) (sessions.Session, error) {
	return s.Get(ctx, id)
}
