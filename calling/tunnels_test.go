package calling

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ioproxy/ioproxy/internal/wstest"
)

func dialPort(ctx context.Context, t *testing.T, srv *httptest.Server, hdr http.Header) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		t.Fatalf("websocket through the calling port: %v", err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func closedSoon(ctx context.Context, t *testing.T, c *websocket.Conn) {
	t.Helper()
	if _, msg, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("the tunnel is still open (read %q, %v)", msg, err)
	}
}

// TestTunnelsOfARetiredPort: a reload that changes or removes a call
// block closes its Retired, which closes the port's open WebSockets and
// refuses new ones.
func TestTunnelsOfARetiredPort(t *testing.T) {
	e := newAuthEnv(t)
	e.cfg = authConfig(t, wstest.EchoServer(t).URL)
	retired := make(chan struct{})
	h, err := New(Config{Call: authCall(t, e.cfg, "static-header"), Sessions: e.life, Retired: retired})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := dialPort(ctx, t, srv, nil)
	echoOver(ctx, t, c, "before")
	close(retired)
	closedSoon(ctx, t, c)
	_, res, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err == nil || res == nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a websocket through a retired port: %v, %v; want a 503", res, err)
	}
}

// TestTunnelOfASessionCredential: a WebSocket that carries the user's
// provider session closes once the session gives no credential (signed
// out), and stays open while it does, or while the store cannot say.
func TestTunnelOfASessionCredential(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, e *authEnv, id string)
		closed bool
	}{
		{"signed out", func(t *testing.T, e *authEnv, id string) {
			if err := e.store.Delete(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"still signed in", func(*testing.T, *authEnv, string) {}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newAuthEnv(t)
			e.cfg = authConfig(t, wstest.EchoServer(t).URL)
			const recheck = 10 * time.Millisecond
			h, err := New(Config{Call: authCall(t, e.cfg, "google"), Sessions: e.life, TunnelRecheck: recheck})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			sess := e.googleSession(t, time.Now().Add(time.Hour), "google-refresh-1")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c := dialPort(ctx, t, srv, http.Header{"Proxy-Session": {sess.ProxyKey}})
			echoOver(ctx, t, c, "before")
			tc.change(t, e, sess.ID)
			if !tc.closed {
				time.Sleep(20 * recheck)
				echoOver(ctx, t, c, "after")
				return
			}
			closedSoon(ctx, t, c)
		})
	}
}

func echoOver(ctx context.Context, t *testing.T, c *websocket.Conn, text string) {
	t.Helper()
	if err := wstest.Echo(ctx, c, text); err != nil {
		t.Fatal(err)
	}
}
