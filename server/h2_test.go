package server

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestH2SlowReaderIsCut: one TLS connection that speaks HTTP/2 with
// SETTINGS_INITIAL_WINDOW_SIZE = 0 and never opens a window made ioproxy
// hold one handler and one backend connection per stream for ever. Now an
// answer the client takes nothing of is cut after write_idle_timeout, and
// one connection carries at most maxStreamsPerConnection requests.
func TestH2SlowReaderIsCut(t *testing.T) {
	var backendConns atomic.Int64
	page := strings.Repeat("x", 4<<20)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(page))
	}))
	backend.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			backendConns.Add(1)
		case http.StateClosed, http.StateHijacked:
			backendConns.Add(-1)
		}
	}
	backend.Start()
	defer backend.Close()
	ps := freePorts(t, 2)
	s := start(t, fmt.Sprintf(`
data_dir = %q
ingress {
  http            = "127.0.0.1:%d"
  https           = "127.0.0.1:%d"
  max_connections    = 2
  write_idle_timeout = "1s"
}
admin { listen = "" }
host "app.example.com" {
  backend = %q
  tls { mode = "self_signed" }
}
`, filepath.Join(t.TempDir(), "data"), ps[0], ps[1], backend.URL))

	conn, err := tls.Dial("tcp", s.Addrs()["https"], &tls.Config{ServerName: "app.example.com", InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.ConnectionState().NegotiatedProtocol != "h2" {
		t.Skip("no h2")
	}
	_, _ = conn.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(conn, conn)
	var writing sync.Mutex // a Framer's writes are not safe for concurrent use
	var maxStreams atomic.Int64
	writing.Lock()
	err = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	writing.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
				if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); ok {
					maxStreams.Store(int64(v))
				}
				writing.Lock()
				_ = fr.WriteSettingsAck()
				writing.Unlock()
			}
		}
	}()
	const streams = 50
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for i := range streams {
		hb.Reset()
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "app.example.com"}, {":path", "/"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		writing.Lock()
		err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		writing.Unlock()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The streams reach the backend, then are cut once their answers
	// have waited write_idle_timeout for a reader.
	for deadline := time.Now().Add(5 * time.Second); backendConns.Load() < streams/2; {
		if time.Now().After(deadline) {
			t.Fatalf("the streams did not reach the backend: %d connections", backendConns.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for deadline := time.Now().Add(10 * time.Second); backendConns.Load() >= streams/2; {
		if time.Now().After(deadline) {
			t.Fatalf("10 s on, one client connection that never reads holds %d backend connections open", backendConns.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := maxStreams.Load(); n != maxStreamsPerConnection {
		t.Errorf("the server allows %d concurrent streams per connection, want %d", n, maxStreamsPerConnection)
	}
}
