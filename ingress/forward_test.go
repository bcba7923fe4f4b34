package ingress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// proxyTo serves a router in front of backend (host 127.0.0.1) over a
// real server, as ioproxy runs.
func proxyTo(t *testing.T, backend http.Handler) string {
	t.Helper()
	b := httptest.NewServer(backend)
	t.Cleanup(b.Close)
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "127.0.0.1" { backend = %q }`, b.URL)), nil)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestForwardHopByHop: headers of one connection, and those the
// Connection header names, reach neither side; the identity headers are
// set after that, so naming them in Connection drops nothing of ours.
// "Te: trailers" passes; no Go User-Agent is added.
func TestForwardHopByHop(t *testing.T) {
	var got http.Header
	url := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Connection", "X-Backend-Secret")
		w.Header().Set("X-Backend-Secret", "s")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-Kept", "k")
	}))
	req, _ := http.NewRequest(http.MethodGet, url+"/", nil)
	req.Header.Set("Connection", "X-Client-Secret, X-Forwarded-For, X-Real-Ip")
	req.Header.Set("X-Client-Secret", "c")
	req.Header.Set("Proxy-Authorization", "Basic eA==")
	req.Header.Set("Te", "trailers, deflate")
	req.Header.Set("X-Kept", "k")
	req.Header["User-Agent"] = nil // none sent
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, h := range []string{"X-Client-Secret", "Proxy-Authorization", "Connection"} {
		if v := got.Get(h); v != "" {
			t.Errorf("the backend saw %s: %q", h, v)
		}
	}
	if got.Get("X-Forwarded-For") == "" || got.Get("X-Real-Ip") == "" {
		t.Error("naming X-Forwarded-For and X-Real-Ip in Connection dropped ioproxy's own")
	}
	if got.Get("Te") != "trailers" || got.Get("X-Kept") != "k" {
		t.Errorf("Te %q, X-Kept %q; want trailers and k", got.Get("Te"), got.Get("X-Kept"))
	}
	if ua, ok := got["User-Agent"]; ok && ua[0] != "" {
		t.Errorf("the backend saw User-Agent %q, which the client did not send", ua)
	}
	for _, h := range []string{"X-Backend-Secret", "Keep-Alive", "Proxy-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("the client saw %s: %q", h, v)
		}
	}
	if resp.Header.Get("X-Kept") != "k" {
		t.Error("an ordinary answer header was dropped")
	}
}

// TestForwardQueryAndBody: the query reaches the backend cleaned as
// ReverseProxy cleans it (no ";" separators or bad escapes, read
// differently by other parsers); bodies pass whole, and an empty one as
// none.
func TestForwardQueryAndBody(t *testing.T) {
	type seenReq struct {
		query, body string
		length      int64
	}
	seenCh := make(chan seenReq, 1)
	url := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seenCh <- seenReq{r.URL.RawQuery, string(b), r.ContentLength}
	}))
	for _, tc := range []struct {
		query, body, wantQuery string
	}{
		{"a=1&b=2", "", "a=1&b=2"},
		{"a=1;b=2&c=3", "", "c=3"},
		{"x=%zz&y=1", "", "y=1"},
		{"", "a body", ""},
	} {
		method := http.MethodGet
		if tc.body != "" {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, url+"/p?"+tc.query, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := <-seenCh
		if got.query != tc.wantQuery || got.body != tc.body || got.length != int64(len(tc.body)) {
			t.Errorf("?%s with body %q: the backend saw ?%s, body %q (length %d)", tc.query, tc.body, got.query, got.body, got.length)
		}
	}
}

// TestForwardTrailers: the backend's trailers reach the client.
func TestForwardTrailers(t *testing.T) {
	url := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-Checksum", "abc")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	}))
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || resp.Trailer.Get("X-Checksum") != "abc" || resp.Trailer.Get("X-Late") != "late" {
		t.Errorf("body %q, trailers %v; want body, X-Checksum abc and X-Late late", b, resp.Trailer)
	}
}

// TestForward1xx: a 103 Early Hints reaches the client before the answer.
func TestForward1xx(t *testing.T) {
	url := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "page")
	}))
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(hints) != 1 || hints[0] != "103 </app.css>; rel=preload" || string(b) != "page" || resp.Header.Get("Link") != "" {
		t.Errorf("1xx seen %v, body %q, final Link %q", hints, b, resp.Header.Get("Link"))
	}
}

// TestForwardStreamsUnknownLength: an answer of unknown length is passed
// on as it comes, not when the backend is done.
func TestForwardStreamsUnknownLength(t *testing.T) {
	release := make(chan struct{})
	url := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, "second\n")
	}))
	defer close(release)
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(resp.Body).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if s != "first\n" {
			t.Errorf("first line %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the first part of a streaming answer did not arrive while the backend held the rest")
	}
}

// TestForwardBrokenAnswerAborted: a backend that dies half way through
// its body breaks the client's answer too (never a complete-looking short
// one); a 101 to a plain request is a 502.
func TestForwardBrokenAnswerAborted(t *testing.T) {
	url := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/switch" {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", "x")
			w.WriteHeader(http.StatusSwitchingProtocols)
			return
		}
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "only ten b")
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	}))
	// Either the answer breaks before its header is out, or its body
	// does; never a complete answer.
	if resp, err := http.Get(url + "/"); err == nil {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("a body cut by the backend read as complete: %q", b)
		}
	}
	resp, err := http.Get(url + "/switch")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("a 101 to a plain request: %d, want 502", resp.StatusCode)
	}
}

// TestForwardRequestTrailersDropped: a client's request trailers never
// reach the backend; they come after the identity headers were checked
// (found in review: "Trailer: User-Did" reached it).
func TestForwardRequestTrailersDropped(t *testing.T) {
	got := make(chan http.Header, 1)
	url := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		got <- r.Trailer
	}))
	req, _ := http.NewRequest(http.MethodPost, url+"/", io.NopCloser(strings.NewReader("abc")))
	req.ContentLength = -1
	req.Trailer = http.Header{"User-Did": {"did:plc:victim"}, "Proxy-Session": {"stolen"}, "User_handle": {"x"}, "Apikey-User": {"admin"}}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for k, v := range <-got {
		if len(v) > 0 {
			t.Errorf("the backend got the client's request trailer %s: %q", k, v)
		}
	}
}

// TestForwardOpaqueTargetRefused: a request target that is not a path
// ("http:x:/other", CONNECT) is refused, not sent past the backend's path
// prefix (found in review).
func TestForwardOpaqueTargetRefused(t *testing.T) {
	seen := make(chan string, 2)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.RequestURI }))
	t.Cleanup(b.Close)
	rt := newRouter(t, mustConfig(t, fmt.Sprintf(`host "127.0.0.1" { backend = "%s/tenant-a/" }`, b.URL)), nil)
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	for _, line := range []string{"GET http:x:/tenant-b/secret HTTP/1.1", "CONNECT 127.0.0.1:443 HTTP/1.1"} {
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.WriteString(c, line+"\r\nHost: 127.0.0.1\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", line, resp.StatusCode)
		}
	}
	select {
	case uri := <-seen:
		t.Errorf("the backend was asked for %q", uri)
	default:
	}
}

// TestForwardOwnCookiesNotSetByBackend: a backend cannot set ioproxy's
// session or sign-in cookies in a browser; its own cookies pass.
func TestForwardOwnCookiesNotSetByBackend(t *testing.T) {
	url := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range []string{CookieName + "=attacker", SecureCookieName + "=attacker; Path=/; Secure", " " + stateCookieName + "=x", "=" + CookieName + "=attacker", "app=1; Path=/"} {
			w.Header().Add("Set-Cookie", c)
		}
	}))
	resp, err := http.Get(url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("Set-Cookie"); len(got) != 1 || got[0] != "app=1; Path=/" {
		t.Errorf("Set-Cookie passed on: %q; want the app's own only", got)
	}
}

// TestForward1xxBounded: a backend that sends 1xx after 1xx gets a 502
// after ten, not an endless relay; a request that expects 100-continue
// gets no 1xx relayed (the server writes its own 100 meanwhile).
func TestForward1xxBounded(t *testing.T) {
	url := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 1
		if r.URL.Path == "/many" {
			n = 50
		}
		for range n {
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		_, _ = io.ReadAll(r.Body)
		_, _ = io.WriteString(w, "done")
	}))
	resp, err := http.Get(url + "/many")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("50 early hints: %d, want 502", resp.StatusCode)
	}
	hints := 0
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		if code != http.StatusContinue {
			hints++
		}
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, url+"/one", strings.NewReader("abc"))
	req.Header.Set("Expect", "100-continue")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "done" || hints != 0 {
		t.Errorf("with Expect: 100-continue: %q and %d early hints relayed; want done, none", b, hints)
	}
}

// TestUpgradeAnswerCannotSetOwnCookies: the websocket handshake's answer
// (served by ReverseProxy) cannot set ioproxy's cookies either.
func TestUpgradeAnswerCannotSetOwnCookies(t *testing.T) {
	url := proxyTo(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", CookieName+"=attacker")
		w.Header().Add("Set-Cookie", "app=1")
		w.WriteHeader(http.StatusForbidden) // a refused upgrade: an answer like any
	}))
	req, _ := http.NewRequest(http.MethodGet, url+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("Set-Cookie"); len(got) != 1 || got[0] != "app=1" {
		t.Errorf("Set-Cookie on an upgrade's answer: %q; want the app's own only", got)
	}
}
