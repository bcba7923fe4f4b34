package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/observe"
)

// get fetches path from the test server and returns status and body.
func get(t *testing.T, srv *httptest.Server, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatalf("new request %s: %v", path, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp, string(body)
}

func ready(context.Context) error { return nil }

func TestMetricsExposition(t *testing.T) {
	r := NewRecorder(RecorderConfig{})
	for _, req := range []observe.Request{
		{Kind: observe.KindIngress, Source: "statusphere", Method: "GET", Path: "/", Status: 200, Duration: 20 * time.Millisecond},
		{Kind: observe.KindIngress, Source: "statusphere", Method: "GET", Path: "/app.js", Status: 200, Duration: 3 * time.Millisecond},
		{Kind: observe.KindIngress, Source: "statusphere", Method: "GET", Path: "/nope", Status: 404, Duration: time.Millisecond},
		{Kind: observe.KindCall, Source: "atproto", Operation: "CreateRecord", Method: "POST", Path: "/xrpc/com.atproto.repo.createRecord", Status: 200, Duration: 120 * time.Millisecond},
		{Kind: observe.KindCall, Source: "atproto", Operation: "ListRecords", Method: "GET", Path: "/xrpc/com.atproto.repo.listRecords", Status: 502, Duration: 2 * time.Second},
	} {
		r.Request(req)
	}
	r.NonceRetry(observe.NonceServerPDS)
	r.NonceRetry(observe.NonceServerAuth)
	r.NonceRetry("https://attacker-chosen.example.com")
	r.TokenRefresh(true)
	r.TokenRefresh(false)
	r.TokenRefresh(true)
	r.SignIn(observe.SignInStarted)
	r.SignIn(observe.SignInStarted)
	r.SignIn(observe.SignInCompleted)
	r.SignIn("typo")
	r.SetSessionCounter(func() int { return 7 })

	srv := httptest.NewServer(r.Handler(HealthFuncs{Ready: ready}))
	defer srv.Close()

	want := `
# HELP ioproxy_ingress_requests_total Ingress requests by host and response status.
# TYPE ioproxy_ingress_requests_total counter
ioproxy_ingress_requests_total{host="statusphere",status="200"} 2
ioproxy_ingress_requests_total{host="statusphere",status="404"} 1
# HELP ioproxy_calls_total Requests through calling ports by call block, operation and response status.
# TYPE ioproxy_calls_total counter
ioproxy_calls_total{call="atproto",operation="CreateRecord",status="200"} 1
ioproxy_calls_total{call="atproto",operation="ListRecords",status="502"} 1
# HELP ioproxy_dpop_nonce_retries_total Requests sent again because a server asked for a new DPoP nonce, by kind of server (pds or auth_server).
# TYPE ioproxy_dpop_nonce_retries_total counter
ioproxy_dpop_nonce_retries_total{server="auth_server"} 1
ioproxy_dpop_nonce_retries_total{server="other"} 1
ioproxy_dpop_nonce_retries_total{server="pds"} 1
# HELP ioproxy_oauth_token_refreshes_total OAuth token refreshes by result (ok or failed).
# TYPE ioproxy_oauth_token_refreshes_total counter
ioproxy_oauth_token_refreshes_total{result="failed"} 1
ioproxy_oauth_token_refreshes_total{result="ok"} 2
# HELP ioproxy_oauth_signins_total Sign-ins by stage: started, completed, failed, or store_full (refused: the session store is full).
# TYPE ioproxy_oauth_signins_total counter
ioproxy_oauth_signins_total{stage="completed"} 1
ioproxy_oauth_signins_total{stage="failed"} 0
ioproxy_oauth_signins_total{stage="other"} 1
ioproxy_oauth_signins_total{stage="started"} 2
ioproxy_oauth_signins_total{stage="store_full"} 0
# HELP ioproxy_sessions_active Signed-in sessions in the store.
# TYPE ioproxy_sessions_active gauge
ioproxy_sessions_active 7
`
	names := []string{
		"ioproxy_ingress_requests_total", "ioproxy_calls_total", "ioproxy_dpop_nonce_retries_total",
		"ioproxy_oauth_token_refreshes_total", "ioproxy_oauth_signins_total", "ioproxy_sessions_active",
	}
	if err := testutil.ScrapeAndCompare(srv.URL+"/metrics", strings.NewReader(want), names...); err != nil {
		t.Errorf("metrics differ:\n%v", err)
	}

	resp, body := get(t, srv, "/metrics", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("GET /metrics: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, line := range []string{
		`ioproxy_ingress_request_duration_seconds_count{host="statusphere"} 3`,
		`ioproxy_ingress_request_duration_seconds_bucket{host="statusphere",le="0.005"} 2`,
		`ioproxy_call_duration_seconds_count{call="atproto",operation="ListRecords"} 1`,
		`ioproxy_call_duration_seconds_bucket{call="atproto",operation="ListRecords",le="1"} 0`,
		`ioproxy_call_duration_seconds_bucket{call="atproto",operation="ListRecords",le="2.5"} 1`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}

	problems, err := testutil.GatherAndLint(r.Registry())
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "ioproxy_") {
			t.Errorf("metric %s: %s", p.Metric, p.Text)
		}
	}
}

