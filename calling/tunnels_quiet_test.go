package calling

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ioproxy/ioproxy/internal/wstest"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// outageStore is a store whose ByProxyKey fails while down is set (an
// outage of the store).
type outageStore struct {
	sessions.Store
	down atomic.Bool
}

func (s *outageStore) ByProxyKey(ctx context.Context, key string) (sessions.Session, error) {
	if s.down.Load() {
		return sessions.Session{}, errors.New("store unreachable")
	}
	return s.Store.ByProxyKey(ctx, key)
}

// levelCount counts the records at or above a level.
type levelCount struct {
	level slog.Level
	n     *atomic.Int64
}

func (c levelCount) Enabled(_ context.Context, l slog.Level) bool { return l >= c.level }
func (c levelCount) Handle(context.Context, slog.Record) error    { c.n.Add(1); return nil }
func (c levelCount) WithAttrs([]slog.Attr) slog.Handler           { return c }
func (c levelCount) WithGroup(string) slog.Handler                { return c }

// TestTunnelRecheckQuietInAnOutage: a store outage keeps the tunnels
// open and logs nothing per tunnel per recheck (found in review: an error
// line each, 333 a second for 10,000 tunnels).
func TestTunnelRecheckQuietInAnOutage(t *testing.T) {
	bolt, err := boltstore.Open(boltstore.Config{Path: filepath.Join(t.TempDir(), "data", "db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = bolt.Close() })
	store := &outageStore{Store: bolt}
	google := &fakeGoogle{}
	life := sessions.NewLifecycle(sessions.LifecycleConfig{Store: store, Providers: func(s sessions.Session) (sessions.ProviderClient, bool) {
		return google, s.Host == "tools.example.com" && s.Provider == "google"
	}})
	t.Cleanup(life.Wait)
	e := &authEnv{store: store, life: life, google: google}
	e.cfg = authConfig(t, wstest.EchoServer(t).URL)
	var errorsLogged atomic.Int64
	const recheck = 10 * time.Millisecond
	h, err := New(Config{Call: authCall(t, e.cfg, "google"), Sessions: life, TunnelRecheck: recheck,
		Logger: slog.New(levelCount{level: slog.LevelError, n: &errorsLogged})})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	sess := e.googleSession(t, time.Now().Add(time.Hour), "google-refresh-1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const tunnels = 10
	for range tunnels {
		c := dialPort(ctx, t, srv, http.Header{"Proxy-Session": {sess.ProxyKey}})
		if err := wstest.Echo(ctx, c, "before"); err != nil {
			t.Fatal(err)
		}
	}
	store.down.Store(true)
	time.Sleep(50 * recheck)
	store.down.Store(false)
	if n := errorsLogged.Load(); n > tunnels {
		t.Errorf("an outage of %v logged %d error lines for %d tunnels (one per tunnel per recheck); want a bounded number", 50*recheck, n, tunnels)
	}
}

// TestTunnelRecheckRefreshesNothing: the recheck looks the session up
// and refreshes nothing, so a session whose token expired while its
// provider is down does not make each recheck ask the token endpoint
// (found in review: 81 requests in 0.8 s from one tunnel).
func TestTunnelRecheckRefreshesNothing(t *testing.T) {
	e := newAuthEnv(t)
	e.cfg = authConfig(t, wstest.EchoServer(t).URL)
	e.google.fail = errors.New("token endpoint answered 503")
	const recheck = 10 * time.Millisecond
	h, err := New(Config{Call: authCall(t, e.cfg, "google"), Sessions: e.life, TunnelRecheck: recheck})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	sess := e.googleSession(t, time.Now().Add(300*time.Millisecond), "google-refresh-1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := dialPort(ctx, t, srv, http.Header{"Proxy-Session": {sess.ProxyKey}})
	echoOver(ctx, t, c, "before")
	opened := e.google.refreshes.Load() // the call that opened it may refresh
	time.Sleep(300*time.Millisecond + 50*recheck)
	echoOver(ctx, t, c, "after") // stays open: a failure for now is no answer
	if n := e.google.refreshes.Load() - opened; n != 0 {
		t.Errorf("the tunnel's rechecks asked the token endpoint %d times; want none", n)
	}
}

// TestRetiredRacesUpgrades: a block retired while upgrades come leaves
// no tunnel open (the watch selects on Retired after the isRetired
// check), and the watch's goroutines end with their tunnels.
func TestRetiredRacesUpgrades(t *testing.T) {
	e := newAuthEnv(t)
	e.cfg = authConfig(t, wstest.EchoServer(t).URL)
	retired := make(chan struct{})
	h, err := New(Config{Call: authCall(t, e.cfg, "static-header"), Sessions: e.life, Retired: retired})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const n = 40
	var wg sync.WaitGroup
	open := make(chan *websocket.Conn, n)
	for i := range n {
		wg.Go(func() {
			if i == n/2 {
				close(retired)
			}
			c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
			if err == nil {
				open <- c
			}
		})
	}
	wg.Wait()
	close(open)
	for c := range open {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		if _, _, err := c.Read(rctx); rctx.Err() != nil {
			t.Errorf("a tunnel opened around Retire is still open: %v", err)
		}
		rcancel()
		c.CloseNow()
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "watchTunnel") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watchTunnel goroutines outlive their tunnels:\n%s", stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
