package certs

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// replicaCaches returns two caches over one store, as two replicas on
// one Redis have: the bbolt store's locks are in-process, and both caches
// are in this process. They share the clock.
func replicaCaches(t *testing.T) (a, b *storeCache, clk *testClock) {
	t.Helper()
	clk = &testClock{now: time.Now()}
	store, err := boltstore.Open(boltstore.Config{
		Path:    filepath.Join(t.TempDir(), "data", "ioproxy.db"),
		Options: sessions.Options{Now: clk.Now},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	const dir = "https://acme.test/dir"
	return newStoreCache(store, dir, clk.Now), newStoreCache(store, dir, clk.Now), clk
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// certData is a certificate as autocert stores it: key, then chain.
func certData(t *testing.T, notBefore, notAfter time.Time) []byte {
	t.Helper()
	certPEM, keyPEM := newTestCA(t, "acme test CA").issue(t, []string{"a.test"}, leafOpts{notBefore: notBefore, notAfter: notAfter})
	return append(keyPEM, certPEM...)
}

// getAsync runs c.Get in the background.
func getAsync(c *storeCache, key string) <-chan getResult {
	out := make(chan getResult, 1)
	go func() {
		data, err := c.Get(context.Background(), key)
		out <- getResult{data, err}
	}()
	return out
}

type getResult struct {
	data []byte
	err  error
}

// stillWaiting fails the test when r has an answer already. A Get that
// wrongly did not wait answers at once; one that waits never fails this.
func stillWaiting(t *testing.T, r <-chan getResult, what string) {
	t.Helper()
	select {
	case got := <-r:
		t.Fatalf("%s: Get returned %q, %v while the other replica orders; want it to wait", what, got.data, got.err)
	case <-time.After(50 * time.Millisecond):
	}
}

func answer(t *testing.T, r <-chan getResult) getResult {
	t.Helper()
	select {
	case got := <-r:
		return got
	case <-time.After(10 * time.Second):
		t.Fatal("Get still waits after 10 s")
		return getResult{}
	}
}

// TestStoreCacheOneOrder: the replica that finds no certificate orders
// it; another that asks meanwhile waits, then reads what the first
// stored instead of ordering too.
func TestStoreCacheOneOrder(t *testing.T) {
	ctx := t.Context()
	a, b, clk := replicaCaches(t)
	issued := certData(t, clk.Now().Add(-time.Hour), clk.Now().Add(89*24*time.Hour))
	for _, key := range []string{"a.test", "a.test+rsa", accountKey} {
		if _, err := a.Get(ctx, key); !errors.Is(err, autocert.ErrCacheMiss) {
			t.Fatalf("%s: first Get = %v, want a miss", key, err)
		}
		if !a.holds(key) {
			t.Fatalf("%s: the replica that will order holds no lock", key)
		}
		// autocert reads again before it orders (a renewal does): the
		// holder does not wait for itself.
		if _, err := a.Get(ctx, key); !errors.Is(err, autocert.ErrCacheMiss) {
			t.Fatalf("%s: the holder's second Get = %v, want a miss", key, err)
		}
		waiting := getAsync(b, key)
		stillWaiting(t, waiting, key)
		if err := a.Put(ctx, key, issued); err != nil {
			t.Fatal(err)
		}
		if got := answer(t, waiting); got.err != nil || string(got.data) != string(issued) {
			t.Errorf("%s: the waiting replica got %q, %v; want what the other stored", key, got.data, got.err)
		}
		if a.holds(key) || b.holds(key) {
			t.Errorf("%s: a lock is still held after the Put", key)
		}
	}
}

// TestStoreCacheAbandon: when the order fails, the lock goes at once and
// the next replica to ask orders.
func TestStoreCacheAbandon(t *testing.T) {
	ctx := t.Context()
	a, b, _ := replicaCaches(t)
	if _, err := a.Get(ctx, "a.test"); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Fatal(err)
	}
	waiting := getAsync(b, "a.test")
	stillWaiting(t, waiting, "before the abandon")
	a.abandon("a.test")
	if got := answer(t, waiting); !errors.Is(got.err, autocert.ErrCacheMiss) {
		t.Fatalf("after the first order failed: %q, %v; want a miss", got.data, got.err)
	}
	if !b.holds("a.test") {
		t.Error("the replica that asked next does not hold the lock to order")
	}
	a.abandon("a.test") // not held by a: does nothing to b's lock
	if !b.holds("a.test") {
		t.Error("an abandon by a replica that holds nothing freed another's lock")
	}
}

// TestStoreCacheLeaseLapses: a replica that never stores (it died, or
// its renewal gave up) holds the lock no longer than issueLease.
func TestStoreCacheLeaseLapses(t *testing.T) {
	ctx := t.Context()
	a, b, clk := replicaCaches(t)
	if _, err := a.Get(ctx, "a.test"); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Fatal(err)
	}
	clk.Add(issueLease + time.Second)
	if a.holds("a.test") {
		t.Error("a lapsed lease is still held")
	}
	if got := answer(t, getAsync(b, "a.test")); !errors.Is(got.err, autocert.ErrCacheMiss) || !b.holds("a.test") {
		t.Errorf("after the lease lapsed: %v, holds %v; want a miss and the lock", got.err, b.holds("a.test"))
	}
}

// TestStoreCacheRenewal: a certificate in its last third of life is
// renewed by one replica; another serves it as it is meanwhile, and the
// renewed one once stored.
func TestStoreCacheRenewal(t *testing.T) {
	ctx := t.Context()
	a, b, clk := replicaCaches(t)
	now := clk.Now()
	fresh := certData(t, now.Add(-time.Hour), now.Add(89*24*time.Hour))
	due := certData(t, now.Add(-80*24*time.Hour), now.Add(10*24*time.Hour))

	if err := a.Put(ctx, "a.test", fresh); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Get(ctx, "a.test"); err != nil || string(got) != string(fresh) || a.holds("a.test") {
		t.Fatalf("a fresh certificate: %v, holds %v; want it, and no lock", err, a.holds("a.test"))
	}

	if err := a.Put(ctx, "a.test", due); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Get(ctx, "a.test"); err != nil || string(got) != string(due) || !a.holds("a.test") {
		t.Fatalf("a certificate due for renewal: %v, holds %v; want it, and the lock to renew", err, a.holds("a.test"))
	}
	got := answer(t, getAsync(b, "a.test"))
	if got.err != nil || string(got.data) != string(due) || b.holds("a.test") {
		t.Errorf("while another replica renews: %v, holds %v; want the valid certificate as it is", got.err, b.holds("a.test"))
	}
	renewed := certData(t, now, now.Add(90*24*time.Hour))
	if err := a.Put(ctx, "a.test", renewed); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, "a.test"); err != nil || string(got) != string(renewed) || b.holds("a.test") {
		t.Errorf("after the renewal: %v, holds %v; want the renewed certificate, no lock", err, b.holds("a.test"))
	}

	// A value that does not parse is ordered anew, under the lock.
	if err := a.Put(ctx, "b.test", []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "b.test"); err != nil || !b.holds("b.test") {
		t.Errorf("a corrupt certificate: %v, holds %v; want the lock to order anew", err, b.holds("b.test"))
	}
}

