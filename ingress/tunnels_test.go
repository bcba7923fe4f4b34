package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/ioproxy/ioproxy/internal/wstest"
	"github.com/ioproxy/ioproxy/sessions"
)

// downStore fails every lookup while down is set: a store that cannot
// answer.
type downStore struct {
	sessions.Store
	down atomic.Bool
}

func (s *downStore) Get(ctx context.Context, id string) (sessions.Session, error) {
	if s.down.Load() {
		return sessions.Session{}, errors.New("store unreachable")
	}
	return s.Store.Get(ctx, id)
}

// TestTunnelsJudgedAgain: an open WebSocket is closed once a request of
// the same browser would no longer be admitted as the same account (a
// sign-out, a reload that removes the rule or the host), and stays open
// while it would be, or while the store cannot say.
func TestTunnelsJudgedAgain(t *testing.T) {
	backend := wstest.EchoServer(t)
	hostConfig := func(did string) string {
		return fmt.Sprintf(`host "127.0.0.1" {
  backend = %q
  require_atproto { dids = [%q] }
}`, backend.URL, did)
	}
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, rt *Router, store *downStore, sess sessions.Session)
		closed bool
	}{
		{"signed out", func(t *testing.T, _ *Router, store *downStore, sess sessions.Session) {
			if err := store.Delete(context.Background(), sess.ID); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"a reload removes the rule that admitted it", func(t *testing.T, rt *Router, _ *downStore, _ sessions.Session) {
			setRoutes(t, rt, hostConfig(gateBob))
		}, true},
		{"a reload removes the host", func(t *testing.T, rt *Router, _ *downStore, _ sessions.Session) {
			setRoutes(t, rt, `host "other.example.com" { backend = "127.0.0.1:1" }`)
		}, true},
		{"a reload keeps the rule", func(t *testing.T, rt *Router, _ *downStore, _ sessions.Session) {
			setRoutes(t, rt, hostConfig(gateAlice))
		}, false},
		{"the store cannot answer", func(t *testing.T, _ *Router, store *downStore, _ sessions.Session) {
			store.down.Store(true)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := &downStore{Store: openStore(t)}
			rt := newRouter(t, mustConfig(t, hostConfig(gateAlice)), store)
			rt.tunnelRecheck = 10 * time.Millisecond
			srv := httptest.NewServer(rt)
			defer srv.Close()
			sess := newGateSession(t, store, "127.0.0.1", gateAlice, "alice.example.com")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws",
				&websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {CookieName + "=" + sess.ID}}})
			if err != nil {
				t.Fatalf("websocket through ingress: %v", err)
			}
			defer c.CloseNow()
			echo(ctx, t, c, "before")
			tc.change(t, rt, store, sess)
			if !tc.closed {
				time.Sleep(20 * rt.tunnelRecheck) // many rechecks
				echo(ctx, t, c, "after")
				return
			}
			if _, msg, err := c.Read(ctx); err == nil || ctx.Err() != nil {
				t.Fatalf("the tunnel is still open (read %q, %v)", msg, err)
			}
		})
	}
}

func echo(ctx context.Context, t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	if err := wstest.Echo(ctx, c, text); err != nil {
		t.Fatal(err)
	}
}

func setRoutes(t *testing.T, rt *Router, src string) {
	t.Helper()
	routes, err := rt.NewRoutes(RoutesConfig{Config: mustConfig(t, src)})
	if err != nil {
		t.Fatal(err)
	}
	rt.SetRoutes(routes)
}

// TestTunnelOfARemovedKey: a WebSocket opened with an API key is closed
// once a reload removes the key's user.
func TestTunnelOfARemovedKey(t *testing.T) {
	backend := wstest.EchoServer(t)
	withKeys := fmt.Sprintf(`host "127.0.0.1" {
  backend = %q
  apikey_auth {
    users = %s
  }
}`, backend.URL, gateUsers(t))
	rt := newRouter(t, mustConfig(t, withKeys), nil)
	rt.tunnelRecheck = 10 * time.Millisecond
	srv := httptest.NewServer(rt)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.SetBasicAuth("ci", gateKeys["ci"])
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": req.Header["Authorization"]}})
	if err != nil {
		t.Fatalf("websocket with a key: %v", err)
	}
	defer c.CloseNow()
	echo(ctx, t, c, "with the key")
	hash, err := bcrypt.GenerateFromPassword([]byte("other-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	setRoutes(t, rt, fmt.Sprintf(`host "127.0.0.1" {
  backend = %q
  apikey_auth { users = ["other:%s"] }
}`, backend.URL, hash))
	if _, msg, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("the tunnel is still open (read %q, %v)", msg, err)
	}
}

// errorCount counts the log records at Error level.
type errorCount struct{ n *atomic.Int64 }

func (c errorCount) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (c errorCount) Handle(context.Context, slog.Record) error    { c.n.Add(1); return nil }
func (c errorCount) WithAttrs([]slog.Attr) slog.Handler           { return c }
func (c errorCount) WithGroup(string) slog.Handler                { return c }

// TestTunnelRecheckQuietInAnOutage: a store out of reach keeps the
// tunnels open, and their rechecks log nothing (found in review: an
// error line per tunnel per recheck).
func TestTunnelRecheckQuietInAnOutage(t *testing.T) {
	backend := wstest.EchoServer(t)
	store := &downStore{Store: openStore(t)}
	var logged atomic.Int64
	rt, err := New(Config{Config: mustConfig(t, fmt.Sprintf(`host "127.0.0.1" {
  backend = %q
  require_atproto { dids = [%q] }
}`, backend.URL, gateAlice)), Sessions: sessions.NewLifecycle(sessions.LifecycleConfig{Store: store}),
		Logger: slog.New(errorCount{&logged}), TunnelRecheck: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rt)
	defer srv.Close()
	sess := newGateSession(t, store, "127.0.0.1", gateAlice, "alice.example.com")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {CookieName + "=" + sess.ID}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	store.down.Store(true)
	time.Sleep(40 * 5 * time.Millisecond)
	echo(ctx, t, c, "still open")
	if n := logged.Load(); n != 0 {
		t.Errorf("the rechecks of one tunnel logged %d errors in an outage; want none", n)
	}
}
