package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/sessions"
)

var sessionTests = []test{
	{name: "SessionsSurviveReopen", run: testSessionsSurviveReopen},
	{name: "UnknownSessionNotFound", run: testUnknownSessionNotFound},
	{name: "ExpiredSessionsAreGone", run: testExpiredSessionsAreGone},
	{name: "UpdateFailureKeepsOldValue", run: testUpdateFailureKeepsOldValue},
	{name: "UpdateOfDeletedSessionNotFound", run: testUpdateOfDeletedSession},
	{name: "UpdateRacingDeleteDoesNotResurrect", run: testUpdateRacingDelete},
	{name: "UpdatesRacingDeleteDoNotResurrect", run: testUpdatesRacingDelete},
	{name: "UpdatesAreNotLost", run: testUpdatesAreNotLost},
	{name: "Delete", run: testDelete},
	{name: "CountAndList", run: testCountAndList},
}

// testSessionsSurviveReopen: a restart keeps every session, as last
// updated, under both of its keys.
func testSessionsSurviveReopen(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	sess := e.newSession()
	create(t, s, sess)
	e.clock.Add(time.Minute)
	refreshed := e.clock.Now()
	got, err := s.Update(ctx, sess.ID, func(x *sessions.Session) error {
		x.AccessToken, x.RefreshedAt = "at2", refreshed
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	want := sess
	want.AccessToken, want.RefreshedAt = "at2", refreshed
	if f := diff(got, want); f != "" {
		t.Errorf("Update returned a session whose %s differs from what fn made", f)
	}
	s = e.reopen(s)
	got, err = s.Get(ctx, sess.ID)
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if f := diff(got, want); f != "" {
		t.Errorf("after reopen, the session's %s is %+v, want %+v", f, got, want)
	}
	byKey, err := s.ByProxyKey(ctx, sess.ProxyKey)
	if err != nil || byKey.ID != sess.ID {
		t.Fatalf("ByProxyKey after reopen = %q, %v; want session %q", byKey.ID, err, sess.ID)
	}
	if f := diff(byKey, want); f != "" {
		t.Errorf("after reopen, by proxy key, the session's %s differs", f)
	}
}

// testUnknownSessionNotFound: ids and keys that name no session, the
// cookie of one as proxy key and the other way round included.
func testUnknownSessionNotFound(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	sess := e.newSession()
	create(t, s, sess)
	for _, id := range []string{"", "x", sessions.NewToken(), sess.ProxyKey} {
		if _, err := s.Get(ctx, id); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("Get(%q) = %v, want ErrNotFound", id, err)
		}
		if _, err := s.Latest(ctx, id); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("Latest(%q) = %v, want ErrNotFound", id, err)
		}
	}
	for _, key := range []string{"", "x", sessions.NewToken(), sess.ID} {
		if _, err := s.ByProxyKey(ctx, key); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("ByProxyKey(%q) = %v, want ErrNotFound", key, err)
		}
	}
}

// testExpiredSessionsAreGone: past its Expiry a session is found by
// neither key nor listed, and the sweep removes and counts it.
func testExpiredSessionsAreGone(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	sess := e.newSession()
	create(t, s, sess)
	e.clock.Add(25 * time.Hour)
	if _, err := s.Get(ctx, sess.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("Get of an expired session = %v, want ErrNotFound", err)
	}
	if _, err := s.ByProxyKey(ctx, sess.ProxyKey); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("ByProxyKey of an expired session = %v, want ErrNotFound", err)
	}
	if _, err := s.Latest(ctx, sess.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("Latest of an expired session = %v, want ErrNotFound", err)
	}
	if list, err := s.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List = %d sessions, %v; want none live", len(list), err)
	}
	if n, err := s.DeleteExpired(ctx); err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1", n, err)
	}
	if n, err := s.Count(ctx); err != nil || n != 0 {
		t.Fatalf("Count after DeleteExpired = %d, %v; want 0", n, err)
	}
	if n, err := s.DeleteExpired(ctx); err != nil || n != 0 {
		t.Errorf("second DeleteExpired = %d, %v; want 0", n, err)
	}
	s = e.reopen(s)
	if _, err := s.Get(ctx, sess.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("Get of a swept session after reopen = %v, want ErrNotFound", err)
	}
}

// testUpdateFailureKeepsOldValue: what fn changed before it failed is not
// saved, and its error is the caller's.
func testUpdateFailureKeepsOldValue(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	sess := e.newSession()
	create(t, s, sess)
	boom := errors.New("boom")
	if _, err := s.Update(ctx, sess.ID, func(x *sessions.Session) error { x.AccessToken = "bad"; return boom }); !errors.Is(err, boom) {
		t.Fatalf("Update with a failing fn = %v, want fn's error", err)
	}
	got, err := s.Get(ctx, sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if f := diff(got, sess); f != "" {
		t.Errorf("a failed update changed the session's %s (access token %q)", f, got.AccessToken)
	}
	s = e.reopen(s)
	if got, err := s.Get(ctx, sess.ID); err != nil || got.AccessToken != "at" {
		t.Errorf("after reopen: access token %q, %v; want the old %q", got.AccessToken, err, "at")
	}
	if _, err := s.Update(ctx, "nope", func(*sessions.Session) error { return nil }); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("Update of a missing session = %v, want ErrNotFound", err)
	}
}