func TestSessionGaugeAbsentUntilSet(t *testing.T) {
	r := NewRecorder(RecorderConfig{})
	if n, err := testutil.GatherAndCount(r.Registry(), "ioproxy_sessions_active"); err != nil || n != 0 {
		t.Fatalf("gauge reported %d series before a counter was set (%v)", n, err)
	}
	r.SetSessionCounter(func() int { return 1 })
	r.SetSessionCounter(nil)
	n, err := testutil.GatherAndCount(r.Registry(), "ioproxy_sessions_active")
	if err != nil || n != 0 {
		t.Fatalf("after SetSessionCounter(nil): %d series, %v", n, err)
	}
}

func TestNilRecorderIsSafe(t *testing.T) {
	var r *Recorder
	r.Request(observe.Request{Kind: observe.KindIngress, Source: "x", Status: 200})
	r.NonceRetry("https://pds.example.com")
	r.TokenRefresh(true)
	r.SignIn(observe.SignInStarted)
	r.SetSessionCounter(func() int { return 1 })
	if r.Registry() != nil {
		t.Error("nil recorder has a registry")
	}

	srv := httptest.NewServer(r.Handler(HealthFuncs{Ready: ready}))
	defer srv.Close()
	for path, want := range map[string]int{
		"/healthz":      http.StatusOK,
		"/readyz":       http.StatusOK,
		"/metrics":      http.StatusNotFound,
		"/traffic":      http.StatusNotFound,
		"/traffic.json": http.StatusNotFound,
	} {
		if resp, body := get(t, srv, path, nil); resp.StatusCode != want {
			t.Errorf("GET %s = %d (%q), want %d", path, resp.StatusCode, body, want)
		}
	}
}

func TestHealth(t *testing.T) {
	storeClosed := errors.New("session store is not open")
	tests := []struct {
		name       string
		health     HealthFuncs
		path       string
		wantStatus int
		wantBody   string
	}{
		{"alive by default", HealthFuncs{}, "/healthz", 200, "ok\n"},
		{"not alive", HealthFuncs{Live: func(context.Context) error { return errors.New("wedged") }}, "/healthz", 503, "not alive: wedged\n"},
		{"ready", HealthFuncs{Ready: ready}, "/readyz", 200, "ready\n"},
		{"not ready", HealthFuncs{Ready: func(context.Context) error { return storeClosed }}, "/readyz", 503, "not ready: session store is not open\n"},
		{"no readiness check", HealthFuncs{}, "/readyz", 503, "not ready: no readiness check is configured\n"},
		{"check has a deadline", HealthFuncs{Ready: func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("no deadline")
			}
			return nil
		}}, "/readyz", 200, "ready\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(NewRecorder(RecorderConfig{}).Handler(tt.health))
			defer srv.Close()
			resp, body := get(t, srv, tt.path, nil)
			if resp.StatusCode != tt.wantStatus || body != tt.wantBody {
				t.Errorf("GET %s = %d %q, want %d %q", tt.path, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control = %q", resp.Header.Get("Cache-Control"))
			}
		})
	}
}

