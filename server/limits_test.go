package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/httpguard/guardtest"
)

// TestListenersBoundSlowBodiesAndConnections runs the assembly as
// `ioproxy serve` does: a proxied POST whose body trickles is cut with 408
// (one byte a second held it open for ever), and connections past
// max_connections are answered 503 at once, never left hanging.
func TestListenersBoundSlowBodiesAndConnections(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %d bytes", len(b))
	}))
	defer backend.Close()
	s := start(t, fmt.Sprintf(`
data_dir = %q
ingress {
  http              = "127.0.0.1:%d"
  max_connections   = 16
  body_idle_timeout = "1s"
  body_min_rate     = 100
}
admin { listen = "" }
host "app.localhost" {
  backend = %q
  tls { mode = "off" }
}`, filepath.Join(t.TempDir(), "data"), freePort(t), backend.URL))
	addr := s.Addrs()["http"]

	// One byte every 200 ms: under 100 bytes a second.
	dial := func() (net.Conn, error) { return net.Dial("tcp", addr) }
	status := trickle(t, dial, "POST / HTTP/1.1\r\nHost: app.localhost\r\n", 10*time.Second)
	if !strings.HasPrefix(status, "408") {
		t.Errorf("trickled body: %s, want 408", status)
	}

	// A body that arrives is passed on whole.
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(strings.Repeat("a", 100000)))
	req.Host = "app.localhost"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "got 100000 bytes" {
		t.Errorf("a normal body: %d %s", resp.StatusCode, b)
	}
}

func TestListenerConnectionLimit(t *testing.T) {
	s := start(t, fmt.Sprintf(`
data_dir = %q
ingress {
  http            = "127.0.0.1:%d"
  max_connections = 2
}
admin { listen = "" }
host "app.localhost" {
  backend = "localhost:1"
  tls { mode = "off" }
}`, filepath.Join(t.TempDir(), "data"), freePort(t)))
	addr := s.Addrs()["http"]
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// The two held connections are accepted before the third arrives.
	for _, c := range held {
		fmt.Fprintf(c, "GET /nope HTTP/1.1\r\nHost: unknown.example\r\n\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("third connection: %v, want a 503", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
		t.Errorf("third connection: %d (close %v), want 503 and the connection closed", resp.StatusCode, resp.Close)
	}
}

// TestH2CSmugglingRefused: the whole assembly, as `ioproxy serve` runs
// it, refuses an h2c upgrade on the way to a backend that would accept
// it, on the ingress listener and on a calling port to a URL endpoint.
func TestH2CSmugglingRefused(t *testing.T) {
	backend := guardtest.NewLenientUpgradeBackend(t)
	ps := freePorts(t, 2)
	s := start(t, fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "" }
host "app.localhost" {
  backend = %q
  tls { mode = "off" }
}
call "api" {
  port     = %d
  endpoint = "http://%s"
}`, filepath.Join(t.TempDir(), "data"), ps[0], backend.Addr(), ps[1], backend.Addr()))
	for _, target := range []struct{ addr, host string }{{s.Addrs()["http"], "app.localhost"}, {s.Addrs()["call:api"], "127.0.0.1"}} {
		for _, tc := range guardtest.SmuggleAttempts {
			resp, body := guardtest.Send(t, target.addr, target.host, "/", tc.Headers)
			if resp.StatusCode != http.StatusBadRequest || !resp.Close {
				t.Errorf("%s, %s: %d (close %v) %s", target.host, tc.Name, resp.StatusCode, resp.Close, body)
			}
		}
	}
	if got := backend.Received(); got != "" {
		t.Errorf("the backend received:\n%s", got)
	}
}
