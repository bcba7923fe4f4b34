package store_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/cmd/statusphere/store"
)

func open(t *testing.T) (*store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "statusphere.sqlite")
	s, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func status(n int, did, emoji string, indexed time.Time) store.Status {
	return store.Status{
		URI:       fmt.Sprintf("at://%s/xyz.statusphere.status/3k%011d", did, n),
		AuthorDID: did,
		Status:    emoji,
		CreatedAt: indexed.Format(time.RFC3339),
		IndexedAt: indexed,
	}
}

func TestLatestStatusesNewestFirst(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	for i, st := range []store.Status{
		status(1, "did:plc:alice", "👍", t0),
		status(2, "did:plc:bob", "🦋", t0.Add(2*time.Minute)),
		status(3, "did:plc:alice", "🚀", t0.Add(time.Minute)),
	} {
		if err := s.PutStatus(ctx, st); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	got, err := s.LatestStatuses(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var emojis []string
	for _, st := range got {
		emojis = append(emojis, st.Status)
	}
	if fmt.Sprint(emojis) != "[🦋 🚀 👍]" {
		t.Errorf("order = %v", emojis)
	}
	if !got[0].IndexedAt.Equal(t0.Add(2 * time.Minute)) {
		t.Errorf("indexedAt = %v", got[0].IndexedAt)
	}
	if limited, _ := s.LatestStatuses(ctx, 2); len(limited) != 2 {
		t.Errorf("limit 2 gave %d", len(limited))
	}

	mine, ok, err := s.LatestStatusBy(ctx, "did:plc:alice")
	if err != nil || !ok || mine.Status != "🚀" {
		t.Errorf("alice's status = %+v, %v, %v", mine, ok, err)
	}
	if _, ok, err := s.LatestStatusBy(ctx, "did:plc:nobody"); ok || err != nil {
		t.Errorf("nobody's status: ok=%v err=%v", ok, err)
	}
}

func TestPutStatusIsIdempotent(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	st := status(1, "did:plc:alice", "👍", t0)
	other := status(2, "did:plc:bob", "🦋", t0.Add(time.Minute))
	for _, x := range []store.Status{st, other} {
		if err := s.PutStatus(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	// The same record seen again later (a replay) keeps its place.
	again := st
	again.IndexedAt = t0.Add(time.Hour)
	if err := s.PutStatus(ctx, again); err != nil {
		t.Fatal(err)
	}
	got, _ := s.LatestStatuses(ctx, 10)
	if len(got) != 2 || got[1].URI != st.URI || !got[1].IndexedAt.Equal(t0) {
		t.Fatalf("after replay: %+v", got)
	}
	// An update of the record moves it to the top.
	updated := st
	updated.Status = "🚀"
	updated.IndexedAt = t0.Add(time.Hour)
	if err := s.PutStatus(ctx, updated); err != nil {
		t.Fatal(err)
	}
	got, _ = s.LatestStatuses(ctx, 10)
	if len(got) != 2 || got[0].URI != st.URI || got[0].Status != "🚀" {
		t.Fatalf("after update: %+v", got)
	}
}

func TestDeleteStatus(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	st := status(1, "did:plc:alice", "👍", t0)
	if err := s.PutStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	for range 2 { // deleting twice is fine
		if err := s.DeleteStatus(ctx, st.URI); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.LatestStatuses(ctx, 10); len(got) != 0 {
		t.Errorf("left: %+v", got)
	}
}

func TestCursorSurvivesReopen(t *testing.T) {
	s, path := open(t)
	ctx := context.Background()
	if _, ok, err := s.Cursor(ctx); ok || err != nil {
		t.Fatalf("fresh cursor: ok=%v err=%v", ok, err)
	}
	for _, c := range []int64{1795553170411587, 1795553170999999} {
		if err := s.SaveCursor(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutStatus(ctx, status(1, "did:plc:alice", "👍", t0)); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s2, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	c, ok, err := s2.Cursor(ctx)
	if err != nil || !ok || c != 1795553170999999 {
		t.Errorf("cursor = %d, %v, %v", c, ok, err)
	}
	if got, _ := s2.LatestStatuses(ctx, 10); len(got) != 1 {
		t.Errorf("statuses after reopen: %d", len(got))
	}
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 4 {
		wg.Go(func() {
			for i := range 20 {
				if err := s.PutStatus(ctx, status(w*100+i, "did:plc:w", "👍", t0.Add(time.Duration(i)*time.Second))); err != nil {
					errs <- err
				}
				if _, err := s.LatestStatuses(ctx, 10); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got, _ := s.LatestStatuses(ctx, 1000); len(got) != 80 {
		t.Errorf("stored %d, want 80", len(got))
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, path := range []string{"", "a?b", filepath.Join(t.TempDir(), "missing-dir", "x.sqlite")} {
		if s, err := store.Open(ctx, path); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", path)
		}
	}
}