// testUpdateOfDeletedSession: an update never brings a signed-out session
// back, in memory or after a restart.
func testUpdateOfDeletedSession(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	sess := e.newSession()
	create(t, s, sess)
	if err := s.Delete(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	_, err := s.Update(ctx, sess.ID, func(x *sessions.Session) error { x.AccessToken = "refreshed"; return nil })
	if !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("Update of a deleted session = %v, want ErrNotFound", err)
	}
	expectGone(t, s, sess, "after Update of a deleted session")
	s = e.reopen(s)
	expectGone(t, s, sess, "after Update of a deleted session and a reopen")
}

// testUpdateRacingDelete: a token refresh that finishes while the user
// signs out must not write the deleted session back, where it would come
// back at the next restart.
func testUpdateRacingDelete(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	sess := e.newSession()
	create(t, s, sess)
	_, err := s.Update(ctx, sess.ID, func(x *sessions.Session) error {
		// The sign-out lands while the refresh is between reading and
		// saving the session.
		if err := s.Delete(ctx, sess.ID); err != nil {
			t.Error(err)
		}
		x.AccessToken = "refreshed"
		return nil
	})
	if !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("Update of a session deleted meanwhile: err = %v, want ErrNotFound", err)
	}
	expectGone(t, s, sess, "deleted during an Update")
	s = e.reopen(s)
	expectGone(t, s, sess, "deleted during an Update, after a reopen")
}

// testUpdatesRacingDelete: refreshes under way in other goroutines while
// the user signs out either land before the sign-out or find nothing.
func testUpdatesRacingDelete(t *testing.T, e *env) {
	s := e.open(sessions.Options{})
	updatesRacingDelete(t, e, s, s)
}

// updatesRacingDelete races Updates through up with a Delete through del
// and checks that the session stays deleted everywhere, reopened too.
func updatesRacingDelete(t *testing.T, e *env, up, del *store) {
	ctx := t.Context()
	const rounds, updaters = 5, 4
	var deleted []sessions.Session
	for range rounds {
		sess := e.newSession()
		create(t, up, sess)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range updaters {
			wg.Go(func() {
				<-start
				_, err := up.Update(ctx, sess.ID, func(x *sessions.Session) error {
					x.AccessToken = fmt.Sprintf("refreshed-%d", i)
					return nil
				})
				if err != nil && !errors.Is(err, sessions.ErrNotFound) {
					t.Errorf("Update racing a Delete = %v, want success or ErrNotFound", err)
				}
			})
		}
		wg.Go(func() {
			<-start
			if err := del.Delete(ctx, sess.ID); err != nil {
				t.Errorf("Delete racing Updates: %v", err)
			}
		})
		close(start)
		wg.Wait()
		for _, s := range []*store{up, del} {
			eventuallyGone(t, s, sess, "deleted while Updates ran")
		}
		deleted = append(deleted, sess)
	}
	closeAll(t, up, del)
	s := e.open(up.opts)
	for _, sess := range deleted {
		expectGone(t, s, sess, "deleted while Updates ran, after a reopen")
	}
}

// testUpdatesAreNotLost: Updates of one session at once apply one after
// another: each sees the one before, and none is lost.
func testUpdatesAreNotLost(t *testing.T, e *env) {
	s := e.open(sessions.Options{})
	updatesAreNotLost(t, e, s, s)
}

