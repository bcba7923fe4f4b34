package sessions_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/sessions"
)

// fakeClock is a settable now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// TestUncheckedRefreshesBounded: a provider session goes on through
// refreshes whose ID token could not be checked, but not for ever: the
// third in a row ends it and revokes the tokens it answered; a checked
// one between starts the count again, an answer without an ID token does
// not (found in review).
func TestUncheckedRefreshesBounded(t *testing.T) {
	const (
		unchecked = iota
		checked
		noIDToken
	)
	for _, tc := range []struct {
		name    string
		answers []int // the refreshes' ID tokens, in turn
		ended   bool
	}{
		{"three unchecked in a row", []int{unchecked, unchecked, unchecked}, true},
		{"a checked one between", []int{unchecked, unchecked, checked, unchecked, unchecked}, false},
		{"an answer without an ID token does not start the count again", []int{unchecked, unchecked, noIDToken, unchecked}, true},
		{"two unchecked", []int{unchecked, unchecked}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Now()}
			turn := 0
			p := &fakeProvider{revoked: make(chan string, 4)}
			p.answer = func(string) (sessions.ProviderTokens, error) {
				turn++
				return sessions.ProviderTokens{AccessToken: fmt.Sprintf("access-%d", turn), RefreshToken: fmt.Sprintf("refresh-%d", turn),
					Expiry: clock.Now().Add(time.Minute), IdentityUnchecked: tc.answers[turn-1] == unchecked, IdentityChecked: tc.answers[turn-1] == checked}, nil
			}
			store := openStore(t)
			lc := sessions.NewLifecycle(sessions.LifecycleConfig{Store: store, Now: clock.Now, Providers: func(s sessions.Session) (sessions.ProviderClient, bool) {
				return p, true
			}})
			t.Cleanup(lc.Wait)
			g := expiredGrant()
			g.Expiry = clock.Now().Add(-time.Second)
			sess, err := lc.CreateProvider(t.Context(), g)
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.answers {
				clock.Advance(2 * time.Minute) // the token has expired, and no refresh is recent
				sess, err = lc.Fresh(t.Context(), sess)
				last := i == len(tc.answers)-1
				if tc.ended && last {
					if !errors.Is(err, sessions.ErrEnded) {
						t.Fatalf("refresh %d: %v, want ErrEnded", i+1, err)
					}
					select {
					case tok := <-p.revoked:
						if tok != fmt.Sprintf("refresh-%d", i+1) {
							t.Errorf("revoked %q, want the last answer's refresh token", tok)
						}
					case <-time.After(5 * time.Second):
						t.Error("the last answer's tokens were not revoked")
					}
					return
				}
				if err != nil {
					t.Fatalf("refresh %d: %v", i+1, err)
				}
			}
		})
	}
}
