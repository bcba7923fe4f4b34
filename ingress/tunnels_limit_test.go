package ingress

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/ioproxy/ioproxy/internal/wstest"
)

// TestKeyTunnelNotCutByTheWrongKeyLimit: a WebSocket opened with a good
// API key stays open when, after a reload (the new gate's Keys do not
// remember the key as good), its recheck meets the wrong-key limit of its
// address, which anyone else behind that address (a NAT, a proxy not in
// trusted_proxies) can use up; ErrBusy takes the same path. Neither says
// anything of the tunnel's key (found in review: the tunnel was cut).
func TestKeyTunnelNotCutByTheWrongKeyLimit(t *testing.T) {
	t.Run("after a reload", func(t *testing.T) { keyTunnelPastTheLimit(t, true) })
	// Control: without a reload the key is remembered as good, never
	// counted, and the tunnel stays open.
	t.Run("no reload (control)", func(t *testing.T) { keyTunnelPastTheLimit(t, false) })
}

func keyTunnelPastTheLimit(t *testing.T, reload bool) {
	backend := wstest.EchoServer(t)
	src := fmt.Sprintf(`host "127.0.0.1" {
  backend = %q
  apikey_auth {
    users = %s
  }
}`, backend.URL, gateUsers(t))
	cfg := mustConfig(t, src)
	rt := newRouter(t, cfg, nil)
	rt.tunnelRecheck = 10 * time.Millisecond
	srv := httptest.NewServer(rt)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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

	// Someone else at the same address guesses keys until limited.
	limited := false
	for range wrongKeysPerMinute + 2 {
		r, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		r.SetBasicAuth("ci", "guess")
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode == http.StatusTooManyRequests {
			limited = true
		}
	}
	if !limited {
		t.Fatal("the guesses were never limited")
	}
	if reload {
		// A reload that changes nothing of this host.
		routes, err := rt.NewRoutes(RoutesConfig{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		rt.SetRoutes(routes)
	}
	time.Sleep(30 * rt.tunnelRecheck)
	if err := c.Write(ctx, websocket.MessageText, []byte("after")); err != nil {
		t.Fatalf("the tunnel of a good key was cut by the wrong-key limit of its address: write: %v", err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "after" {
		t.Fatalf("the tunnel of a good key was cut by the wrong-key limit of its address: read %q, %v", msg, err)
	}
}

// TestRemovedKeyTunnelPastTheLimit: the holder of a tunnel whose key a
// reload removes cannot keep it open by spending its own address's
// wrong-key limit before each recheck (a limited recheck once kept the
// tunnel).
func TestRemovedKeyTunnelPastTheLimit(t *testing.T) {
	backend := wstest.EchoServer(t)
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "127.0.0.1" {
  backend = %q
  apikey_auth {
    users = %s
  }
}`, backend.URL, gateUsers(t))), nil)
	rt.tunnelRecheck = 10 * time.Millisecond
	srv := httptest.NewServer(rt)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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
	// The tunnel's own address spends its wrong-key limit (its key,
	// remembered as good, is not counted meanwhile)...
	for range wrongKeysPerMinute + 2 {
		r, _ := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		r.SetBasicAuth("ci", "guess")
		res, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	// ...and then a reload removes the key.
	hash, err := bcrypt.GenerateFromPassword([]byte("other-secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	setRoutes(t, rt, fmt.Sprintf(`host "127.0.0.1" {
  backend = %q
  apikey_auth { users = ["other:%s"] }
}`, backend.URL, hash))
	if _, msg, err := c.Read(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("the tunnel of a removed key is still open (read %q, %v)", msg, err)
	}
}
