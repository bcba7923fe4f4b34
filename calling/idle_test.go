package calling

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestCloseIdleConnections: a URL endpoint's port closes the idle
// connections of its own transport when asked (a reload that replaces
// the port asks), so reloads leave no connections open to the upstream.
func TestCloseIdleConnections(t *testing.T) {
	var open atomic.Int32
	closed := make(chan struct{}, 1)
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	upstream.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed:
			open.Add(-1)
			closed <- struct{}{}
		}
	}
	upstream.Start()
	defer upstream.Close()
	h := urlPort(t, urlCall(t, upstream.URL))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/v1/things", nil)
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("call: %d %s", rec.Code, rec.Body)
	}
	if open.Load() != 1 {
		t.Fatalf("%d connections open to the upstream after a call, want 1 (kept alive)", open.Load())
	}
	closer, ok := h.(interface{ CloseIdleConnections() })
	if !ok {
		t.Fatal("a URL endpoint's port has no CloseIdleConnections")
	}
	closer.CloseIdleConnections()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection to the upstream is still open 5s after CloseIdleConnections")
	}
}
