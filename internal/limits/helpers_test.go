package limits

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// clientDeadline bounds every client connection of the tests: a limit that
// failed to answer shows up as a timeout, never as a hung test.
const clientDeadline = 5 * time.Second

// waitFor polls cond until it holds, failing the test after a bounded wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(clientDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// serve runs srv on a fresh loopback port until the test ends and returns
// its address.
func serve(t testing.TB, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// rawClient is one client connection that writes requests by hand, so that
// a test controls exactly which connection carries what, and when.
type rawClient struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, clientDeadline)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	return newRawClient(t, c)
}

func newRawClient(t *testing.T, c net.Conn) *rawClient {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(clientDeadline))
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{Conn: c, br: bufio.NewReader(c)}
}

// get sends a GET on the connection and reads the answer, body included.
func (c *rawClient) get(t *testing.T, accept string) (*http.Response, string) {
	t.Helper()
	req := "GET / HTTP/1.1\r\nHost: limits.test\r\n"
	if accept != "" {
		req += "Accept: " + accept + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatalf("write request: %v", err)
	}
	return c.readResponse(t)
}

func (c *rawClient) readResponse(t *testing.T) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	var body []byte
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		body = append(body, buf[:n]...)
		if err != nil {
			break
		}
	}
	return resp, string(body)
}

// closedByServer reports whether the server closed the connection without
// sending anything more; a client-side timeout fails the test, since it
// means the server left the connection hanging.
func (c *rawClient) closedByServer(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1)
	n, err := c.br.Read(buf)
	if n > 0 {
		t.Fatalf("server sent %q, want the connection closed", buf[:n])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s: %v", clientDeadline, err)
	}
	if err == nil {
		t.Fatal("read returned neither data nor an error")
	}
}