func TestAccessLog(t *testing.T) {
	var buf bytes.Buffer
	logger := NewLogger(&buf, config.Log{Level: slog.LevelInfo, Format: "json"})
	r := NewRecorder(RecorderConfig{Logger: logger})
	r.Request(observe.Request{
		Time: time.Now(), Kind: observe.KindIngress, Source: "statusphere", Operation: "callback",
		Method: "GET", Path: "/@/callback?code=SECRETCODE&state=s", Status: 302,
		Duration: 15 * time.Millisecond, Upstream: "https://user:hunter2@auth.example.com/token?x=SECRETQ",
		DID: "did:plc:alice", Remote: "203.0.113.7:4711",
	})
	r.Request(observe.Request{Kind: observe.KindCall, Source: "atproto", Operation: "CreateRecord", Method: "POST", Path: "/xrpc/com.atproto.repo.createRecord", Status: 502})

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d log lines, want 2:\n%s", len(lines), buf.String())
	}
	for _, secret := range []string{"SECRETCODE", "SECRETQ", "hunter2", "state=s"} {
		if strings.Contains(buf.String(), secret) {
			t.Errorf("access log holds %q:\n%s", secret, buf.String())
		}
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	wantFirst := map[string]any{
		"level": "INFO", "msg": "request", "kind": "ingress", "host": "statusphere", "operation": "callback",
		"method": "GET", "path": "/@/callback", "status": float64(302), "duration": float64(15 * time.Millisecond),
		"upstream": "https://auth.example.com/token", "did": "did:plc:alice", "remote": "203.0.113.7:4711",
	}
	for k, v := range wantFirst {
		if first[k] != v {
			t.Errorf("first line %s = %v, want %v", k, first[k], v)
		}
	}
	if second["level"] != "WARN" || second["call"] != "atproto" || second["operation"] != "CreateRecord" {
		t.Errorf("second line = %v, want WARN from call atproto, operation CreateRecord", second)
	}
	if _, ok := second["did"]; ok {
		t.Errorf("second line has a did without a signed-in user: %v", second)
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l := NewLogger(&buf, config.Log{Level: slog.LevelWarn, Format: "text"})
	l.Info("hidden")
	l.Warn("shown", "k", "v")
	if got := buf.String(); strings.Contains(got, "hidden") || !strings.Contains(got, "level=WARN msg=shown k=v") {
		t.Errorf("text logger wrote %q", got)
	}
	buf.Reset()
	NewLogger(&buf, config.Log{Level: slog.LevelDebug, Format: "json"}).Debug("x")
	if !json.Valid(buf.Bytes()) {
		t.Errorf("json logger wrote %q", buf.String())
	}
}

func TestTrafficJSON(t *testing.T) {
	r := NewRecorder(RecorderConfig{TrafficSize: 3})
	srv := httptest.NewServer(r.Handler(HealthFuncs{Ready: ready}))
	defer srv.Close()

	page := func(query string) trafficPage {
		t.Helper()
		resp, body := get(t, srv, "/traffic.json"+query, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("GET /traffic.json%s: %d %q %s", query, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		var p trafficPage
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatalf("decode: %v\n%s", err, body)
		}
		return p
	}
	ids := func(p trafficPage) []uint64 {
		var out []uint64
		for _, e := range p.Entries {
			out = append(out, e.ID)
		}
		return out
	}

	if p := page(""); p.Last != 0 || len(p.Entries) != 0 || p.Capacity != 3 {
		t.Fatalf("empty ring: %+v", p)
	}
	for i := range 5 {
		r.Request(observe.Request{Kind: observe.KindIngress, Source: "statusphere", Method: "GET", Path: "/p" + string(rune('a'+i)), Status: 200})
	}
	p := page("")
	if got := ids(p); len(got) != 3 || got[0] != 3 || got[2] != 5 || p.Last != 5 {
		t.Fatalf("after 5 requests into a ring of 3: ids %v last %d", got, p.Last)
	}
	if p.Entries[0].Path != "/pc" {
		t.Errorf("oldest kept path = %q, want /pc", p.Entries[0].Path)
	}
	if got := ids(page("?after=4")); len(got) != 1 || got[0] != 5 {
		t.Errorf("after=4: ids %v, want [5]", got)
	}
	if got := ids(page("?after=5")); len(got) != 0 {
		t.Errorf("after=5: ids %v, want none", got)
	}
	if got := ids(page("?after=99")); len(got) != 3 {
		t.Errorf("after an id from before a restart: ids %v, want all 3", got)
	}
	resp, body := get(t, srv, "/traffic.json?after=x", nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "not a request id") {
		t.Errorf("after=x: %d %s", resp.StatusCode, body)
	}

	r.Request(observe.Request{
		Kind: observe.KindCall, Source: "atproto", Operation: "GetProfile", Method: "GET",
		Path:   "/xrpc/app.bsky.actor.getProfile?actor=SECRETACTOR",
		Status: 200, Duration: 1500 * time.Microsecond, Upstream: "https://pds.example.com",
		DID: "did:plc:alice", Remote: "198.51.100.9:1234",
	})
	r.Request(observe.Request{Kind: observe.KindIngress, Source: "statusphere", Method: "GET", Path: `/<script>alert(1)</script>"'&`, Status: 404})
	resp, body = get(t, srv, "/traffic.json?after=5", nil)
	for _, bad := range []string{"SECRETACTOR", "198.51.100.9", "<script>", "remote"} {
		if strings.Contains(body, bad) {
			t.Errorf("traffic.json holds %q: %s", bad, body)
		}
	}
	var got trafficPage
	if err := json.Unmarshal([]byte(body), &got); err != nil || len(got.Entries) != 2 {
		t.Fatalf("decode: %v %s", err, body)
	}
	call := got.Entries[0]
	want := trafficEntry{ID: 6, Time: call.Time, Kind: "call", Source: "atproto", Operation: "GetProfile", Method: "GET",
		Path: "/xrpc/app.bsky.actor.getProfile", Status: 200, DurationMS: 1.5, Upstream: "https://pds.example.com", DID: "did:plc:alice"}
	if call != want {
		t.Errorf("call entry = %+v\nwant %+v", call, want)
	}
	if got.Entries[1].Path != `/<script>alert(1)</script>"'&` {
		t.Errorf("path did not survive JSON intact: %q", got.Entries[1].Path)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", resp.Header.Get("Cache-Control"))
	}
}

func TestTrafficPageAndHostGuard(t *testing.T) {
	r := NewRecorder(RecorderConfig{Hosts: []string{"Admin.Internal"}})
	srv := httptest.NewServer(r.Handler(HealthFuncs{Ready: ready}))
	defer srv.Close()

	resp, body := get(t, srv, "/traffic", nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /traffic: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, s := range []string{`<tbody id="rows">`, `<script src="traffic.js" defer>`, `href="traffic.css"`} {
		if !strings.Contains(body, s) {
			t.Errorf("/traffic lacks %s", s)
		}
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP = %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("missing security headers: %v", resp.Header)
	}
	if resp, body := get(t, srv, "/traffic.js", nil); resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), "javascript") || !strings.Contains(body, "textContent") {
		t.Errorf("GET /traffic.js: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if strings.Contains(mustRead(t, "static/traffic.js"), "innerHTML") {
		t.Error("traffic.js uses innerHTML; put request data into the page as text only")
	}
	if resp, _ := get(t, srv, "/", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("GET / = %d", resp.StatusCode)
	}
	if resp, _ := get(t, srv, "/nope", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope = %d", resp.StatusCode)
	}

	tests := []struct {
		host string
		want int
	}{
		{"127.0.0.1:9901", 200},
		{"[::1]:9901", 200},
		{"localhost:9901", 200},
		{"admin.internal", 200},
		{"rebind.attacker.example:9901", 403},
		{"localhost.attacker.example", 403},
	}
	// The whole listener is guarded: metrics and health name hosts and
	// calls, and a page on a rebinding name has no business reading them.
	for _, tt := range tests {
		for _, path := range []string{"/traffic", "/traffic.json", "/traffic/events?probe", "/metrics", "/healthz", "/readyz", "/traffic.js", "/"} {
			if path == "/traffic/events?probe" && tt.want == 200 {
				continue // a stream does not end; its guard is covered by the 403 cases
			}
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tt.host
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s with Host %s = %d, want %d", path, tt.host, resp.StatusCode, tt.want)
			}
			if tt.want == 403 && !strings.Contains(string(b), "admin { hosts") {
				t.Errorf("GET %s with Host %s: the refusal does not say how to allow the name: %s", path, tt.host, b)
			}
		}
	}
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	b, err := staticFiles.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sseEvent is one Server-Sent Event as read from the stream.
type sseEvent struct {
	event string
	id    string
	data  string
}

// readEvents parses a Server-Sent Events stream until it ends.
func readEvents(body io.Reader, out chan<- sseEvent) {
	defer close(out)
	sc := bufio.NewScanner(body)
	var ev sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.data != "" {
				out <- ev
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			ev.event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "id: "):
			ev.id = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestTrafficEvents(t *testing.T) {
	r := NewRecorder(RecorderConfig{})
	srv := httptest.NewServer(r.Handler(HealthFuncs{Ready: ready}))
	defer srv.Close()
	r.Request(observe.Request{Kind: observe.KindIngress, Source: "statusphere", Method: "GET", Path: "/first", Status: 200})
	r.Request(observe.Request{Kind: observe.KindIngress, Source: "statusphere", Method: "GET", Path: "/second", Status: 200})

	open := func(lastID string) (<-chan sseEvent, func()) {
		ctx, cancel := context.WithCancel(t.Context())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/traffic/events", nil)
		if err != nil {
			t.Fatal(err)
		}
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		ch := make(chan sseEvent)
		go readEvents(resp.Body, ch)
		return ch, func() { cancel(); resp.Body.Close() }
	}
	nextEvent := func(ch <-chan sseEvent) sseEvent {
		t.Helper()
		select {
		case ev, ok := <-ch:
			if !ok {
				t.Fatal("stream ended")
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no event within 10s")
			return sseEvent{}
		}
	}
	next := func(ch <-chan sseEvent) trafficEntry {
		t.Helper()
		ev := nextEvent(ch)
		if ev.event != "" {
			t.Fatalf("got a %q event, want an entry", ev.event)
		}
		var e trafficEntry
		if err := json.Unmarshal([]byte(ev.data), &e); err != nil {
			t.Fatalf("event %q: %v", ev.data, err)
		}
		if ev.id != strconv.FormatUint(e.ID, 10) {
			t.Errorf("event id %q for entry %d", ev.id, e.ID)
		}
		return e
	}

	ch, closeStream := open("")
	if e := next(ch); e.Path != "/first" {
		t.Errorf("backlog starts with %q", e.Path)
	}
	if e := next(ch); e.Path != "/second" {
		t.Errorf("backlog continues with %q", e.Path)
	}
	r.Request(observe.Request{Kind: observe.KindCall, Source: "atproto", Operation: "CreateRecord", Method: "POST", Path: "/xrpc/com.atproto.repo.createRecord", Status: 200})
	if e := next(ch); e.ID != 3 || e.Kind != "call" || e.Operation != "CreateRecord" {
		t.Errorf("live event = %+v", e)
	}
	closeStream()

	// A reconnecting EventSource sends the last id it saw.
	ch, closeStream = open("2")
	if e := next(ch); e.ID != 3 {
		t.Errorf("resumed stream starts at %d, want 3", e.ID)
	}
	closeStream()

	// An id from before a restart: the client is told to start over.
	ch, closeStream = open("42")
	defer closeStream()
	if ev := nextEvent(ch); ev.event != "reset" {
		t.Errorf("first event after a restart = %+v, want reset", ev)
	}
	if e := next(ch); e.ID != 1 {
		t.Errorf("after reset the stream starts at %d, want 1", e.ID)
	}
}

// TestConcurrentUse is for the race detector: reports, scrapes and traffic
// readers all at once.
func TestConcurrentUse(t *testing.T) {
	r := NewRecorder(RecorderConfig{TrafficSize: 50, Logger: slog.New(slog.DiscardHandler)})
	r.SetSessionCounter(func() int { return 1 })
	srv := httptest.NewServer(r.Handler(HealthFuncs{Ready: ready}))
	defer srv.Close()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				r.Request(observe.Request{Kind: []string{observe.KindIngress, observe.KindCall}[w%2], Source: "s", Operation: "op", Method: "GET", Path: "/", Status: 200 + i%3})
				r.NonceRetry("https://pds.example.com")
				r.SignIn(observe.SignInStarted)
			}
		})
	}
	for range 3 {
		wg.Go(func() {
			for range 20 {
				get(t, srv, "/metrics", nil)
				get(t, srv, "/traffic.json", nil)
			}
		})
	}
	wg.Go(func() {
		for range 100 {
			r.SetSessionCounter(func() int { return 2 })
		}
	})
	wg.Wait()
	if n := testutil.ToFloat64(r.signIns.WithLabelValues(observe.SignInStarted)); n != 1600 {
		t.Errorf("sign-ins started = %v, want 1600", n)
	}
}

