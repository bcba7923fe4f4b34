package wstest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestEcho: what is sent comes back, and a closed connection is an
// error.
func TestEcho(t *testing.T) {
	srv := EchoServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Echo(ctx, c, "hi"); err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
	if err := Echo(ctx, c, "after close"); err == nil {
		t.Error("Echo over a closed connection succeeded")
	}
}
