package calling

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/atproto/atprototest"
	"github.com/ioproxy/ioproxy/sessions"
)

// offsetClock is the wall clock moved forward by a settable offset: the
// fake checks DPoP proofs against the wall clock, and the client's caches
// must see time pass.
type offsetClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *offsetClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return time.Now().Add(c.off) }
func (c *offsetClock) Add(d time.Duration) {
	c.mu.Lock()
	c.off += d
	c.mu.Unlock()
}

// failWith answers requests for path with status and an OAuth error body.
func failWith(path string, status int, code string) func(http.ResponseWriter, *http.Request) bool {
	return func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != path {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(`{"error":"` + code + `","error_description":"injected by the test"}`))
		return true
	}
}

// TestHandleCheckSurvivesAFailedRefresh: a refresh verifies the account's
// handle before it spends the refresh token. When a later step fails for
// a passing reason, what the check verified is kept (the handle that
// access rules judge, and when it was checked), and the session lives on.
// When the check itself cannot be made, nothing is taken for verified.
func TestHandleCheckSurvivesAFailedRefresh(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fail makes one step of the refresh fail.
		fail func(e *callEnv) func(http.ResponseWriter, *http.Request) bool
		// staleMetadata lets the cached server metadata expire first.
		staleMetadata bool
		// verified: the new handle was verified before the failure.
		verified bool
	}{
		{"token endpoint 500", func(*callEnv) func(http.ResponseWriter, *http.Request) bool {
			return failWith("/oauth/token", 500, "server_error")
		}, false, true},
		{"token endpoint 503", func(*callEnv) func(http.ResponseWriter, *http.Request) bool {
			return failWith("/oauth/token", 503, "temporarily_unavailable")
		}, false, true},
		{"invalid_client at the token endpoint", func(*callEnv) func(http.ResponseWriter, *http.Request) bool {
			return failWith("/oauth/token", 400, "invalid_client")
		}, false, true},
		{"authorization server metadata", func(*callEnv) func(http.ResponseWriter, *http.Request) bool {
			return failWith("/.well-known/oauth-authorization-server", 500, "server_error")
		}, true, true},
		{"resource metadata of the PDS", func(*callEnv) func(http.ResponseWriter, *http.Request) bool {
			return failWith("/.well-known/oauth-protected-resource", 500, "server_error")
		}, false, true},
		{"PLC directory down", func(e *callEnv) func(http.ResponseWriter, *http.Request) bool {
			return func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasPrefix(r.URL.Path, "/did:") {
					return false
				}
				w.WriteHeader(http.StatusBadGateway)
				return true
			}
		}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &offsetClock{}
			e := newCallEnvAt(t, clock.Now)
			sess := e.signIn(t, e.alice)
			// The account's handle moves: alice.test now names someone
			// else, and alice is alice2.test.
			e.srv.AddAccount(atprototest.Account{DID: e.alice.DID, Handle: "alice2.test"})
			e.srv.AddAccount(atprototest.Account{Handle: "alice.test"})
			if tc.staleMetadata {
				clock.Add(10 * time.Minute)
			}
			before, _ := getSession(e.store, sess.ID)
			e.srv.SetIntercept(tc.fail(e))
			_, err := e.tokens.Refresh(context.Background(), sess.ID, sess.AccessToken)
			if err == nil || errors.Is(err, sessions.ErrEnded) {
				t.Fatalf("Refresh = %v, want a passing failure", err)
			}
			after, ok := getSession(e.store, sess.ID)
			if !ok {
				t.Fatal("a passing failure ended the session")
			}
			if after.AccessToken != before.AccessToken || after.RefreshToken != before.RefreshToken {
				t.Error("the tokens changed although the refresh failed")
			}
			if tc.verified {
				if after.Handle != "alice2.test" {
					t.Errorf("handle = %q, want the one just verified, alice2.test", after.Handle)
				}
				if !after.HandleChecked().After(before.HandleChecked()) {
					t.Errorf("handle check time %v did not move past %v", after.HandleChecked(), before.HandleChecked())
				}
			} else if after.Handle != before.Handle || !after.HandleChecked().Equal(before.HandleChecked()) {
				t.Errorf("nothing was verified, yet the session says %q checked at %v (was %q at %v)", after.Handle, after.HandleChecked(), before.Handle, before.HandleChecked())
			}
			// Once the server is back, the refresh goes through and the
			// check time moves on with it.
			e.srv.SetIntercept(nil)
			next, err := e.tokens.Refresh(context.Background(), sess.ID, after.AccessToken)
			if err != nil || next.Handle != "alice2.test" || next.AccessToken == before.AccessToken {
				t.Errorf("refresh after recovery: %v, handle %q", err, next.Handle)
			}
		})
	}
}

// TestOnlyInvalidGrantEndsASession: invalid_client says that the server
// could not check ioproxy's client (its metadata or key set could not be
// fetched), which passes, and says nothing of the session.
func TestOnlyInvalidGrantEndsASession(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	h := e.port(t, pdsCall())
	e.srv.ExpireAccessTokens()
	e.srv.SetIntercept(failWith("/oauth/token", 400, "invalid_client"))
	rec := call(h, "GET", "/xrpc/com.example.echo", "", who(sess))
	if rec.Code != http.StatusBadGateway || xrpcError(t, rec) != "UpstreamFailure" {
		t.Errorf("call while the server refuses our client: %d %s", rec.Code, rec.Body)
	}
	if _, ok := getSession(e.store, sess.ID); !ok {
		t.Fatal("invalid_client ended the session")
	}
	e.srv.SetIntercept(failWith("/oauth/token", 400, "invalid_grant"))
	rec = call(h, "GET", "/xrpc/com.example.echo", "", who(sess))
	if rec.Code != http.StatusUnauthorized || xrpcError(t, rec) != "AuthRequired" {
		t.Errorf("call with a dead refresh token: %d %s", rec.Code, rec.Body)
	}
	if _, ok := getSession(e.store, sess.ID); ok {
		t.Error("invalid_grant left the session alive")
	}
}

// TestRefreshLaterRechecksHandle: a session whose token is still good but
// whose handle is due for a recheck is refreshed too, so access rules that
// name handles always have a recent check, whatever the token lifetimes of
// the account's server.
func TestRefreshLaterRechecksHandle(t *testing.T) {
	e := newCallEnv(t)
	sess := e.signIn(t, e.alice)
	due, err := e.store.Update(context.Background(), sess.ID, func(s *sessions.Session) error {
		s.HandleCheckedAt = time.Now().Add(-sessions.HandleRecheck - time.Minute)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv.AddAccount(atprototest.Account{DID: e.alice.DID, Handle: "alice2.test"})
	e.tokens.RefreshLater(due)
	e.tokens.Wait()
	got, _ := getSession(e.store, sess.ID)
	if got.Handle != "alice2.test" || time.Since(got.HandleChecked()) > time.Minute {
		t.Errorf("after RefreshLater: handle %q checked at %v", got.Handle, got.HandleChecked())
	}
	if n := e.srv.Counts().Refresh; n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}
}
