package limits

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// connsServer is an httptest server wired as the package doc says.
type connsServer struct {
	*httptest.Server
	conns *Conns
}

type serverMode int

const (
	modeHTTP serverMode = iota
	modeHTTPS
	modeHTTP2 // over TLS
)

func (m serverMode) String() string { return [...]string{"http", "https", "h2"}[m] }

func startConns(t *testing.T, cfg ConnsConfig, mode serverMode, h http.Handler, configure func(*http.Server)) *connsServer {
	t.Helper()
	conns, err := NewConns(cfg)
	if err != nil {
		t.Fatalf("NewConns: %v", err)
	}
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	}
	ts := httptest.NewUnstartedServer(conns.Handler(h))
	ts.Listener = conns.Listener(ts.Listener)
	ts.Config.ConnContext = conns.ConnContext
	// Connections held by the tests never finish a TLS handshake.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	if configure != nil {
		configure(ts.Config)
	}
	ts.EnableHTTP2 = mode == modeHTTP2
	if mode == modeHTTP {
		ts.Start()
	} else {
		ts.StartTLS()
	}
	t.Cleanup(ts.Close)
	return &connsServer{Server: ts, conns: conns}
}

// dial opens one HTTP/1.1 client connection, over TLS if the server has it.
func (s *connsServer) dial(t *testing.T) *rawClient {
	t.Helper()
	addr := s.Listener.Addr().String()
	if s.TLS == nil {
		return dialRaw(t, addr)
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.Certificate())
	d := &tls.Dialer{
		NetDialer: &net.Dialer{Timeout: clientDeadline},
		Config:    &tls.Config{RootCAs: pool, NextProtos: []string{"http/1.1"}},
	}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatalf("TLS dial %s: %v", addr, err)
	}
	return newRawClient(t, c)
}

func wantOK(t *testing.T, c *rawClient) {
	t.Helper()
	if resp, body := c.get(t, ""); resp.StatusCode != http.StatusOK || body != "ok" {
		t.Fatalf("got %d %q, want 200 ok", resp.StatusCode, body)
	}
}

func wantOverloaded(t *testing.T, resp *http.Response) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", resp.StatusCode)
	}
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if resp.ProtoMajor == 1 && !resp.Close {
		t.Errorf("no Connection: close (header %q)", resp.Header.Get("Connection"))
	}
}

// TestConnsOverLimit: with Max 2 and two keep-alive connections held, a
// third connection is answered 503 and closed, in text or JSON as asked; a
// connection opened after one of the two closed is served again; the
// counts go back to 0. Over plain TCP and over TLS, where ConnContext sees
// a *tls.Conn.
func TestConnsOverLimit(t *testing.T) {
	for _, mode := range []serverMode{modeHTTP, modeHTTPS} {
		t.Run(mode.String(), func(t *testing.T) {
			s := startConns(t, ConnsConfig{Max: 2}, mode, nil, nil)
			a, b := s.dial(t), s.dial(t)
			wantOK(t, a)
			wantOK(t, b)

			text := s.dial(t)
			resp, body := text.get(t, "text/html")
			wantOverloaded(t, resp)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !strings.Contains(body, "503") {
				t.Errorf("text answer %q %q", ct, body)
			}
			text.closedByServer(t)

			js := s.dial(t)
			resp, body = js.get(t, "application/json")
			wantOverloaded(t, resp)
			var e struct{ Error, Message string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != "Overloaded" || e.Message == "" {
				t.Errorf("JSON answer %q: %v", body, err)
			}
			js.closedByServer(t)

			_ = a.Close()
			waitFor(t, "one connection open", func() bool { return s.conns.Open() == 1 })
			c := s.dial(t)
			wantOK(t, c)
			wantOK(t, b) // still on its first connection

			_ = b.Close()
			_ = c.Close()
			waitFor(t, "no connection open", func() bool { return s.conns.Open() == 0 })
			if got := s.conns.Refused(); got != 2 {
				t.Errorf("Refused() = %d, want 2", got)
			}
		})
	}
}

// TestConnsBeyondOverflow: once Max and the overflow are held, the next
// connection is closed at once without a byte, over TLS before any
// handshake; the default overflow for Max 2 is 16.
func TestConnsBeyondOverflow(t *testing.T) {
	for _, tc := range []struct {
		name     string
		overflow int
		held     int // over-limit connections to hold
		mode     serverMode
	}{
		{"overflow 1", 1, 1, modeHTTP},
		{"default overflow", 0, minOverflow, modeHTTP},
		{"overflow 1 TLS", 1, 1, modeHTTPS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startConns(t, ConnsConfig{Max: 2, Overflow: tc.overflow}, tc.mode, nil, nil)
			addr := s.Listener.Addr().String()
			a, b := s.dial(t), s.dial(t)
			wantOK(t, a)
			wantOK(t, b)
			for range tc.held {
				dialRaw(t, addr) // says nothing: it holds an over-limit slot
			}
			waitFor(t, "the overflow full", func() bool { return s.conns.Open() == 2+tc.held })

			dialRaw(t, addr).closedByServer(t)
			if got, want := s.conns.Refused(), uint64(tc.held+1); got != want {
				t.Errorf("Refused() = %d, want %d", got, want)
			}
			if got := s.conns.Open(); got != 2+tc.held {
				t.Errorf("Open() = %d, want %d", got, 2+tc.held)
			}
			wantOK(t, a) // the served connections never noticed
		})
	}
}

