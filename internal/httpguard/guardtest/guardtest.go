// Package guardtest has test peers for the proxy guards: a backend that
// accepts any upgrade, as lenient servers do.
package guardtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// LenientUpgradeBackend answers 101 to any request that asks for any
// upgrade, as Hypercorn does for h2c without checking Connection, and
// records every byte it receives, tunnel included.
type LenientUpgradeBackend struct {
	ln net.Listener
	mu sync.Mutex
	rx bytes.Buffer
}

// NewLenientUpgradeBackend starts one on a loopback port until the test ends.
func NewLenientUpgradeBackend(t testing.TB) *LenientUpgradeBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &LenientUpgradeBackend{ln: ln}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

// Addr is the backend's host:port.
func (b *LenientUpgradeBackend) Addr() string { return b.ln.Addr().String() }

func (b *LenientUpgradeBackend) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(io.TeeReader(c, (*recorder)(b)))
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	if up := req.Header.Get("Upgrade"); up != "" {
		fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", up)
	} else {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
	// Whatever comes next is the tunnel: keep recording it.
	_, _ = io.Copy(io.Discard, br)
}

type recorder LenientUpgradeBackend

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rx.Write(p)
}

// Received is every byte the backend has read so far.
func (b *LenientUpgradeBackend) Received() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rx.String()
}

// SmuggledStreams is what an attacker sends after an h2c upgrade request:
// the HTTP/2 preface and a request with forged identity headers.
const SmuggledStreams = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
	"GET /admin HTTP/1.1\r\nHost: closed.example.com\r\nUser-Did: did:plc:evil\r\nProxy-Session: forged\r\n\r\n"

// SmuggleAttempts are upgrade requests' headers that must all be refused.
var SmuggleAttempts = []struct{ Name, Headers string }{
	{"h2c", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"},
	{"H2C upper case", "Connection: upgrade\r\nUpgrade: H2C\r\n"},
	{"h2c without Connection", "Upgrade: h2c\r\n"},
	{"websocket and h2c in one header", "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n"},
	{"two Upgrade headers", "Connection: Upgrade\r\nUpgrade: websocket\r\nUpgrade: h2c\r\n"},
	{"another protocol", "Connection: Upgrade\r\nUpgrade: TLS/1.2\r\n"},
}

// Send writes a GET with the given extra header lines, then the smuggled
// streams, to addr and returns the first answer with its body.
func Send(t testing.TB, addr, host, path, headers string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\n" + headers + "\r\n"
	if _, err := io.WriteString(conn, req+SmuggledStreams); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp, string(body)
}
