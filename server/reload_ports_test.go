package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/config"
)

// The first host with a certificate comes with a reload: the HTTPS
// listener is bound then, the host is served on it with a certificate of
// the local CA, plain HTTP sends it there, and its client keys are
// published. A reload that fails after binding it leaves no listener and
// no client keys behind.
func TestReloadAddsFirstTLSHost(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proto=%s", r.Header.Get("X-Forwarded-Proto"))
	}))
	defer backend.Close()
	taken := httptest.NewServer(http.NotFoundHandler())
	defer taken.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	httpPort, httpsPort := ps[0], ps[1]
	src := func(extra string) string {
		return fmt.Sprintf(`
data_dir = %q
ingress {
  http  = "127.0.0.1:%d"
  https = "127.0.0.1:%d"
}
admin { listen = "" }
host "app.localhost" {
  backend = %q
  tls { mode = "off" }
}
%s`, dataDir, httpPort, httpsPort, backend.URL, extra)
	}
	secure := fmt.Sprintf("host \"secure.example.com\" {\n  backend = %q\n  atproto {}\n  tls { mode = \"self_signed\" }\n}\n", backend.URL)
	rl := startReloadable(t, src(""))
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", httpsPort)
	noHTTPS := func(when string) {
		t.Helper()
		if addr, ok := rl.srv.Addrs()["https"]; ok {
			t.Fatalf("%s: an HTTPS listener at %s", when, addr)
		}
		if c, err := net.DialTimeout("tcp", httpsAddr, time.Second); err == nil {
			c.Close()
			t.Fatalf("%s: something listens on the HTTPS port", when)
		}
		if rl.srv.clientKeys != nil {
			t.Fatalf("%s: client keys in use", when)
		}
	}
	noHTTPS("at start")

	call := fmt.Sprintf("call \"c\" {\n  port     = %s\n  endpoint = \"app.localhost\"\n}\n", strings.TrimPrefix(taken.URL, "http://127.0.0.1:"))
	rl.write(src(secure + call))
	if _, err := rl.srv.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "call:c listener") {
		t.Fatalf("a reload with a taken port: %v", err)
	}
	noHTTPS("after a failed reload")

	rep := rl.reload(src(secure))
	if rep.Hosts != 2 || len(rep.Restart) != 0 {
		t.Fatalf("report %+v", rep)
	}
	if got := rl.srv.Addrs()["https"]; got != httpsAddr {
		t.Fatalf("HTTPS listener at %q, want %s", got, httpsAddr)
	}
	if rl.srv.clientKeys == nil {
		t.Fatal("no client keys after the reload that brought the first atproto host with a certificate")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rl.srv.LocalCAPEM()) {
		t.Fatal("no local CA")
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "secure.example.com"}}}
	httpsGet := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "https://"+httpsAddr+path, nil)
		req.Host = "secure.example.com"
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("HTTPS %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := httpsGet("/"); code != 200 || body != "proto=https" {
		t.Fatalf("the new TLS host: %d %q", code, body)
	}
	if code, body := httpsGet("/@/jwks.json"); code != 200 || !strings.Contains(body, `"kid"`) {
		t.Fatalf("the new TLS host's keys: %d %q", code, body)
	}
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/a?b=c", httpPort), nil)
	req.Host = "secure.example.com"
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := fmt.Sprintf("https://secure.example.com:%d/a?b=c", httpsPort); resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("the TLS host over HTTP: %d %q, want 308 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	if code, body := get(t, rl.srv.Addrs()["http"], "app.localhost", "/", ""); code != 200 || body != "proto=http" {
		t.Fatalf("the plain host after the reload: %d %q", code, body)
	}
}

// A request on a connection kept alive to a port that a reload removed
// is answered 503, or finds the connection closed: it does not hang, and
// it does not reach the removed block's endpoint.
func TestReloadRemovedPortKeptAliveConnection(t *testing.T) {
	var reached atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		fmt.Fprint(w, "ok")
	}))
	defer backend.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	src := func(call bool) string {
		s := fmt.Sprintf("data_dir = %q\ningress { http = \"127.0.0.1:%d\" }\nadmin { listen = \"\" }\nhost \"app.localhost\" { backend = %q }\n", dataDir, ps[0], backend.URL)
		if call {
			s += fmt.Sprintf("call \"c\" {\n  port     = %d\n  endpoint = %q\n}\n", ps[1], backend.URL)
		}
		return s
	}
	rl := startReloadable(t, src(true))
	conn, err := net.Dial("tcp", rl.srv.Addrs()["call:c"])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	ask := func() (*http.Response, error) {
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
			return nil, err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return nil, err
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, err
	}
	if resp, err := ask(); err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("before the reload: %v %v", resp, err)
	}
	rl.reload(src(false))
	resp, err := ask()
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("a request on a kept-alive connection to a removed port hung: %v", err)
	case err == nil && (resp.StatusCode != http.StatusServiceUnavailable || !resp.Close):
		t.Fatalf("a request on a kept-alive connection to a removed port: %d (close %v), want 503 and the connection closed", resp.StatusCode, resp.Close)
	case err == nil:
		t.Logf("answered %s", resp.Status)
	default:
		t.Logf("connection closed: %v", err)
	}
	if n := reached.Load(); n != 1 {
		t.Fatalf("the endpoint saw %d requests, want the one before the reload", n)
	}
}

