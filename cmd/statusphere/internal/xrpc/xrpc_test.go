package xrpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/xrpc"
)

// recorded is one request as a fake XRPC host saw it.
type recorded struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   string
}

// fakeHost records requests and answers each with status and body.
type fakeHost struct {
	mu       sync.Mutex
	requests []recorded
	status   int
	body     string
}

func (f *fakeHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, recorded{r.Method, r.URL.Path, r.URL.Query(), r.Header.Clone(), string(b)})
	status, body := f.status, f.body
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (f *fakeHost) last(t *testing.T) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		t.Fatal("the host received no request")
	}
	return f.requests[len(f.requests)-1]
}

func newHost(t *testing.T, status int, body string) (*fakeHost, *xrpc.HTTPClient) {
	t.Helper()
	f := &fakeHost{status: status, body: body}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := xrpc.NewHTTPClient(xrpc.HTTPConfig{Host: srv.URL, UserAgent: "xrpc-test"})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func TestQuery(t *testing.T) {
	host, c := newHost(t, 200, `{"handle":"alice.test","n":3}`)
	var out struct {
		Handle string `json:"handle"`
		N      int    `json:"n"`
	}
	params := url.Values{"repo": {"did:plc:alice"}, "limit": {"3"}}
	if err := c.Do(context.Background(), xrpc.Query, "com.atproto.repo.describeRepo", params, nil, &out); err != nil {
		t.Fatal(err)
	}
	if out.Handle != "alice.test" || out.N != 3 {
		t.Errorf("output = %+v", out)
	}
	req := host.last(t)
	if req.Method != "GET" || req.Path != "/xrpc/com.atproto.repo.describeRepo" {
		t.Errorf("request = %s %s", req.Method, req.Path)
	}
	if req.Query.Get("repo") != "did:plc:alice" || req.Query.Get("limit") != "3" {
		t.Errorf("query = %v", req.Query)
	}
	if req.Header.Get("Accept") != "application/json" || req.Header.Get("User-Agent") != "xrpc-test" {
		t.Errorf("headers = %v", req.Header)
	}
	if req.Body != "" || req.Header.Get("Content-Type") != "" {
		t.Errorf("a query sent a body %q (%s)", req.Body, req.Header.Get("Content-Type"))
	}
}

func TestProcedure(t *testing.T) {
	host, c := newHost(t, 200, `{"uri":"at://did:plc:alice/xyz.statusphere.status/3k","cid":"bafy"}`)
	in := map[string]any{"repo": "did:plc:alice", "record": map[string]string{"status": "👍"}}
	var out struct{ URI, CID string }
	if err := c.Do(context.Background(), xrpc.Procedure, "com.atproto.repo.createRecord", nil, in, &out); err != nil {
		t.Fatal(err)
	}
	if out.URI != "at://did:plc:alice/xyz.statusphere.status/3k" {
		t.Errorf("uri = %q", out.URI)
	}
	req := host.last(t)
	if req.Method != "POST" || req.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request = %s, Content-Type %q", req.Method, req.Header.Get("Content-Type"))
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(req.Body), &got); err != nil || got["repo"] != "did:plc:alice" {
		t.Errorf("body = %s (%v)", req.Body, err)
	}
}