func TestClip(t *testing.T) {
	long := strings.Repeat("é", 1000) // 2000 bytes
	got := cleanPath("/" + long)
	if len(got) > maxFieldLen+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("clipped path has %d bytes", len(got))
	}
	if !json.Valid([]byte(`"`+got+`"`)) || strings.ContainsRune(got, '\uFFFD') {
		t.Error("clipping split a UTF-8 sequence")
	}
}

func TestUpstreamDuration(t *testing.T) {
	r := NewRecorder(RecorderConfig{})
	r.UpstreamDuration(observe.KindIngress, "statusphere.example.com", 30*time.Millisecond)
	r.UpstreamDuration(observe.KindCall, "atproto", 2*time.Second)
	var nilRec *Recorder
	nilRec.UpstreamDuration(observe.KindCall, "x", time.Second)
	families, err := r.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "ioproxy_upstream_response_seconds" {
			continue
		}
		if n := len(f.GetMetric()); n != 2 {
			t.Fatalf("%d series, want 2", n)
		}
		for _, m := range f.GetMetric() {
			if m.GetHistogram().GetSampleCount() != 1 {
				t.Errorf("series %v has %d samples", m.GetLabel(), m.GetHistogram().GetSampleCount())
			}
		}
		return
	}
	t.Fatal("no ioproxy_upstream_response_seconds")
}
