package sessions_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/sessions"
)

// TestProviderRefreshTooLargeEndsSession: a provider refresh whose new
// tokens are too large to store revokes them and ends the session, as an
// AT Protocol one does (saveGrant): the old refresh token may be spent.
// Found in review: the session went on with it, the new grant live at the
// provider, one more at each call.
func TestProviderRefreshTooLargeEndsSession(t *testing.T) {
	p := &fakeProvider{revoked: make(chan string, 8)}
	huge := strings.Repeat("a", sessions.MaxTokenBytes+1)
	p.answer = func(string) (sessions.ProviderTokens, error) {
		return sessions.ProviderTokens{AccessToken: huge, RefreshToken: "refresh-rotated", Expiry: time.Now().Add(time.Hour)}, nil
	}
	lc, store := providerLifecycle(t, p)
	sess, err := lc.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	_, err = lc.Fresh(t.Context(), sess)
	if !errors.Is(err, sessions.ErrEnded) {
		t.Errorf("Fresh with new tokens too large to store: %v; want ErrEnded, as for an AT Protocol session (saveGrant)", err)
	}
	if _, err := store.Get(t.Context(), sess.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("the session lives on with a spent refresh token (Get: %v)", err)
	}
	lc.Wait()
	select {
	case tok := <-p.revoked:
		if tok != "refresh-rotated" {
			t.Errorf("revoked %q, want the new refresh token", tok)
		}
	default:
		t.Errorf("the new grant, which cannot be stored, was not revoked")
	}
}

// TestForgetWaitsOutASlowRefresh: Forget waits for a refresh under way
// longer than a sign-out does, so that the refresh does not find the
// session gone and revoke its new token (at Google, the user's whole
// grant, the new sign-in's too), and it waits in the background, not in
// the sign-in that forgets. Found in review: Forget waited only as long
// as End, and then in the sign-in callback, which a browser leaving cut
// short.
func TestForgetWaitsOutASlowRefresh(t *testing.T) {
	p := &fakeProvider{revoked: make(chan string, 8), hold: make(chan struct{})}
	lc, store := providerLifecycle(t, p)
	sessions.SetEndWaits(lc, 20*time.Millisecond, 5*time.Second)
	sess, err := lc.CreateProvider(t.Context(), expiredGrant())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := lc.Fresh(t.Context(), sess)
		done <- err
	}()
	waitFor(func() bool { return p.refreshes.Load() == 1 }) // the refresh holds the lock
	// A new sign-in of the same account replaces the session: Forget
	// returns at once, its delete waiting for the lock in the background.
	returned := make(chan struct{})
	go func() {
		lc.Forget(sess)
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("Forget waits for the refresh under way: the sign-in that forgets would wait with it")
	}
	// The refresh outlasts End's wait, not Forget's.
	time.Sleep(200 * time.Millisecond)
	close(p.hold)
	<-done
	lc.Wait()
	select {
	case tok := <-p.revoked:
		t.Fatalf("Forget during a refresh: the refresh revoked %q", tok)
	default:
	}
	if _, err := store.Get(t.Context(), sess.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("the forgotten session is still stored: %v", err)
	}
}
