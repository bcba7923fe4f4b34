package sessions

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func open(t *testing.T, path string, c *clock) *Store {
	t.Helper()
	s, err := Open(path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newSession(c *clock) Session {
	return Session{
		ID: NewToken(), ProxyKey: NewToken(), Host: "app.example.com",
		DID: "did:plc:alice", Handle: "alice.test", AccessToken: "at", RefreshToken: "rt",
		CreatedAt: c.Now(), Expiry: c.Now().Add(24 * time.Hour),
	}
}

func TestSessionsSurviveRestart(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "data", "ioproxy.db")
	s := open(t, path, c)
	sess := newSession(c)
	if _, err := s.Create(sess); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update(sess.ID, func(x *Session) error { x.AccessToken = "at2"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, c)
	defer s.Close()
	got, ok := s.Get(sess.ID)
	if !ok || got.AccessToken != "at2" || got.DID != "did:plc:alice" {
		t.Fatalf("after restart: %+v %v", got, ok)
	}
	if byKey, ok := s.ByProxyKey(sess.ProxyKey); !ok || byKey.ID != sess.ID {
		t.Fatalf("proxy key lookup after restart: %+v %v", byKey, ok)
	}
}

func TestExpiredSessionIsGone(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := open(t, filepath.Join(t.TempDir(), "data", "db"), c)
	defer s.Close()
	sess := newSession(c)
	if _, err := s.Create(sess); err != nil {
		t.Fatal(err)
	}
	c.Add(25 * time.Hour)
	if _, ok := s.Get(sess.ID); ok {
		t.Fatal("expired session returned")
	}
	if n, err := s.DeleteExpired(); err != nil || n != 1 || s.Count() != 0 {
		t.Fatalf("DeleteExpired = %d, %v; count %d", n, err, s.Count())
	}
}

func TestPendingIsSingleUseAndExpires(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := open(t, filepath.Join(t.TempDir(), "data", "db"), c)
	defer s.Close()
	p := Pending{State: NewToken(), Host: "h", PKCEVerifier: "v", Expiry: c.Now().Add(10 * time.Minute)}
	if err := s.PutPending(p); err != nil {
		t.Fatal(err)
	}
	got, err := s.TakePending(p.State)
	if err != nil || got.PKCEVerifier != "v" {
		t.Fatalf("TakePending = %+v, %v", got, err)
	}
	if _, err := s.TakePending(p.State); !errors.Is(err, ErrNotFound) {
		t.Fatalf("replayed state: err = %v, want ErrNotFound", err)
	}
	old := Pending{State: NewToken(), Expiry: c.Now().Add(time.Minute)}
	if err := s.PutPending(old); err != nil {
		t.Fatal(err)
	}
	c.Add(2 * time.Minute)
	if _, err := s.TakePending(old.State); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired state: err = %v, want ErrExpired", err)
	}
	stale := Pending{State: NewToken(), Expiry: c.Now().Add(time.Minute)}
	_ = s.PutPending(stale)
	c.Add(2 * time.Minute)
	if n, err := s.DeleteExpired(); err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v", n, err)
	}
}

func TestUpdateFailureKeepsOldValue(t *testing.T) {
	c := &clock{now: time.Now()}
	s := open(t, filepath.Join(t.TempDir(), "data", "db"), c)
	defer s.Close()
	sess := newSession(c)
	_, _ = s.Create(sess)
	boom := errors.New("boom")
	if _, err := s.Update(sess.ID, func(x *Session) error { x.AccessToken = "bad"; return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	if got, _ := s.Get(sess.ID); got.AccessToken != "at" {
		t.Fatalf("failed update leaked: %q", got.AccessToken)
	}
	if _, err := s.Update("nope", func(*Session) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing session update err = %v", err)
	}
}

func TestDelete(t *testing.T) {
	c := &clock{now: time.Now()}
	s := open(t, filepath.Join(t.TempDir(), "data", "db"), c)
	defer s.Close()
	sess := newSession(c)
	_, _ = s.Create(sess)
	if err := s.Delete(sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.ByProxyKey(sess.ProxyKey); ok {
		t.Fatal("deleted session found by proxy key")
	}
	if err := s.Delete(sess.ID); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestKeyIsGeneratedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "db")
	c := &clock{now: time.Now()}
	s := open(t, path, c)
	calls := 0
	gen := func() ([]byte, error) { calls++; return []byte("key-1"), nil }
	k1, err := s.Secret("client", gen)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	s = open(t, path, c)
	defer s.Close()
	k2, _ := s.Secret("client", gen)
	if string(k1) != "key-1" || string(k2) != "key-1" || calls != 1 {
		t.Fatalf("k1=%q k2=%q calls=%d", k1, k2, calls)
	}
}

func TestSecondProcessIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "db")
	c := &clock{now: time.Now()}
	s := open(t, path, c)
	defer s.Close()
	_, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		t.Fatal("second open succeeded")
	}
	if want := "another ioproxy"; !contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to mention %q", err, want)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func BenchmarkGet(b *testing.B) {
	c := &clock{now: time.Now()}
	s, err := Open(filepath.Join(b.TempDir(), "data", "db"), Options{Now: c.Now})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ids := make([]string, 1000)
	for i := range ids {
		sess := newSession(c)
		ids[i] = sess.ID
		_, _ = s.Create(sess)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := s.Get(ids[i%len(ids)]); !ok {
				b.Fatal("missing")
			}
			i++
		}
	})
}

// TestUpdateRacingDeleteDoesNotResurrect: a token refresh that finishes
// while the user signs out must not write the deleted session back to
// disk, where it would come back at the next restart.
func TestUpdateRacingDeleteDoesNotResurrect(t *testing.T) {
	c := &clock{now: time.Now()}
	path := filepath.Join(t.TempDir(), "data", "db")
	s := open(t, path, c)
	sess := newSession(c)
	_, _ = s.Create(sess)
	_, err := s.Update(sess.ID, func(x *Session) error {
		// The sign-out lands while the refresh is between reading and
		// saving the session.
		if err := s.Delete(sess.ID); err != nil {
			t.Fatal(err)
		}
		x.AccessToken = "refreshed"
		return nil
	})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Update of a session deleted meanwhile: err = %v, want ErrNotFound", err)
	}
	if _, ok := s.Get(sess.ID); ok {
		t.Error("deleted session is back in memory")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, c)
	defer s.Close()
	if _, ok := s.Get(sess.ID); ok {
		t.Fatal("a signed-out session came back after a restart")
	}
}
