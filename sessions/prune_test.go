package sessions_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// slowGets is a store whose Get waits until release is closed, once
// entered is signalled: a Redis round trip that takes its time.
type slowGets struct {
	sessions.Store
	entered chan struct{}
	release chan struct{}
}

func (s *slowGets) Get(ctx context.Context, id string) (sessions.Session, error) {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.release
	return s.Store.Get(ctx, id)
}

// TestPrune: the back-off of a session the store no longer holds is
// forgotten and a live one's kept; and the store is asked outside the
// lifecycle's lock, which every stale request's RefreshLater takes.
func TestPrune(t *testing.T) {
	store, err := boltstore.Open(boltstore.Config{Path: filepath.Join(t.TempDir(), "data", "db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	live := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "app.example.com",
		DID: "did:plc:live", CreatedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}
	if _, err := store.Create(ctx, live); err != nil {
		t.Fatal(err)
	}
	slow := &slowGets{Store: store, entered: make(chan struct{}, 1), release: make(chan struct{})}
	lc := sessions.NewLifecycle(sessions.LifecycleConfig{Store: slow})
	sessions.MarkFailed(lc, live.ID)
	sessions.MarkFailed(lc, "ended-session")
	done := make(chan struct{})
	go func() {
		defer close(done)
		sessions.Prune(lc, ctx)
	}()
	select {
	case <-slow.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("prune never asked the store")
	}
	if !sessions.LockFree(lc) {
		t.Error("prune holds the lifecycle's lock while it waits on the store")
	}
	close(slow.release)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("prune did not finish")
	}
	if sessions.HasFailed(lc, "ended-session") {
		t.Error("the back-off of a session the store no longer holds is still remembered")
	}
	if !sessions.HasFailed(lc, live.ID) {
		t.Error("the back-off of a live session was forgotten")
	}
}