func TestHostWithPathPrefix(t *testing.T) {
	f := &fakeHost{status: 200, body: `{}`}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, err := xrpc.NewHTTPClient(xrpc.HTTPConfig{Host: srv.URL + "/pds/"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Do(context.Background(), xrpc.Query, "a.b.c", nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	if p := f.last(t).Path; p != "/pds/xrpc/a.b.c" {
		t.Errorf("path = %q", p)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		body       string
		wantName   string
		wantMsg    string
		wantString string
	}{
		{"xrpc error", 400, `{"error":"InvalidSwap","message":"commit moved"}`, "InvalidSwap", "commit moved",
			"xrpc com.atproto.repo.createRecord: 400 InvalidSwap: commit moved"},
		{"error without message", 401, `{"error":"AuthenticationRequired"}`, "AuthenticationRequired", "",
			"xrpc com.atproto.repo.createRecord: 401 AuthenticationRequired"},
		{"html page", 502, `<html>bad gateway</html>`, "BadGateway", "<html>bad gateway</html>",
			"xrpc com.atproto.repo.createRecord: 502 BadGateway: <html>bad gateway</html>"},
		{"empty body", 500, ``, "InternalServerError", "", "xrpc com.atproto.repo.createRecord: 500 InternalServerError"},
		{"odd status", 599, `nope`, "HTTP599", "nope", "xrpc com.atproto.repo.createRecord: 599 HTTP599: nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c := newHost(t, tt.status, tt.body)
			var out struct{}
			err := c.Do(context.Background(), xrpc.Procedure, "com.atproto.repo.createRecord", nil, struct{}{}, &out)
			var xe *xrpc.Error
			if !errors.As(err, &xe) {
				t.Fatalf("err = %v, want *xrpc.Error", err)
			}
			if xe.StatusCode != tt.status || xe.Name != tt.wantName || xe.Message != tt.wantMsg {
				t.Errorf("error = %+v", xe)
			}
			if err.Error() != tt.wantString {
				t.Errorf("Error() = %q, want %q", err.Error(), tt.wantString)
			}
			if !xrpc.IsError(err, tt.wantName) || xrpc.StatusCode(err) != tt.status {
				t.Errorf("IsError/StatusCode do not see %v", err)
			}
		})
	}
}

func TestResponseProblems(t *testing.T) {
	t.Run("not JSON", func(t *testing.T) {
		_, c := newHost(t, 200, `<html>`)
		var out struct{}
		err := c.Do(context.Background(), xrpc.Query, "a.b.c", nil, nil, &out)
		if err == nil || !strings.Contains(err.Error(), "decode application/json response") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("too large", func(t *testing.T) {
		f := &fakeHost{status: 200, body: `{"x":"` + strings.Repeat("a", 100) + `"}`}
		srv := httptest.NewServer(f)
		defer srv.Close()
		c, _ := xrpc.NewHTTPClient(xrpc.HTTPConfig{Host: srv.URL, MaxResponseBytes: 50})
		var out struct{}
		err := c.Do(context.Background(), xrpc.Query, "a.b.c", nil, nil, &out)
		if err == nil || !strings.Contains(err.Error(), "larger than 50 bytes") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("empty success body", func(t *testing.T) {
		_, c := newHost(t, 200, ``)
		var out struct{ Commit *struct{} }
		if err := c.Do(context.Background(), xrpc.Procedure, "a.b.c", nil, struct{}{}, &out); err != nil {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		c, _ := xrpc.NewHTTPClient(xrpc.HTTPConfig{Host: srv.URL})
		err := c.Do(context.Background(), xrpc.Query, "a.b.c", nil, nil, nil)
		if err == nil || xrpc.StatusCode(err) != 0 || !strings.Contains(err.Error(), "xrpc a.b.c:") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("bad method and nsid", func(t *testing.T) {
		_, c := newHost(t, 200, `{}`)
		if err := c.Do(context.Background(), "PUT", "a.b.c", nil, nil, nil); err == nil {
			t.Error("PUT was accepted")
		}
		if err := c.Do(context.Background(), xrpc.Query, "a.b/../c", nil, nil, nil); err == nil {
			t.Error("an NSID with a slash was accepted")
		}
	})
}

func TestNewHTTPClientRejectsBadHosts(t *testing.T) {
	for _, host := range []string{"", "127.0.0.1:7000", "ftp://x", "http://", "http://x/?a=b", "://"} {
		if _, err := xrpc.NewHTTPClient(xrpc.HTTPConfig{Host: host}); err == nil {
			t.Errorf("host %q was accepted", host)
		}
	}
}

func TestProxyClient(t *testing.T) {
	incoming := httptest.NewRequest("POST", "/status", nil)
	incoming.Header.Set("Proxy-Session", "sess-123")
	incoming.Header.Set("User-Did", "did:plc:alice")
	incoming.Header.Set("User-Handle", "alice.test")

	tests := []struct {
		name        string
		client      func(*xrpc.HTTPClient) xrpc.Client
		wantSession string
		wantDID     string
	}{
		{"from request", func(b *xrpc.HTTPClient) xrpc.Client { return xrpc.ProxyClientFor(b, incoming) }, "sess-123", "did:plc:alice"},
		{"explicit", func(b *xrpc.HTTPClient) xrpc.Client {
			return xrpc.NewProxyClient(b, xrpc.Identity{Session: "s2", DID: "did:plc:bob"})
		}, "s2", "did:plc:bob"},
		{"public", func(b *xrpc.HTTPClient) xrpc.Client { return xrpc.PublicClientFor(b, "did:plc:carol") }, "", "did:plc:carol"},
		{"anonymous request", func(b *xrpc.HTTPClient) xrpc.Client {
			return xrpc.ProxyClientFor(b, httptest.NewRequest("GET", "/", nil))
		}, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, base := newHost(t, 200, `{}`)
			if err := tt.client(base).Do(context.Background(), xrpc.Query, "a.b.c", nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			h := host.last(t).Header
			if _, ok := h["Proxy-Session"]; ok != (tt.wantSession != "") || h.Get("Proxy-Session") != tt.wantSession {
				t.Errorf("Proxy-Session = %q (present %v), want %q", h.Get("Proxy-Session"), ok, tt.wantSession)
			}
			if _, ok := h["User-Did"]; ok != (tt.wantDID != "") || h.Get("User-Did") != tt.wantDID {
				t.Errorf("User-Did = %q (present %v), want %q", h.Get("User-Did"), ok, tt.wantDID)
			}
			if h.Get("User-Handle") != "" {
				t.Errorf("User-Handle was sent: %q", h.Get("User-Handle"))
			}
		})
	}
}

func TestIdentityFrom(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	if xrpc.IdentityFrom(r).SignedIn() {
		t.Error("a request without headers is signed in")
	}
	r.Header.Set("User-Did", "did:plc:alice")
	r.Header.Set("User-Handle", "alice.test")
	r.Header.Set("Proxy-Session", "k")
	id := xrpc.IdentityFrom(r)
	if !id.SignedIn() || id != (xrpc.Identity{Session: "k", DID: "did:plc:alice", Handle: "alice.test"}) {
		t.Errorf("identity = %+v", id)
	}
}