// TestStoreCacheChallengesNotLocked: challenge answers are read and
// written by whichever replica the CA asks, without a lock.
func TestStoreCacheChallengesNotLocked(t *testing.T) {
	ctx := t.Context()
	a, b, _ := replicaCaches(t)
	for _, key := range []string{"a.test+token", "tok123+http-01"} {
		if _, err := a.Get(ctx, key); !errors.Is(err, autocert.ErrCacheMiss) || a.holds(key) {
			t.Errorf("%s: %v, holds %v; want a miss and no lock", key, err, a.holds(key))
		}
		if err := a.Put(ctx, key, []byte("answer")); err != nil {
			t.Fatal(err)
		}
		if got, err := b.Get(ctx, key); err != nil || string(got) != "answer" {
			t.Errorf("%s through the other replica: %q, %v", key, got, err)
		}
		if err := b.Delete(ctx, key); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Get(ctx, key); !errors.Is(err, autocert.ErrCacheMiss) {
			t.Errorf("%s after Delete: %v, want a miss", key, err)
		}
	}
}

// TestStoreCacheDirectoriesApart: a staging directory's certificate is
// not served for production.
func TestStoreCacheDirectoriesApart(t *testing.T) {
	ctx := t.Context()
	a, _, clk := replicaCaches(t)
	other := newStoreCache(a.store, "https://other.test/dir", clk.Now)
	if err := a.Put(ctx, "a.test+token", []byte("staging")); err != nil {
		t.Fatal(err)
	}
	if got, err := other.Get(ctx, "a.test+token"); !errors.Is(err, autocert.ErrCacheMiss) {
		t.Errorf("another directory's value: %q, %v; want a miss", got, err)
	}
}

// TestStoreCacheStoreDown: a store that fails is an error, not a miss
// (a miss would order a certificate that exists), and takes no lock.
func TestStoreCacheStoreDown(t *testing.T) {
	c := newStoreCache(downStore{}, "https://acme.test/dir", time.Now)
	for _, key := range []string{"a.test", accountKey, "a.test+token"} {
		_, err := c.Get(t.Context(), key)
		if err == nil || errors.Is(err, autocert.ErrCacheMiss) || c.holds(key) {
			t.Errorf("%s: Get = %v, holds %v; want the store's error", key, err, c.holds(key))
		}
	}
	if err := c.Put(t.Context(), "a.test", []byte("x")); err == nil {
		t.Error("Put on a store that is down succeeded")
	}
}

func TestCacheKeys(t *testing.T) {
	for _, tc := range []struct {
		key          string
		cert, orders bool
	}{
		{"a.test", true, true},
		{"a.test+rsa", true, true},
		{accountKey, false, true},
		{"a.test+token", false, false},
		{"abc+http-01", false, false},
		{"+rsa", false, false},
		{"", false, false},
	} {
		if got := isCertKey(tc.key); got != tc.cert {
			t.Errorf("isCertKey(%q) = %v", tc.key, got)
		}
		if got := ordersOnMiss(tc.key); got != tc.orders {
			t.Errorf("ordersOnMiss(%q) = %v", tc.key, got)
		}
	}
}

type downStore struct{}

var errDown = errors.New("store down")

func (downStore) LoadSecret(context.Context, string) ([]byte, error)          { return nil, errDown }
func (downStore) StoreSecret(context.Context, string, []byte) error           { return errDown }
func (downStore) DeleteSecret(context.Context, string) error                  { return errDown }
func (downStore) Lock(context.Context, string, time.Duration) (func(), error) { return nil, errDown }