// TestConnsOverLimitLifetime: an over-limit connection that sends nothing
// is closed at its absolute deadline, although the server's
// ReadHeaderTimeout and IdleTimeout are far longer and it resets the
// connection's deadlines; served connections keep living.
func TestConnsOverLimitLifetime(t *testing.T) {
	const lifetime = 200 * time.Millisecond
	s := startConns(t, ConnsConfig{Max: 1, OverLimitLifetime: lifetime}, modeHTTP, nil, func(srv *http.Server) {
		srv.ReadHeaderTimeout = time.Minute
		srv.IdleTimeout = time.Minute
	})
	a := s.dial(t)
	wantOK(t, a)
	idle := s.dial(t)
	start := time.Now()
	idle.closedByServer(t)
	if d := time.Since(start); d < lifetime/2 {
		t.Errorf("closed after %s, before its lifetime %s", d, lifetime)
	}

	// One that starts a request but never finishes its headers.
	slow := s.dial(t)
	if _, err := io.WriteString(slow, "GET / HTTP/1.1\r\nHost: limits.test\r\n"); err != nil {
		t.Fatal(err)
	}
	slow.closedByServer(t)

	wantOK(t, a)
	waitFor(t, "only the served connection", func() bool { return s.conns.Open() == 1 })
}

// TestConnsHTTP2: an over-limit HTTP/2 connection gets 503 on its stream
// and is then closed (net/http turns Connection: close into a GOAWAY).
func TestConnsHTTP2(t *testing.T) {
	s := startConns(t, ConnsConfig{Max: 2}, modeHTTP2, nil, nil)

	// Each Transport holds its own connection.
	newClient := func() *http.Client {
		tr := s.Client().Transport.(*http.Transport).Clone()
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: clientDeadline}
	}
	get := func(c *http.Client) *http.Response {
		t.Helper()
		resp, err := c.Get(s.URL)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
		}
		return resp
	}
	a, b := newClient(), newClient()
	for _, c := range []*http.Client{a, b} {
		if resp := get(c); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d, want 200", resp.StatusCode)
		}
	}
	over := newClient()
	wantOverloaded(t, get(over))
	waitFor(t, "the over-limit connection closed", func() bool { return s.conns.Open() == 2 })
	if resp := get(a); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d after the refusal, want 200", resp.StatusCode)
	}
}

