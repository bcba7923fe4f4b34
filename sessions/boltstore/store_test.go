package boltstore

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/sealed"
	"github.com/ioproxy/ioproxy/sessions/storetest"
)

// TestConformance runs the suite every store passes, a bbolt file per
// subtest, with records kept plain and sealed. Two stores never share a
// file (bbolt locks it), so the suite's shared-store tests are skipped.
func TestConformance(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys *sealed.Keys
	}{
		{"plain", nil},
		{"sealed", mustKeys(t, sealed.Generate())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			paths := map[string]string{}
			storetest.Run(t, storetest.Harness{Open: func(t *testing.T, opts sessions.Options) sessions.Store {
				t.Helper()
				mu.Lock()
				path, ok := paths[t.Name()]
				if !ok {
					// A fresh subdirectory: t.TempDir's are 0755, and the
					// store refuses a data dir that others can read.
					path = filepath.Join(t.TempDir(), "data", "ioproxy.db")
					paths[t.Name()] = path
				}
				mu.Unlock()
				s, err := Open(Config{Path: path, Options: opts, Keys: tc.keys})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}})
		})
	}
}

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
	s, err := Open(Config{Path: path, Options: sessions.Options{Now: c.Now}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newSession(c *clock) sessions.Session {
	return sessions.Session{
		ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "app.example.com",
		DID: "did:plc:alice", Handle: "alice.test", AccessToken: "at", RefreshToken: "rt",
		CreatedAt: c.Now(), Expiry: c.Now().Add(24 * time.Hour),
	}
}

// TestSecondProcessIsRefused: bbolt locks its file, and one data dir
// belongs to one ioproxy; the second is told so. It waits lockTimeout
// (2 s) for the lock first.
func TestSecondProcessIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "db")
	c := &clock{now: time.Now()}
	open(t, path, c)
	s, err := Open(Config{Path: path, Options: sessions.Options{}})
	if err == nil {
		_ = s.Close()
		t.Fatal("second open succeeded")
	}
	if want := "another ioproxy"; !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want it to mention %q", err, want)
	}
}

// TestCheapRequestsCostNoWrite: what anyone can ask for without signing in
// (a callback with a made-up state, a sign-out without a session), the
// lookups of every request and the minutely sweep with nothing to sweep
// cost no write transaction.
func TestCheapRequestsCostNoWrite(t *testing.T) {
	ctx := t.Context()
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := open(t, filepath.Join(t.TempDir(), "data", "db"), c)
	sess := newSession(c)
	if _, err := s.Create(ctx, sess); err != nil {
		t.Fatal(err)
	}
	before := s.Writes()
	for _, state := range []string{"", "x", strings.Repeat("a", 43), sessions.NewToken(), strings.Repeat("é", 22), sessions.NewToken()[:42] + "="} {
		if _, err := s.TakePending(ctx, state); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("TakePending(%q) = %v, want ErrNotFound", state, err)
		}
	}
	if err := s.Delete(ctx, sessions.NewToken()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteExpired(ctx); err != nil || n != 0 {
		t.Fatalf("DeleteExpired = %d, %v", n, err)
	}
	if _, err := s.Get(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ByProxyKey(ctx, sess.ProxyKey); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Count(ctx); err != nil {
		t.Fatal(err)
	}
	// Updates that save nothing write nothing.
	if _, err := s.Update(ctx, sessions.NewToken(), func(*sessions.Session) error { return nil }); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if _, err := s.Update(ctx, sess.ID, func(*sessions.Session) error { return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	if _, err := s.Update(ctx, sess.ID, func(x *sessions.Session) error {
		x.AccessToken = strings.Repeat("a", sessions.MaxTokenBytes+1)
		return nil
	}); !errors.Is(err, sessions.ErrTooLarge) {
		t.Fatal(err)
	}
	if got := s.Writes() - before; got != 0 {
		t.Errorf("%d writes, want 0", got)
	}
	// What does happen costs one write each.
	p := sessions.Pending{State: sessions.NewToken(), Expiry: c.Now().Add(time.Minute)}
	if err := s.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakePending(ctx, p.State); err != nil {
		t.Fatal(err)
	}
	if got := s.Writes() - before; got != 2 {
		t.Errorf("%d writes for a sign-in's pending request, want 2", got)
	}
}

// TestOpenDropsExpired: sessions that expired while ioproxy was down are
// deleted from the file as it opens, so that they take no memory and the
// first sweep has nothing to do.
func TestOpenDropsExpired(t *testing.T) {
	ctx := t.Context()
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "data", "db")
	s := open(t, path, c)
	old, live := newSession(c), newSession(c)
	live.Expiry = c.Now().Add(48 * time.Hour)
	for _, x := range []sessions.Session{old, live} {
		if _, err := s.Create(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.Close()
	c.Add(25 * time.Hour)
	s = open(t, path, c)
	if n, _ := s.Count(ctx); n != 1 {
		t.Errorf("Count after open = %d, want 1: the expired session is still loaded", n)
	}
	if n, err := s.DeleteExpired(ctx); err != nil || n != 0 {
		t.Errorf("DeleteExpired after open = %d, %v; want 0", n, err)
	}
	_ = s.Close()
	var keys int
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error { keys = tx.Bucket(bucketSessions).Stats().KeyN; return nil })
	if keys != 1 {
		t.Errorf("%d sessions in the file, want 1", keys)
	}
}

// TestDamagedPendingIsSwept: a pending sign-in that does not decode (a
// damaged file) still takes its place until the sweep removes it, which
// counts it.
func TestDamagedPendingIsSwept(t *testing.T) {
	ctx := t.Context()
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "data", "db")
	_ = open(t, path, c).Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPending).Put([]byte(sessions.NewToken()), []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	s, err := Open(Config{Path: path, Options: sessions.Options{Now: c.Now, MaxPending: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p := sessions.Pending{State: sessions.NewToken(), Expiry: c.Now().Add(time.Minute)}
	if err := s.PutPending(ctx, p); !errors.Is(err, sessions.ErrFull) {
		t.Errorf("with a damaged sign-in in the file: %v, want ErrFull", err)
	}
	if n, err := s.DeleteExpired(ctx); err != nil || n != 1 {
		t.Errorf("DeleteExpired = %d, %v; want the damaged one", n, err)
	}
	if err := s.PutPending(ctx, p); err != nil {
		t.Errorf("after the sweep: %v", err)
	}
}

func BenchmarkGet(b *testing.B) {
	ctx := b.Context()
	c := &clock{now: time.Now()}
	s, err := Open(Config{Path: filepath.Join(b.TempDir(), "data", "db"), Options: sessions.Options{Now: c.Now}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ids := make([]string, 1000)
	for i := range ids {
		sess := newSession(c)
		sess.DID = sessions.NewToken() // not one account's cap
		ids[i] = sess.ID
		if _, err := s.Create(ctx, sess); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer() // the 1000 Creates above are fsyncs, not lookups
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Get(ctx, ids[i%len(ids)]); err != nil {
				b.Error(err) // not Fatal: this is not the benchmark's goroutine
				return
			}
			i++
		}
	})
}
