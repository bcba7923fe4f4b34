package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// trickle sends a request head announcing a body of 100000 bytes, then one
// body byte every 200 ms (below body_min_rate = 100 bytes/s, and never idle
// for body_idle_timeout = 1s), and reports the answer's status line, or
// "held" when nothing came back within hold.
func trickle(t *testing.T, dial func() (net.Conn, error), head string, hold time.Duration) string {
	t.Helper()
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, head+"Content-Length: 100000\r\n\r\nx"); err != nil {
		t.Fatal(err)
	}
	answered := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- "error: " + err.Error()
			return
		}
		answered <- resp.Status
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(hold)
	for {
		select {
		case s := <-answered:
			return s
		case <-tick.C:
			_, _ = conn.Write([]byte("x"))
		case <-deadline:
			return "held"
		}
	}
}

// TestNoAnswerWaitsForAnUnreadBody: every answer that does not read the
// request body (redirects, 421, forward-auth, admin pages, errors, a
// backend's own 401) goes out at once and closes the connection, whatever
// the client trickles: net/http would otherwise read up to 256 KiB of the
// body first, at the client's pace and with no deadline.
func TestNoAnswerWaitsForAnUnreadBody(t *testing.T) {
	// A backend that answers 401 at once without reading the body, as
	// most apps' auth middlewares do.
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(backend.Close) // the subtests run in parallel, after this function returns
	ps := freePorts(t, 7)
	httpPort, httpsPort, callPort, callPort2, callPort3, adminPort, localPort := ps[0], ps[1], ps[2], ps[3], ps[4], ps[5], ps[6]
	s := start(t, fmt.Sprintf(`
data_dir = %q
ingress {
  http              = "127.0.0.1:%d"
  https             = "127.0.0.1:%d"
  body_idle_timeout = "1s"
  body_min_rate     = 100
}
admin { listen = "127.0.0.1:%d" }
host "secure.example.com" {
  backend = %q
  tls { mode = "self_signed" }
}
host "other.example.com" {
  backend = %q
  tls { mode = "self_signed" }
}
host "open.localhost" {
  backend = %q
  tls { mode = "off" }
}
host "localhost" {
  backend = %q
  atproto { local = %d }
}
host "fa.localhost" {
  apikey_auth { users = ["ci:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="] }
  tls { mode = "off" }
}
call "api" {
  port     = %d
  endpoint = %q
}
call "pds" {
  port     = %d
  endpoint = "@"
}
call "browser" {
  port     = %d
  endpoint = "localhost"
}
call "down" {
  port     = %d
  endpoint = "127.0.0.1:1"
}
`, filepath.Join(t.TempDir(), "data"), httpPort, httpsPort, adminPort, backend.URL, backend.URL, backend.URL, backend.URL, localPort, callPort, backend.URL, callPort2, localPort, callPort3))

	plain := func(addr string) func() (net.Conn, error) {
		return func() (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	tlsTo := func(sni string) func() (net.Conn, error) {
		return func() (net.Conn, error) {
			return tls.Dial("tcp", s.Addrs()["https"], &tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		}
	}
	cases := []struct {
		name string
		dial func() (net.Conn, error)
		head string
	}{
		{"unknown host 404 (writeError)", plain(s.Addrs()["http"]), "POST / HTTP/1.1\r\nHost: nope.example\r\n"},
		{"plain-HTTP redirect to HTTPS (serve.httpHandler)", plain(s.Addrs()["http"]), "POST /x HTTP/1.1\r\nHost: secure.example.com\r\n"},
		{"/@/ spelling redirect 308 (router)", plain(s.Addrs()["http"]), "POST //@/signin HTTP/1.1\r\nHost: open.localhost\r\n"},
		{"forward-auth 200 (admitted by API key)", plain(s.Addrs()["http"]), "POST /@/auth HTTP/1.1\r\nHost: fa.localhost\r\nAuthorization: Basic Y2k6c2VjcmV0\r\n"},
		{"backend 401 without reading (ingress proxy)", plain(s.Addrs()["http"]), "POST / HTTP/1.1\r\nHost: open.localhost\r\n"},
		{"SNI mismatch 421 (sniMatchesHost)", tlsTo("secure.example.com"), "POST / HTTP/1.1\r\nHost: other.example.com\r\n"},
		{"admin: Host refused", plain(s.Addrs()["admin"]), "POST /metrics HTTP/1.1\r\nHost: evil.example\r\n"},
		{"admin: /healthz with a body", plain(s.Addrs()["admin"]), "POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"},
		{"call URL endpoint, upstream 401 without reading", plain(s.Addrs()["call:api"]), "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"},
		{"call URL endpoint: upstream unreachable (502)", plain(s.Addrs()["call:down"]), "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n"},
		{"call: Host refused (403, CloseIfBody)", plain(s.Addrs()["call:api"]), "POST / HTTP/1.1\r\nHost: evil.example\r\n"},
		{"call @: POST without User-Did (400, CloseIfBody)", plain(s.Addrs()["call:pds"]), "POST /xrpc/x HTTP/1.1\r\nHost: 127.0.0.1\r\n"},
		{"sign-in catch-all 404 for PUT /@/signin", plain(s.Addrs()["call:browser"]), "PUT /@/signin HTTP/1.1\r\nHost: localhost\r\n"},
		{"call @: resolveHandle GET with a body", plain(s.Addrs()["call:pds"]), "GET /xrpc/com.atproto.identity.resolveHandle HTTP/1.1\r\nHost: 127.0.0.1\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := trickle(t, tc.dial, tc.head, 5*time.Second); got == "held" || strings.HasPrefix(got, "error") {
				t.Errorf("a trickled, unread body: %s within 5 s (body_idle_timeout is 1 s)", got)
			}
		})
	}
}

// TestSilentBodyIsNotHeldForEver: one request head with a Content-Length
// and then silence, on the plain-HTTP listener (whose answer, a redirect
// to HTTPS, reads no body), is answered and closed: it held the
// connection, and one of max_connections, for ever.
func TestSilentBodyIsNotHeldForEver(t *testing.T) {
	ps := freePorts(t, 2)
	s := start(t, fmt.Sprintf(`
data_dir = %q
ingress {
  http              = "127.0.0.1:%d"
  https             = "127.0.0.1:%d"
  body_idle_timeout = "1s"
}
admin { listen = "" }
host "secure.example.com" {
  backend = "localhost:1"
  tls { mode = "self_signed" }
}
`, filepath.Join(t.TempDir(), "data"), ps[0], ps[1]))
	conn, err := net.Dial("tcp", s.Addrs()["http"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: secure.example.com\r\nContent-Length: 1000\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer within 5 s: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPermanentRedirect || !resp.Close {
		t.Errorf("%d (close %v), want the redirect and the connection closed", resp.StatusCode, resp.Close)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil {
		t.Error("the connection stays open after the answer")
	}
}

// TestOneClientCannotTakeEverySlot: a client holds at most its share of a
// listener's connections (max_connections_per_client), so one machine's
// idle keep-alive connections cannot keep everyone else at 503.
func TestOneClientCannotTakeEverySlot(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	s := start(t, fmt.Sprintf(`
data_dir = %q
ingress {
  http                       = "127.0.0.1:%d"
  max_connections            = 4
  max_connections_per_client = 2
}
admin { listen = "" }
host "app.localhost" {
  backend = %q
  tls { mode = "off" }
}`, filepath.Join(t.TempDir(), "data"), freePort(t), backend.URL))
	get := func(from string) int {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c, err := d.Dial("tcp", s.Addrs()["http"])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 2 {
		if code := get("127.0.0.1"); code != 200 {
			t.Fatalf("connection %d of the first client: %d", i, code)
		}
	}
	if code := get("127.0.0.1"); code != http.StatusServiceUnavailable {
		t.Errorf("a third connection of the first client: %d, want 503", code)
	}
	if code := get("127.0.0.2"); code != 200 {
		t.Errorf("another client, while the first holds its share: %d, want 200", code)
	}
}

// TestBodyRateHasNoCredit: body_min_rate holds in every window of
// body_idle_timeout: bytes sent at once do not buy time later (averaged
// over the whole body, one megabyte would hold a request for an hour at
// the defaults). Here: 100 B/s over 1 s windows, a 3000-byte burst, then a
// byte every 900 ms is cut within a few windows.
func TestBodyRateHasNoCredit(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %d bytes", len(b))
	}))
	defer backend.Close()
	s := start(t, fmt.Sprintf(`
data_dir = %q
ingress {
  http              = "127.0.0.1:%d"
  body_idle_timeout = "1s"
  body_min_rate     = 100
}
admin { listen = "" }
host "app.localhost" {
  backend = %q
  tls { mode = "off" }
}`, filepath.Join(t.TempDir(), "data"), freePort(t), backend.URL))
	conn, err := net.Dial("tcp", s.Addrs()["http"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: app.localhost\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("a", 3000))
	answered := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			answered <- "error"
			return
		}
		answered <- resp.Status
	}()
	tick := time.NewTicker(900 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(6 * time.Second)
	for {
		select {
		case st := <-answered:
			if !strings.HasPrefix(st, "408") {
				t.Errorf("the trickle after a burst: %s, want 408", st)
			}
			return
		case <-tick.C:
			_, _ = conn.Write([]byte("x"))
		case <-deadline:
			t.Errorf("a body trickling at ~1 B/s (min rate 100 B/s) is still open after 6 s")
			return
		}
	}
}