// TestConnsParallel: 200 clients at once against Max 50, whose handlers
// hold their connections: exactly 50 are served, every other one is
// answered 503 or closed (none hangs), the counters agree, and everything
// is given back. Run under -race.
func TestConnsParallel(t *testing.T) {
	const clients, limit = 200, 50
	release := make(chan struct{})
	var entered atomic.Int32
	s := startConns(t, ConnsConfig{Max: limit}, modeHTTP, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Add(1)
		<-release
		_, _ = io.WriteString(w, "ok")
	}), nil)
	addr := s.Listener.Addr().String()

	var served, overloaded, closed, others atomic.Int32
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, clientDeadline)
			if err != nil {
				t.Errorf("dial: %v", err)
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * clientDeadline))
			_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: limits.test\r\nConnection: close\r\n\r\n")
			var resp *http.Response
			if err == nil {
				resp, err = http.ReadResponse(bufio.NewReader(c), nil)
			}
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				t.Errorf("client hung: %v", err)
			case err != nil:
				closed.Add(1)
				others.Add(1)
			case resp.StatusCode == http.StatusOK:
				served.Add(1)
			case resp.StatusCode == http.StatusServiceUnavailable:
				overloaded.Add(1)
				others.Add(1)
			default:
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	waitFor(t, "every client answered or served", func() bool {
		return entered.Load() == limit && others.Load() == clients-limit
	})
	close(release)
	wg.Wait()

	if served.Load() != limit {
		t.Errorf("served %d, want %d", served.Load(), limit)
	}
	if overloaded.Load() < minOverflow {
		t.Errorf("%d answered 503, want at least the overflow, %d", overloaded.Load(), minOverflow)
	}
	if got, want := s.conns.Refused(), uint64(overloaded.Load()+closed.Load()); got != want {
		t.Errorf("Refused() = %d, want 503s + closed = %d", got, want)
	}
	waitFor(t, "no connection open", func() bool { return s.conns.Open() == 0 })
}

// TestConnsCloseTwice: a connection gives back its slot once, however often
// it is closed.
func TestConnsCloseTwice(t *testing.T) {
	for _, tc := range []struct {
		name string
		open int // connections opened; the last one is closed thrice
	}{
		{"served", 1},
		{"over the limit", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewConns(ConnsConfig{Max: 1})
			if err != nil {
				t.Fatal(err)
			}
			var last net.Conn
			for range tc.open {
				client, server := net.Pipe()
				t.Cleanup(func() { _ = client.Close() })
				last = c.admit(server)
			}
			for range 3 {
				_ = last.Close()
			}
			if got := c.Open(); got != tc.open-1 {
				t.Errorf("Open() = %d, want %d", got, tc.open-1)
			}
		})
	}
}

// TestConnContext: only this Conns's over-limit connections are marked,
// also when wrapped (as *tls.Conn wraps them).
func TestConnContext(t *testing.T) {
	mine, err := NewConns(ConnsConfig{Max: 1})
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewConns(ConnsConfig{Max: 1})
	if err != nil {
		t.Fatal(err)
	}
	admit := func(c *Conns) net.Conn {
		client, server := net.Pipe()
		t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
		return c.admit(server)
	}
	served, over := admit(mine), admit(mine)
	_, otherOver := admit(other), admit(other)
	plain, _ := net.Pipe()
	for _, tc := range []struct {
		name string
		conn net.Conn
		want bool
	}{
		{"served", served, false},
		{"over the limit", over, true},
		{"over the limit, wrapped", wrapped{wrapped{over}}, true},
		{"another Conns's", otherOver, false},
		{"not counted", plain, false},
		{"wrapping nil", wrapped{nil}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := mine.ConnContext(context.Background(), tc.conn)
			if got := ctx.Value(overLimitKey{mine}) != nil; got != tc.want {
				t.Errorf("marked %v, want %v", got, tc.want)
			}
		})
	}
}

// wrapped stands for *tls.Conn: a conn around another, reached by NetConn.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

func TestNewConns(t *testing.T) {
	for _, tc := range []struct {
		name         string
		cfg          ConnsConfig
		wantErr      string
		wantOverflow int64
		wantLifetime time.Duration
	}{
		{name: "no max", cfg: ConnsConfig{}, wantErr: "Max must be at least 1"},
		{name: "negative max", cfg: ConnsConfig{Max: -3}, wantErr: "Max must be at least 1"},
		{name: "negative overflow", cfg: ConnsConfig{Max: 2, Overflow: -1}, wantErr: "Overflow must not be negative"},
		{name: "negative lifetime", cfg: ConnsConfig{Max: 2, OverLimitLifetime: -time.Second}, wantErr: "OverLimitLifetime must not be negative"},
		{name: "negative per client", cfg: ConnsConfig{Max: 2, PerClient: -1}, wantErr: "PerClient must not be negative"},
		{name: "small max", cfg: ConnsConfig{Max: 2}, wantOverflow: 16, wantLifetime: 10 * time.Second},
		{name: "large max", cfg: ConnsConfig{Max: 1000}, wantOverflow: 125, wantLifetime: 10 * time.Second},
		{name: "explicit", cfg: ConnsConfig{Max: 1000, Overflow: 3, OverLimitLifetime: time.Second}, wantOverflow: 3, wantLifetime: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewConns(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.overflow != tc.wantOverflow || c.lifetime != tc.wantLifetime {
				t.Errorf("overflow %d lifetime %s, want %d %s", c.overflow, c.lifetime, tc.wantOverflow, tc.wantLifetime)
			}
		})
	}
}