// Reloads that leave a call to a URL as it was keep its handler, and
// with it its connections to the endpoint: twelve reloads, a call after
// each, open one connection there, not one a reload (each left idle
// until its timeout).
func TestReloadKeepsCallConnections(t *testing.T) {
	var accepted atomic.Int64
	endpoint := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "api") }))
	endpoint.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			accepted.Add(1)
		}
	}
	endpoint.Start()
	defer endpoint.Close()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "app") }))
	defer backend.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	src := func(turn int) string {
		// Each turn changes the configuration, never the call block.
		return fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "" }
host "app%d.localhost" { backend = %q }
call "api" {
  port     = %d
  endpoint = %q
}
`, dataDir, ps[0], turn, backend.URL, ps[1], endpoint.URL)
	}
	rl := startReloadable(t, src(0))
	const reloads = 12
	for turn := 1; turn <= reloads; turn++ {
		rl.reload(src(turn))
		if code, body := get(t, rl.srv.Addrs()["call:api"], "127.0.0.1", "/", ""); code != 200 || body != "api" {
			t.Fatalf("turn %d: the call answered %d %q", turn, code, body)
		}
	}
	if n := accepted.Load(); n > 2 {
		t.Fatalf("%d reloads opened %d connections to the call's endpoint, want 1 (2 at most)", reloads, n)
	}
	// A changed block gets a new handler, and the old one's idle
	// connections are closed (closeIdle).
	if !rl.srv.calls["api"].kept {
		t.Fatal("an unchanged call block got a new handler")
	}
	rl.reload(strings.Replace(src(0), "endpoint = ", "timeout  = \"20s\"\n  endpoint = ", 1))
	if rl.srv.calls["api"].kept {
		t.Fatal("a changed call block kept its handler")
	}
	if code, body := get(t, rl.srv.Addrs()["call:api"], "127.0.0.1", "/", ""); code != 200 || body != "api" {
		t.Fatalf("the changed call answered %d %q", code, body)
	}
}

// idleCloser is a handler that counts CloseIdleConnections.
type idleCloser struct {
	http.Handler
	closed int
}

func (c *idleCloser) CloseIdleConnections() { c.closed++ }

// The idle connections of every handler that a commit replaces or drops
// are closed; those of a kept one are not.
func TestReplaceCallsClosesIdle(t *testing.T) {
	kept, replaced, dropped, fresh := &idleCloser{}, &idleCloser{}, &idleCloser{}, &idleCloser{}
	s := &Server{calls: map[string]callHandler{"kept": {handler: kept}, "replaced": {handler: replaced}, "dropped": {handler: dropped}}}
	s.replaceCalls(map[string]callHandler{"kept": {handler: kept, kept: true}, "replaced": {handler: fresh}})
	if kept.closed != 0 || fresh.closed != 0 || replaced.closed != 1 || dropped.closed != 1 {
		t.Fatalf("closed: kept %d, fresh %d, replaced %d, dropped %d", kept.closed, fresh.closed, replaced.closed, dropped.closed)
	}
	if len(s.calls) != 2 || s.calls["replaced"].handler != fresh {
		t.Fatalf("calls after the commit: %v", s.calls)
	}
}

// A block that a commit changes or drops is retired (its WebSockets
// close); one that stays the same is not, though its handler is rebuilt
// (as a call to a host's always is), nor later, when a commit drops it,
// is any handler made for it left unretired.
func TestReplaceCallsRetiresChangedBlocks(t *testing.T) {
	block := func(endpoint string) config.Call {
		return config.Call{Label: "x", Endpoint: config.Endpoint{Raw: endpoint}}
	}
	same, changed, dropped := newRetirement(), newRetirement(), newRetirement()
	s := &Server{calls: map[string]callHandler{
		"same":    {call: block("app.localhost"), handler: &idleCloser{}, retired: same},
		"changed": {call: block("a.localhost"), handler: &idleCloser{}, retired: changed},
		"dropped": {call: block("b.localhost"), handler: &idleCloser{}, retired: dropped},
	}}
	// portSpecs hands an unchanged block's retirement to its new handler.
	s.replaceCalls(map[string]callHandler{
		"same":    {call: block("app.localhost"), handler: &idleCloser{}, retired: same},
		"changed": {call: block("c.localhost"), handler: &idleCloser{}, retired: newRetirement()},
	})
	closed := func(r *retirement) bool {
		select {
		case <-r.ch:
			return true
		default:
			return false
		}
	}
	if closed(same) || !closed(changed) || !closed(dropped) {
		t.Fatalf("retired: same %v, changed %v, dropped %v", closed(same), closed(changed), closed(dropped))
	}
	s.replaceCalls(map[string]callHandler{})
	if !closed(same) {
		t.Fatal("the block's retirement stayed open when a later commit dropped it")
	}
}

// Blocks that differ only in what needs a restart, a name for people or
// an operation's description do the same: their WebSockets stay open.
func TestSameBlock(t *testing.T) {
	a := config.Call{Label: "ws", ShortName: "WS", MaxConnections: 100, Endpoint: config.Endpoint{Kind: config.EndpointHost, Host: "app.localhost"},
		Operations: []config.Operation{{Name: "list", Description: "lists"}}}
	b := a
	b.ShortName, b.MaxConnections = "Sockets", 200
	b.Operations = []config.Operation{{Name: "list", Description: "lists the things"}}
	if !sameBlock(a, b) {
		t.Error("a change of name, max_connections or description counts as a changed block")
	}
	c := a
	c.Operations = []config.Operation{{Name: "delete"}}
	if sameBlock(a, c) {
		t.Error("a change of operations counts as the same block")
	}
	if a.Operations[0].Description != "lists" {
		t.Error("sameBlock changed its argument")
	}
}
