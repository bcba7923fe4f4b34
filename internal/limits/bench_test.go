package limits

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// BenchmarkBody is the cost of BodyLimits on a 1 MiB body.
//
// memory/*: the body costs nothing to read (it copies no bytes) and
// SetReadDeadline reaches a real loopback TCP connection, so the ns/read
// of limits minus plain is the wrapper's own cost per Read (two clock
// reads, a mutex, a deadline update in the runtime poller). loopback/*: a
// whole POST through a real server, where that cost is diluted by the
// network's.
func BenchmarkBody(b *testing.B) {
	const size = 1 << 20
	payload := make([]byte, size)
	l := BodyLimits{IdleTimeout: 30 * time.Second, MinRate: 1024}
	conn := loopbackConn(b)

	for _, readSize := range []int{4 << 10, 32 << 10} {
		for _, limited := range []bool{false, true} {
			b.Run(fmt.Sprintf("memory/read=%dKiB/%s", readSize>>10, map[bool]string{false: "plain", true: "limits"}[limited]), func(b *testing.B) {
				w := deadlineWriter{ResponseWriter: httptest.NewRecorder(), conn: conn}
				buf := make([]byte, readSize)
				reads := 0
				b.SetBytes(size)
				b.ReportAllocs()
				for b.Loop() {
					r := &http.Request{Body: &sizedBody{left: size}}
					if limited {
						r.Body = newBody(http.NewResponseController(w), r.Body, l)
					}
					for {
						reads++
						if _, err := r.Body.Read(buf); err != nil {
							break
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(reads), "ns/read")
			})
		}
	}

	for _, limited := range []bool{false, true} {
		b.Run("loopback/"+map[bool]string{false: "plain", true: "limits"}[limited], func(b *testing.B) {
			var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, err := io.Copy(io.Discard, r.Body); err != nil {
					b.Errorf("read body: %v", err)
				}
			})
			if limited {
				h = l.Handler(h)
			}
			addr := serve(b, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Post("http://"+addr+"/", "application/octet-stream", bytes.NewReader(payload))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// BenchmarkAnswer is the cost of BodyLimits on a 1 MiB answer.
//
// memory/*: the ResponseWriter below copies nothing and its write
// deadline is a real loopback TCP connection's, so the ns/write of limits
// minus plain is the wrapper's own cost per Write (a clock read and two
// atomic stores, and a timer a response); deadline-per-write is what
// moving the write deadline before each Write would cost instead.
// loopback/*: a whole GET through a real server.
func BenchmarkAnswer(b *testing.B) {
	const size = 1 << 20
	l := BodyLimits{IdleTimeout: 30 * time.Second, MinRate: 1024, WriteIdleTimeout: 30 * time.Second}
	conn := loopbackConn(b)
	for _, writeSize := range []int{4 << 10, 32 << 10} {
		for _, mode := range []string{"plain", "limits", "deadline-per-write"} {
			b.Run(fmt.Sprintf("memory/write=%dKiB/%s", writeSize>>10, mode), func(b *testing.B) {
				under := &deadlineWriter{ResponseWriter: discardWriter{}, conn: conn}
				ctl := http.NewResponseController(under)
				buf := make([]byte, writeSize)
				writes := 0
				b.SetBytes(size)
				b.ReportAllocs()
				for b.Loop() {
					var w http.ResponseWriter = under
					var rw *responseWriter
					if mode == "limits" {
						rw = &responseWriter{ResponseWriter: under, ctl: ctl, writeIdle: l.WriteIdleTimeout}
						w = h1Writer{rw}
					}
					for left := size; left > 0; left -= writeSize {
						writes++
						if mode == "deadline-per-write" {
							_ = ctl.SetWriteDeadline(time.Now().Add(l.WriteIdleTimeout))
						}
						if _, err := w.Write(buf); err != nil {
							b.Fatal(err)
						}
					}
					if rw != nil {
						rw.finish()
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(writes), "ns/write")
			})
		}
	}

	payload := make([]byte, size)
	for _, limited := range []bool{false, true} {
		b.Run("loopback/"+map[bool]string{false: "plain", true: "limits"}[limited], func(b *testing.B) {
			var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for p := payload; len(p) > 0; p = p[32<<10:] {
					if _, err := w.Write(p[:32<<10]); err != nil {
						return
					}
				}
			})
			if limited {
				h = l.Handler(h)
			}
			addr := serve(b, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
			client := &http.Client{Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			b.SetBytes(size)
			b.ReportAllocs()
			for b.Loop() {
				resp, err := client.Get("http://" + addr + "/")
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// discardWriter is a ResponseWriter that copies nothing.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (discardWriter) WriteHeader(int)             {}

// deadlineWriter is a ResponseWriter whose read and write deadlines are a
// connection's.
type deadlineWriter struct {
	http.ResponseWriter
	conn net.Conn
}

func (w deadlineWriter) SetReadDeadline(t time.Time) error  { return w.conn.SetReadDeadline(t) }
func (w deadlineWriter) SetWriteDeadline(t time.Time) error { return w.conn.SetWriteDeadline(t) }

func loopbackConn(b *testing.B) net.Conn {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = client.Close() })
	server, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = server.Close() })
	return server
}

// sizedBody is a body of left bytes that copies nothing, so that a Read
// costs next to nothing but the wrapper around it.
type sizedBody struct{ left int }

func (s *sizedBody) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), s.left)
	s.left -= n
	return n, nil
}

func (s *sizedBody) Close() error { return nil }
