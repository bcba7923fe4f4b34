package ingress

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRefusalsDoNotWaitForTheBody: net/http reads up to 256 KiB of an
// unread body before it sends an answer, at the client's pace. A refusal
// (the gate's 401, an unknown host's 404) must go out at once and close
// the connection, whatever the client still has to send.
func TestRefusalsDoNotWaitForTheBody(t *testing.T) {
	rt, _ := apiKeyRouter(t)
	srv := httptest.NewServer(rt)
	defer srv.Close()
	for _, host := range []string{"api.example.com", "unknown.example.com"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// 100 KB announced, 10 bytes sent, then nothing.
		fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: %s\r\nContent-Length: 100000\r\n\r\n0123456789", host)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%s: no answer while the body stalls: %v", host, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || !resp.Close {
			t.Errorf("%s: %d (close %v), want a refusal that closes the connection", host, resp.StatusCode, resp.Close)
		}
	}
}
