// Package wstest is a WebSocket peer for tests, in the style of
// httptest: a backend that echoes every message, and the echo check the
// tunnel tests of ingress, calling and server share.
package wstest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/coder/websocket"
)

// EchoServer is a backend on 127.0.0.1 that accepts WebSockets and
// echoes every message until the connection ends; it closes with t.
func EchoServer(t testing.TB) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Echo sends text over c and reads it back from an EchoServer.
func Echo(ctx context.Context, c *websocket.Conn, text string) error {
	if err := c.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		return fmt.Errorf("write %q: %w", text, err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil {
		return fmt.Errorf("read the echo of %q: %w", text, err)
	}
	if string(msg) != text {
		return fmt.Errorf("echo %q, want %q", msg, text)
	}
	return nil
}