func TestWantsJSON(t *testing.T) {
	for _, tc := range []struct {
		accept []string
		want   bool
	}{
		{nil, false},
		{[]string{"*/*"}, false},
		{[]string{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}, false},
		{[]string{"application/json"}, true},
		{[]string{"Application/JSON; charset=utf-8"}, true},
		{[]string{"text/html, application/problem+json;q=0.5"}, true},
		{[]string{"text/html", "application/json"}, true},
		{[]string{"application/json;q=0"}, false},
		{[]string{"application/json;q=0.000"}, false},
		{[]string{"application/json;q=0.1"}, true},
		{[]string{"application/jsonl"}, false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		for _, v := range tc.accept {
			r.Header.Add("Accept", v)
		}
		if got := wantsJSON(r); got != tc.want {
			t.Errorf("Accept %q: wantsJSON %v, want %v", tc.accept, got, tc.want)
		}
	}
}

// dialFrom opens one HTTP/1.1 client connection from a given loopback
// address: Linux routes all of 127/8 to lo, so each is another client.
func dialFrom(t *testing.T, addr, from string) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: clientDeadline, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	return newRawClient(t, c)
}

// clientCounts is a copy of the per-client counts.
func (c *Conns) clientCounts() map[netip.Addr]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.clients)
}

// TestConnsPerClient: with PerClient 2 and Max far above it, a client
// holding two connections gets 503 (with Connection: close, counted in
// Refused) on a third, while another client is served; an exempt client
// is not limited; the counts go back to zero, with no client left in the
// map, once every connection is closed.
func TestConnsPerClient(t *testing.T) {
	for _, tc := range []struct {
		name      string
		exempt    func(netip.Addr) bool
		wantThird int
	}{
		{"limited", nil, http.StatusServiceUnavailable},
		{"another client exempt", func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.3") }, http.StatusServiceUnavailable},
		{"exempt", func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") }, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startConns(t, ConnsConfig{Max: 100, PerClient: 2, Exempt: tc.exempt}, modeHTTP, nil, nil)
			addr := s.Listener.Addr().String()
			a, b := dialFrom(t, addr, "127.0.0.1"), dialFrom(t, addr, "127.0.0.1")
			wantOK(t, a)
			wantOK(t, b)

			third := dialFrom(t, addr, "127.0.0.1")
			resp, _ := third.get(t, "")
			if resp.StatusCode != tc.wantThird {
				t.Fatalf("third connection: status %d, want %d", resp.StatusCode, tc.wantThird)
			}
			if tc.wantThird == http.StatusServiceUnavailable {
				wantOverloaded(t, resp)
				third.closedByServer(t)
				if got := s.conns.Refused(); got != 1 {
					t.Errorf("Refused() = %d, want 1", got)
				}
			}
			other := dialFrom(t, addr, "127.0.0.2")
			wantOK(t, other)
			wantOK(t, a) // the served connections never noticed

			for _, c := range []*rawClient{a, b, third, other} {
				_ = c.Close()
			}
			waitFor(t, "no connection open", func() bool { return s.conns.Open() == 0 })
			waitFor(t, "no client counted", func() bool { return len(s.conns.clientCounts()) == 0 })
		})
	}
}

