package redisstore

import (
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/sessions"
)

// TestSetNXSeesItsOwnToken: a SET NX that go-redis sent again after its
// reply was lost finds the lock holding its own token, and takes that
// as holding the lock; another token is refused.
func TestSetNXSeesItsOwnToken(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s := openOn(t, srv, "setnx:", testKeys(t), sessions.Options{})
	t.Cleanup(func() { _ = s.Close() })
	ctx := t.Context()
	key := s.keys.lock("refresh:x")
	for _, step := range []struct {
		token string
		want  bool
	}{
		{"tok-1", true},  // free: taken
		{"tok-1", true},  // the same command again: still ours
		{"tok-2", false}, // another holder: refused
	} {
		got, err := s.setNX(ctx, key, step.token, time.Minute)
		if err != nil || got != step.want {
			t.Errorf("setNX(%s) = %v, %v; want %v", step.token, got, err, step.want)
		}
	}
	if v, err := s.rdb.Get(ctx, key).Result(); err != nil || v != "tok-1" {
		t.Errorf("the lock holds %q, %v; want the first token", v, err)
	}
}
