package ingress

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/internal/wstest"
)

// Records name configured hosts only, so that clients cannot mint metric
// labels with made-up Host headers.
func TestRecordsNameConfiguredHostsOnly(t *testing.T) {
	a := echoBackend(t, "a")
	cfg := mustConfig(t, fmt.Sprintf(`host "a.example.com" { backend = %q }`, a.URL))
	rec := &requestLog{}
	rt, err := New(Config{Config: cfg, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"A.EXAMPLE.COM:8080", "random-1.evil.example", "random-2.evil.example"} {
		rt.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "http://"+host+"/x?token=secret", nil))
	}
	got := rec.requests()
	want := []string{"a.example.com", UnknownHost, UnknownHost}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.Source != want[i] || r.Kind != observe.KindIngress {
			t.Errorf("record %d: %s %q, want ingress %q", i, r.Kind, r.Source, want[i])
		}
		if r.Path != "/x" {
			t.Errorf("record %d path %q: the query must not be recorded", i, r.Path)
		}
	}
	if got[0].Status != 200 || got[1].Status != 404 || got[0].Upstream == "" {
		t.Errorf("records %+v", got)
	}
}

// requestLog keeps the requests reported to it.
type requestLog struct {
	observe.Discard
	mu  sync.Mutex
	got []observe.Request
}

func (l *requestLog) Request(r observe.Request) {
	l.mu.Lock()
	l.got = append(l.got, r)
	l.mu.Unlock()
}

func (l *requestLog) requests() []observe.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]observe.Request(nil), l.got...)
}

// TestAbortedAnswerRecorded: an answer that broke off half way is
// recorded as aborted, not as the whole 200 its status line said.
func TestAbortedAnswerRecorded(t *testing.T) {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = w.Write([]byte("only ten b"))
		w.(http.Flusher).Flush()
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
	}))
	t.Cleanup(b.Close)
	rec := &requestLog{}
	rt, err := New(Config{Config: mustConfig(t, fmt.Sprintf(`host "127.0.0.1" { backend = %q }`, b.URL)), Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rt)
	t.Cleanup(srv.Close)
	if resp, err := http.Get(srv.URL + "/"); err == nil {
		_, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := rec.requests()
	if len(got) != 1 || !got[0].Aborted {
		t.Errorf("records %+v; want one, aborted", got)
	}
}

// TestRecordOfATunnel: a WebSocket's record says 101, which the
// ReverseProxy writes on the hijacked connection (found end to end: the
// log said 200).
func TestRecordOfATunnel(t *testing.T) {
	backend := wstest.EchoServer(t)
	rec := &requestLog{}
	rt, err := New(Config{Config: mustConfig(t, fmt.Sprintf(`host "127.0.0.1" { backend = %q }`, backend.URL)), Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rt)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	echo(ctx, t, c, "hi")
	c.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.requests()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := rec.requests()
	if len(got) != 1 || got[0].Status != http.StatusSwitchingProtocols {
		t.Fatalf("records %+v, want one of status 101", got)
	}
}