// TestConnsPerClientParallel: clients from two addresses connect at once,
// 40 each, against PerClient 10 while their handlers hold the connections:
// exactly 10 of each are served and the others answered 503 or closed
// (none hangs); every count is given back. Run under -race.
func TestConnsPerClientParallel(t *testing.T) {
	const perAddr, limit = 40, 10
	release := make(chan struct{})
	s := startConns(t, ConnsConfig{Max: 1000, PerClient: limit}, modeHTTP, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		_, _ = io.WriteString(w, "ok")
	}), nil)
	addr := s.Listener.Addr().String()
	froms := []string{"127.0.0.1", "127.0.0.2"}
	served := make([]atomic.Int32, len(froms))
	var refused atomic.Int32
	var wg sync.WaitGroup
	for i, from := range froms {
		for range perAddr {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{Timeout: clientDeadline, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * clientDeadline))
				_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: limits.test\r\nConnection: close\r\n\r\n")
				var resp *http.Response
				if err == nil {
					resp, err = http.ReadResponse(bufio.NewReader(c), nil)
				}
				var ne net.Error
				switch {
				case errors.As(err, &ne) && ne.Timeout():
					t.Errorf("client hung: %v", err)
				case err != nil, resp.StatusCode == http.StatusServiceUnavailable:
					refused.Add(1)
				case resp.StatusCode == http.StatusOK:
					served[i].Add(1)
				default:
					t.Errorf("status %d", resp.StatusCode)
				}
			}()
		}
	}
	waitFor(t, "every client over its share answered", func() bool { return refused.Load() == int32(len(froms)*(perAddr-limit)) })
	if got := s.conns.clientCounts(); len(got) != 2 || got[netip.MustParseAddr("127.0.0.1")] != limit || got[netip.MustParseAddr("127.0.0.2")] != limit {
		t.Errorf("per-client counts %v, want %d each", got, limit)
	}
	close(release)
	wg.Wait()
	for i := range froms {
		if got := served[i].Load(); got != limit {
			t.Errorf("served %d from %s, want %d", got, froms[i], limit)
		}
	}
	waitFor(t, "no connection open", func() bool { return s.conns.Open() == 0 })
	if got := s.conns.clientCounts(); len(got) != 0 {
		t.Errorf("clients left in the map: %v", got)
	}
}

// TestClientKey: the client a remote address counts for.
func TestClientKey(t *testing.T) {
	for _, tc := range []struct {
		remote net.Addr
		want   string // "" for no client (no limit)
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:ff::1"), Port: 1}, "2001:db8:1::"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2a:ffff::9"), Port: 1}, "2001:db8:1::"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8:1:100::1"), Port: 1}, "2001:db8:1:100::"},
		{&net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "fe80::"},
		{&net.TCPAddr{}, ""},
		{&net.UnixAddr{Name: "/run/ioproxy.sock", Net: "unix"}, ""},
		{nil, ""},
	} {
		ip, ok := remoteIP(tc.remote)
		got := ""
		if ok {
			got = clientKey(ip).String()
		}
		if got != tc.want {
			t.Errorf("%v: client %q, want %q", tc.remote, got, tc.want)
		}
	}
}

// remoteConn is a conn from a given remote address.
type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteConn) RemoteAddr() net.Addr { return c.remote }

// TestConnsPerClientCloseTwice: a connection gives back its client's slot
// once, however often it is closed; an exempt client's connections and
// over-limit connections take none.
func TestConnsPerClientCloseTwice(t *testing.T) {
	c, err := NewConns(ConnsConfig{Max: 10, PerClient: 2, Exempt: func(a netip.Addr) bool { return a == netip.MustParseAddr("192.0.2.9") }})
	if err != nil {
		t.Fatal(err)
	}
	var all []net.Conn
	admit := func(ip string, wantServed bool) net.Conn {
		t.Helper()
		client, server := net.Pipe()
		t.Cleanup(func() { _ = client.Close() })
		nc := c.admit(remoteConn{server, &net.TCPAddr{IP: net.ParseIP(ip), Port: 1}})
		if _, served := nc.(*conn); served != wantServed {
			t.Fatalf("connection %d from %s: %T, want served %v", len(all), ip, nc, wantServed)
		}
		all = append(all, nc)
		return nc
	}
	closeThrice := func(conns ...net.Conn) {
		for range 3 {
			for _, nc := range conns {
				_ = nc.Close()
			}
		}
	}
	a, _ := admit("192.0.2.1", true), admit("192.0.2.1", true)
	over := admit("192.0.2.1", false)
	exempt1, exempt2, exempt3 := admit("192.0.2.9", true), admit("192.0.2.9", true), admit("192.0.2.9", true)
	closeThrice(a, over, exempt1, exempt2, exempt3)
	if got := c.clientCounts(); len(got) != 1 || got[netip.MustParseAddr("192.0.2.1")] != 1 {
		t.Errorf("counts %v, want 192.0.2.1: 1", got)
	}
	admit("192.0.2.1", true)  // a's slot, given back once
	admit("192.0.2.1", false) // not more
	closeThrice(all...)
	if got := c.clientCounts(); len(got) != 0 || c.Open() != 0 {
		t.Errorf("counts %v, %d open, want none", got, c.Open())
	}
}
