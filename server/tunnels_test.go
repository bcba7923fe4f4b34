package server

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ioproxy/ioproxy/internal/wstest"
)

// A WebSocket through a calling port to an ingress host closes when a
// reload changes its call block, whatever reloads came before: a call to
// a host gets a new handler at every reload, which shares the block's
// retirement while the block stays the same (found in review: a reload
// that left the block alone put the tunnel's handler out of reach).
func TestCallTunnelClosedByAChangeAfterAnUnrelatedReload(t *testing.T) {
	for _, tc := range []struct {
		name      string
		unrelated bool
	}{
		{"changed at the next reload", false},
		{"changed after an unrelated reload", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := wstest.EchoServer(t)
			dataDir := filepath.Join(t.TempDir(), "data")
			ps := freePorts(t, 2)
			src := func(extraHost, callExtra string) string {
				return fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "" }
host "app.localhost" { backend = %q }
%s
call "ws" {
  port     = %d
  endpoint = "app.localhost"
  %s
}
`, dataDir, ps[0], backend.URL, extraHost, ps[1], callExtra)
			}
			rl := startReloadable(t, src("", ""))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws://"+rl.srv.Addrs()["call:ws"]+"/ws", nil)
			if err != nil {
				t.Fatalf("websocket through the calling port: %v", err)
			}
			defer c.CloseNow()
			if err := wstest.Echo(ctx, c, "before"); err != nil {
				t.Fatal(err)
			}
			if tc.unrelated {
				// Another host: the call block stays the same.
				rl.reload(src(`host "other.localhost" { backend = "`+backend.URL+`" }`, ""))
				if err := wstest.Echo(ctx, c, "after the unrelated reload"); err != nil {
					t.Fatalf("an unrelated reload closed the tunnel: %v", err)
				}
			}
			// The call block changes: its tunnels must close.
			rl.reload(src("", `timeout = "20s"`))
			rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
			defer rcancel()
			// Read only: the close comes a moment after the reload, and an
			// echo sent at once may still come back (seen in CI).
			if _, _, err := c.Read(rctx); err == nil || rctx.Err() != nil {
				t.Fatalf("the tunnel is still open after a reload changed its call block: %v", err)
			}
		})
	}
}

// Close ends a WebSocket through a calling port, which Shutdown leaves
// alone (found in review: it outlived Close, its watch asking a closed
// store).
func TestCallTunnelClosedByClose(t *testing.T) {
	backend := wstest.EchoServer(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	rl := startReloadable(t, fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "" }
host "app.localhost" { backend = %q }
call "ws" {
  port     = %d
  endpoint = "app.localhost"
}
`, dataDir, ps[0], backend.URL, ps[1]))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+rl.srv.Addrs()["call:ws"]+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := wstest.Echo(ctx, c, "before"); err != nil {
		t.Fatal(err)
	}
	rl.srv.Close()
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	// Read only: the tunnel closes a moment after Close returns.
	if _, _, err := c.Read(rctx); err == nil || rctx.Err() != nil {
		t.Fatalf("a WebSocket through a calling port is still open after Server.Close: %v", err)
	}
}
