package redisstore

import (
	"errors"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/sessions"
)

// While a replica's invalidations are down but Redis answers commands (a
// subscription refused by an ACL, a proxy without pub/sub), a sign-out
// elsewhere reaches it within CacheMaxAge: stale copies are read again.
func TestStaleWhileInvalidationsAreDown(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	keys := testKeys(t)
	const maxAge = 200 * time.Millisecond
	a, err := Open(t.Context(), Config{URL: srv.URL(), Prefix: "stale:", Keys: keys, CacheMaxAge: maxAge})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := openOn(t, srv, "stale:", keys, sessions.Options{})
	defer b.Close()
	ctx := t.Context()
	now := time.Now()
	sess := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "a.example.com", DID: "did:plc:alice",
		AccessToken: "at", RefreshToken: "rt", CreatedAt: now, Expiry: now.Add(time.Hour)}
	if _, err := b.Create(ctx, sess); err != nil {
		t.Fatal(err)
	}
	waitLive(t, a)
	if _, err := a.Get(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	// a hears nothing from now on, and knows it.
	if err := a.sub.Unsubscribe(ctx, a.keys.channel()); err != nil {
		t.Fatal(err)
	}
	a.cache.lost()
	if err := b.Delete(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(maxAge + 2*time.Second)
	for {
		_, err := a.Get(ctx, sess.ID)
		if errors.Is(err, sessions.ErrNotFound) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a replica without invalidations still serves a deleted session after %v: %v", maxAge+2*time.Second, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLive waits until s's invalidations arrive.
func waitLive(t *testing.T, s *Store) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.cache.mu.Lock()
		live := s.cache.live
		s.cache.mu.Unlock()
		if live {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the subscription did not come up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