// updatesAreNotLost appends a letter to a session's scope from many
// goroutines at once, half through a and half through b, and checks that
// every letter is there.
func updatesAreNotLost(t *testing.T, e *env, a, b *store) {
	ctx := t.Context()
	const updaters = 16
	sess := e.newSession()
	sess.Scope = ""
	create(t, a, sess)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range updaters {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			<-start
			if _, err := s.Update(ctx, sess.ID, func(x *sessions.Session) error {
				x.Scope += "u"
				return nil
			}); err != nil {
				t.Errorf("Update: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	want := strings.Repeat("u", updaters)
	for _, s := range []*store{a, b} {
		eventually(t, "every update applied", func() error {
			got, err := s.Get(ctx, sess.ID)
			if err != nil {
				return err
			}
			if got.Scope != want {
				return fmt.Errorf("%d of %d updates applied", len(got.Scope), updaters)
			}
			return nil
		})
	}
}

// testDelete: a deleted session is found by neither key; deleting it
// again, or a session that never was, is no error.
func testDelete(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	sess, other := e.newSession(), e.newSession()
	create(t, s, sess)
	create(t, s, other)
	if err := s.Delete(ctx, sess.ID); err != nil {
		t.Fatal(err)
	}
	expectGone(t, s, sess, "deleted")
	if err := s.Delete(ctx, sess.ID); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := s.Delete(ctx, sessions.NewToken()); err != nil {
		t.Errorf("Delete of a session that never was: %v", err)
	}
	if _, err := s.Get(ctx, other.ID); err != nil {
		t.Errorf("Delete of one session took another: %v", err)
	}
	s = e.reopen(s)
	expectGone(t, s, sess, "deleted, after a reopen")
	if _, err := s.Get(ctx, other.ID); err != nil {
		t.Errorf("after reopen, the session not deleted: %v", err)
	}
}

// testCountAndList: Count is what is stored, List what is live.
func testCountAndList(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	expectCount(t, s, 0)
	if list, err := s.List(ctx); err != nil || len(list) != 0 {
		t.Fatalf("List of an empty store = %d, %v", len(list), err)
	}
	var all []sessions.Session
	for i := range 4 {
		sess := e.newSession()
		sess.DID = fmt.Sprintf("did:plc:user%d", i)
		sess.Expiry = sess.CreatedAt.Add(time.Duration(i+1) * time.Hour)
		create(t, s, sess)
		all = append(all, sess)
	}
	expectCount(t, s, 4)
	expectList(t, s, all)
	if err := s.Delete(ctx, all[3].ID); err != nil {
		t.Fatal(err)
	}
	expectCount(t, s, 3)
	expectList(t, s, all[:3])
	// Past the first expiry List leaves it out; Count may count it until
	// the sweep.
	e.clock.Add(90 * time.Minute)
	expectList(t, s, all[1:3])
	if n, err := s.DeleteExpired(ctx); err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1", n, err)
	}
	expectCount(t, s, 2)
	s = e.reopen(s)
	expectCount(t, s, 2)
	expectList(t, s, all[1:3])
}

func expectCount(t *testing.T, s sessions.Store, want int) {
	t.Helper()
	if n, err := s.Count(t.Context()); err != nil || n != want {
		t.Errorf("Count = %d, %v; want %d", n, err, want)
	}
}

// expectList checks that List returns exactly want, in any order.
func expectList(t *testing.T, s sessions.Store, want []sessions.Session) {
	t.Helper()
	list, err := s.List(t.Context())
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	byID := map[string]sessions.Session{}
	for _, got := range list {
		byID[got.ID] = got
	}
	if len(byID) != len(list) {
		t.Errorf("List returned a session twice: %d sessions, %d ids", len(list), len(byID))
	}
	var missing []string
	for _, w := range want {
		got, ok := byID[w.ID]
		if !ok {
			missing = append(missing, w.DID)
			continue
		}
		if f := diff(got, w); f != "" {
			t.Errorf("List: the session of %s differs in its %s", w.DID, f)
		}
		delete(byID, w.ID)
	}
	if len(missing) > 0 {
		t.Errorf("List lacks the sessions of %v", missing)
	}
	var extra []string
	for _, got := range byID {
		extra = append(extra, got.DID)
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		t.Errorf("List has sessions it should not: %v", extra)
	}
}

// expectGone checks that sess is found by neither key.
func expectGone(t *testing.T, s sessions.Store, sess sessions.Session, what string) {
	t.Helper()
	if _, err := s.Get(t.Context(), sess.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("%s: Get = %v, want ErrNotFound", what, err)
	}
	if _, err := s.ByProxyKey(t.Context(), sess.ProxyKey); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("%s: ByProxyKey = %v, want ErrNotFound", what, err)
	}
}

// eventuallyGone waits, for up to propagation, until s finds sess by
// neither key.
func eventuallyGone(t *testing.T, s sessions.Store, sess sessions.Session, what string) {
	t.Helper()
	eventually(t, what, func() error {
		if got, err := s.Get(t.Context(), sess.ID); !errors.Is(err, sessions.ErrNotFound) {
			return fmt.Errorf("by id: found %q, %v; want ErrNotFound", got.ID, err)
		}
		if got, err := s.ByProxyKey(t.Context(), sess.ProxyKey); !errors.Is(err, sessions.ErrNotFound) {
			return fmt.Errorf("by proxy key: found %q, %v; want ErrNotFound", got.ID, err)
		}
		return nil
	})
}

// closeAll closes each distinct store once.
func closeAll(t *testing.T, stores ...*store) {
	t.Helper()
	for _, s := range stores {
		if err := s.Close(); err != nil {
			t.Fatalf("close store: %v", err)
		}
	}
}
