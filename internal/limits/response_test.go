package limits

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// unreadBodyHead is a request announcing a 100 KB body of which it sends
// 10 bytes; the client then sends nothing more.
func unreadBodyHead(path string, chunked bool) string {
	head := "POST " + path + " HTTP/1.1\r\nHost: limits.test\r\n"
	if chunked {
		return head + "Transfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n"
	}
	return head + "Content-Length: 100000\r\n\r\n0123456789"
}

// TestAnswerUnreadBody: on HTTP/1.1, an answer given without reading the
// request body (10 bytes sent of 100 KB, then nothing) reaches the client
// at once, with Connection: close, and the server closes the connection
// soon after rather than waiting for the rest of the body: with the limits
// off as with them on (IdleTimeout longer than the test, so that no stall
// is what answers), with a Content-Length or chunked, whatever the answer
// (an error, a redirect, a handler that writes nothing, a ReverseProxy
// whose backend answers without reading). Without Connection: close,
// net/http reads the rest of the body, at the client's pace, before it
// sends the answer.
func TestAnswerUnreadBody(t *testing.T) {
	// The backend answers without reading too; its own Handler makes its
	// answer close, or the proxy would wait for it.
	backend := serve(t, &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: BodyLimits{}.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "backend says no", http.StatusUnauthorized)
	}))})
	target, err := url.Parse("http://" + backend)
	if err != nil {
		t.Fatal(err)
	}
	handlers := []struct {
		name string
		h    http.Handler
		want int
	}{
		{"401", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "sign in first", http.StatusUnauthorized)
		}), http.StatusUnauthorized},
		{"redirect", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://limits.test/", http.StatusPermanentRedirect)
		}), http.StatusPermanentRedirect},
		{"nothing written", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), http.StatusOK},
		{"flushed", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusAccepted)
			if err := http.NewResponseController(w).Flush(); err != nil {
				t.Errorf("flush: %v", err)
			}
		}), http.StatusAccepted},
		{"ReverseProxy", httputil.NewSingleHostReverseProxy(target), http.StatusUnauthorized},
	}
	for _, l := range []BodyLimits{{}, {IdleTimeout: 2 * clientDeadline, MinRate: 1}} {
		for _, h := range handlers {
			for _, chunked := range []bool{false, true} {
				name := fmt.Sprintf("%s/limits %v/chunked %v", h.name, l.IdleTimeout > 0, chunked)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					addr := serve(t, &http.Server{Handler: l.Handler(h.h), ReadHeaderTimeout: 10 * time.Second})
					c := dialRaw(t, addr)
					if _, err := io.WriteString(c, unreadBodyHead("/", chunked)); err != nil {
						t.Fatal(err)
					}
					resp, _ := c.readResponse(t) // fails at the client's deadline if held
					if resp.StatusCode != h.want || !resp.Close {
						t.Errorf("answer %d, close %v; want %d and Connection: close", resp.StatusCode, resp.Close, h.want)
					}
					c.closedByServer(t)
				})
			}
		}
	}
}

// TestAnswerReadBodyKeepsAlive: an answer given after the body was read to
// its end keeps the connection for the next request, with the limits on
// or off.
func TestAnswerReadBodyKeepsAlive(t *testing.T) {
	for _, l := range []BodyLimits{{}, {IdleTimeout: clientDeadline, MinRate: 1, WriteIdleTimeout: clientDeadline}} {
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("limits %v/chunked %v", l.IdleTimeout > 0, chunked), func(t *testing.T) {
				t.Parallel()
				addr := serve(t, &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					n, err := io.Copy(io.Discard, r.Body)
					if err != nil {
						t.Errorf("read body: %v", err)
					}
					_, _ = fmt.Fprint(w, n)
				}))})
				c := dialRaw(t, addr)
				body := strings.Repeat("b", 10000)
				req := "POST / HTTP/1.1\r\nHost: limits.test\r\n"
				if chunked {
					req += fmt.Sprintf("Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
				} else {
					req += fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
				}
				if _, err := io.WriteString(c, req); err != nil {
					t.Fatal(err)
				}
				resp, got := c.readResponse(t)
				if resp.StatusCode != http.StatusOK || got != "10000" || resp.Close {
					t.Fatalf("answer %d %q, close %v; want 200 10000, kept alive", resp.StatusCode, got, resp.Close)
				}
				if resp, got := c.get(t, ""); resp.StatusCode != http.StatusOK || got != "0" {
					t.Fatalf("second request on the connection: %d %q", resp.StatusCode, got)
				}
			})
		}
	}
}

// TestAnswerHTTP2: over HTTP/2 an answer that leaves the body unread gets
// no Connection: close (which would end every stream of the connection),
// is answered at once all the same, and the connection serves the next
// request; the ResponseWriter is no Hijacker there, like net/http's own.
func TestAnswerHTTP2(t *testing.T) {
	for _, l := range []BodyLimits{{}, {IdleTimeout: 2 * clientDeadline, MinRate: 1, WriteIdleTimeout: clientDeadline}} {
		t.Run(fmt.Sprintf("limits %v", l.IdleTimeout > 0), func(t *testing.T) {
			ts := httptest.NewUnstartedServer(l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.ProtoMajor != 2 {
					t.Errorf("protocol %s, want HTTP/2", r.Proto)
				}
				if _, ok := w.(http.Hijacker); ok {
					t.Error("the HTTP/2 ResponseWriter is a Hijacker")
				}
				http.Error(w, "sign in first", http.StatusUnauthorized)
				if got := w.Header().Get("Connection"); got != "" {
					t.Errorf("Connection: %q set on HTTP/2", got)
				}
			})))
			ts.EnableHTTP2 = true
			ts.StartTLS()
			t.Cleanup(ts.Close)
			client := ts.Client()
			client.Timeout = clientDeadline
			for i := range 2 {
				pr, pw := io.Pipe()
				go func() { _, _ = io.WriteString(pw, "0123456789") }() // then nothing
				req, err := http.NewRequest(http.MethodPost, ts.URL, pr)
				if err != nil {
					t.Fatal(err)
				}
				req.ContentLength = 100000
				reused := false
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
					GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
				}))
				resp, err := client.Do(req)
				_ = pw.Close()
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || resp.ProtoMajor != 2 {
					t.Fatalf("request %d: %s %d, want HTTP/2 401", i, resp.Proto, resp.StatusCode)
				}
				if i == 1 && !reused {
					t.Error("the second request did not reuse the connection")
				}
			}
		})
	}
}

// passThrough stands for admin.StatusWriter: a ResponseWriter wrapper with
// Unwrap between Handler and the handler.
type passThrough struct{ http.ResponseWriter }

func (w passThrough) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestAnswerHijack: through the ResponseWriter (and a wrapper above it),
// a WebSocket proxied by a ReverseProxy (which hijacks with
// http.ResponseController) and a handler that hijacks with
// w.(http.Hijacker) both work, and keep working after longer than
// WriteIdleTimeout: the connection is the handler's, without deadlines.
func TestAnswerHijack(t *testing.T) {
	const writeIdle = 200 * time.Millisecond
	backend := serve(t, &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		for {
			typ, msg, err := ws.Read(r.Context())
			if err != nil {
				return
			}
			if err := ws.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})})
	target, err := url.Parse("http://" + backend)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	raw := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj, ok := w.(http.Hijacker)
		if !ok {
			t.Error("the HTTP/1.1 ResponseWriter is no Hijacker")
			return
		}
		c, brw, err := hj.Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = brw.WriteString(line)
			_ = brw.Flush()
		}
	})
	for _, l := range []BodyLimits{{WriteIdleTimeout: writeIdle}, {IdleTimeout: writeIdle, MinRate: 100, WriteIdleTimeout: writeIdle}} {
		t.Run(fmt.Sprintf("WebSocket through a ReverseProxy/limits %v", l.IdleTimeout > 0), func(t *testing.T) {
			front := serve(t, &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				rp.ServeHTTP(passThrough{w}, r)
			}))})
			ctx, cancel := context.WithTimeout(context.Background(), 2*clientDeadline)
			defer cancel()
			ws, _, err := websocket.Dial(ctx, "ws://"+front+"/", nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer ws.CloseNow()
			for _, msg := range []string{"ping", "after a quiet while"} {
				if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
					t.Fatalf("write %q: %v", msg, err)
				}
				_, got, err := ws.Read(ctx)
				if err != nil || string(got) != msg {
					t.Fatalf("echo of %q: %q, %v", msg, got, err)
				}
				time.Sleep(3 * writeIdle) // longer than WriteIdleTimeout, and than IdleTimeout
			}
		})
		t.Run(fmt.Sprintf("Hijacker/limits %v", l.IdleTimeout > 0), func(t *testing.T) {
			addr := serve(t, &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: l.Handler(raw)})
			c := dialRaw(t, addr)
			// A body (the first line of the echo), so that the unread-body
			// machinery is in play too.
			if _, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: limits.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\nContent-Length: 5\r\n\r\nping\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("answer %v, %v; want 101", resp, err)
			}
			for i, msg := range []string{"ping\n", "after a quiet while\n"} {
				if i > 0 {
					time.Sleep(3 * writeIdle)
					if _, err := io.WriteString(c, msg); err != nil {
						t.Fatalf("write %q: %v", msg, err)
					}
				}
				if got, err := c.br.ReadString('\n'); err != nil || got != msg {
					t.Fatalf("echo of %q: %q, %v", msg, got, err)
				}
			}
		})
	}
}

// writeResult is how a handler's writes of a large answer ended.
type writeResult struct {
	written int64
	err     error
	blocked time.Duration // how long the failed Write took
}

// largeAnswer writes 64 MiB, or until a Write fails.
func largeAnswer(results chan<- writeResult) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 32<<10)
		var res writeResult
		for res.written < 64<<20 {
			start := time.Now()
			n, err := w.Write(buf)
			res.written += int64(n)
			if err != nil {
				res.err, res.blocked = err, time.Since(start)
				break
			}
		}
		results <- res
	})
}

// smallBuffers keeps the kernel from buffering megabytes of an answer
// that nobody reads, so that a Write blocks soon.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(16 << 10)
	}
	return c, err
}

// TestWriteIdle: a client that reads nothing of a 64 MiB answer (over
// HTTP/1.1 with a small receive buffer, over HTTP/2 with a small
// flow-control window it never opens) makes the handler's Write fail once
// it has been blocked for WriteIdleTimeout, within a bounded time, and the
// handler returns; without WriteIdleTimeout it would wait for ever.
func TestWriteIdle(t *testing.T) {
	const writeIdle = 300 * time.Millisecond
	l := BodyLimits{IdleTimeout: writeIdle, MinRate: 100, WriteIdleTimeout: writeIdle}
	check := func(t *testing.T, results <-chan writeResult) {
		t.Helper()
		select {
		case res := <-results:
			if res.err == nil {
				t.Fatalf("all %d bytes written to a client that reads nothing", res.written)
			}
			if res.blocked < writeIdle || res.blocked > writeIdle+clientDeadline {
				t.Errorf("the Write failed after %s, want about %s (%v)", res.blocked, writeIdle, res.err)
			}
			t.Logf("%d bytes written, then %v after %s", res.written, res.err, res.blocked)
		case <-time.After(2 * clientDeadline):
			t.Fatal("the handler is still writing to a client that reads nothing")
		}
	}
	t.Run("HTTP/1.1", func(t *testing.T) {
		results := make(chan writeResult, 1)
		srv := &http.Server{Handler: l.Handler(largeAnswer(results)), ReadHeaderTimeout: 10 * time.Second}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(smallBuffers{ln}) }()
		t.Cleanup(func() { _ = srv.Close() })
		c := dialRaw(t, ln.Addr().String())
		_ = c.Conn.(*net.TCPConn).SetReadBuffer(4 << 10)
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: limits.test\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		check(t, results) // the client reads nothing
	})
	t.Run("HTTP/2", func(t *testing.T) {
		results := make(chan writeResult, 1)
		ts := httptest.NewUnstartedServer(l.Handler(largeAnswer(results)))
		ts.EnableHTTP2 = true
		ts.StartTLS()
		t.Cleanup(ts.Close)
		tr := &http.Transport{
			TLSClientConfig:   ts.Client().Transport.(*http.Transport).TLSClientConfig,
			ForceAttemptHTTP2: true,
			// The smallest windows net/http allows; the body is never
			// read, so they are never opened again.
			HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10, MaxReceiveBufferPerConnection: 64 << 10},
		}
		t.Cleanup(tr.CloseIdleConnections)
		ctx, cancel := context.WithTimeout(context.Background(), 3*clientDeadline)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
		}
		check(t, results)
	})
}

// TestWriteIdleStreaming: answers streamed to a client that reads them
// are never cut by WriteIdleTimeout, however long they last: events every
// 100 ms for five times WriteIdleTimeout, and events separated by more
// than WriteIdleTimeout (a deadline that outlived its Write would reset an
// HTTP/2 stream while it waits), over HTTP/1.1 and HTTP/2.
func TestWriteIdleStreaming(t *testing.T) {
	const writeIdle = 300 * time.Millisecond
	l := BodyLimits{IdleTimeout: writeIdle, MinRate: 100, WriteIdleTimeout: writeIdle}
	for _, tc := range []struct {
		name   string
		events int
		every  time.Duration
	}{
		{"regular", 15, 100 * time.Millisecond},
		{"quiet", 3, 700 * time.Millisecond},
	} {
		for _, h2 := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/HTTP2 %v", tc.name, h2), func(t *testing.T) {
				t.Parallel()
				errs := make(chan error, 1)
				ts := httptest.NewUnstartedServer(l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "text/event-stream")
					var err error
					for i := range tc.events {
						if i > 0 {
							time.Sleep(tc.every)
						}
						if _, err = fmt.Fprintf(w, "data: %d\n\n", i); err != nil {
							break
						}
						if err = http.NewResponseController(w).Flush(); err != nil {
							break
						}
					}
					errs <- err
				})))
				ts.EnableHTTP2 = h2
				if h2 {
					ts.StartTLS()
				} else {
					ts.Start()
				}
				t.Cleanup(ts.Close)
				client := ts.Client()
				client.Timeout = 2 * clientDeadline
				resp, err := client.Get(ts.URL)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if h2 != (resp.ProtoMajor == 2) {
					t.Fatalf("protocol %s", resp.Proto)
				}
				sc := bufio.NewScanner(resp.Body)
				got := 0
				for sc.Scan() {
					if line := sc.Text(); strings.HasPrefix(line, "data: ") {
						if line != "data: "+strconv.Itoa(got) {
							t.Fatalf("event %q, want %d", line, got)
						}
						got++
					}
				}
				if err := sc.Err(); err != nil || got != tc.events {
					t.Errorf("%d events of %d, then %v", got, tc.events, err)
				}
				if err := <-errs; err != nil {
					t.Errorf("handler: %v", err)
				}
			})
		}
	}
}

// TestAnswerLeftAlone: Handler passes the request and the ResponseWriter
// themselves where it has nothing to do, and nested Handlers keep the
// outer ResponseWriter and body.
func TestAnswerLeftAlone(t *testing.T) {
	post := func(cl int64, body io.ReadCloser) func() *http.Request {
		return func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.Body, r.ContentLength = body, cl
			return r
		}
	}
	h2 := func(r *http.Request) *http.Request { r.ProtoMajor, r.ProtoMinor, r.Proto = 2, 0, "HTTP/2.0"; return r }
	for _, tc := range []struct {
		name   string
		limits BodyLimits
		req    func() *http.Request
	}{
		{"limits off, no body", BodyLimits{}, post(0, http.NoBody)},
		{"limits off, nil body", BodyLimits{}, post(0, nil)},
		{"limits off, HTTP/2 body", BodyLimits{}, func() *http.Request { return h2(post(1, io.NopCloser(strings.NewReader("x")))()) }},
		{"negative timeouts, no body", BodyLimits{IdleTimeout: -time.Second, WriteIdleTimeout: -time.Second}, post(0, http.NoBody)},
		{"body limits, no body", BodyLimits{IdleTimeout: time.Second}, post(0, http.NoBody)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.req()
			rec := httptest.NewRecorder()
			called := false
			tc.limits.Handler(http.HandlerFunc(func(w http.ResponseWriter, got *http.Request) {
				called = true
				if got != r || w != http.ResponseWriter(rec) {
					t.Errorf("request or ResponseWriter replaced: %T, %T", got.Body, w)
				}
			})).ServeHTTP(rec, r)
			if !called {
				t.Error("next not called")
			}
		})
	}
	t.Run("nested", func(t *testing.T) {
		r := post(1, io.NopCloser(strings.NewReader("x")))()
		var outerW http.ResponseWriter
		var outerBody io.ReadCloser
		inner := BodyLimits{IdleTimeout: time.Second, WriteIdleTimeout: time.Second}.Handler(http.HandlerFunc(func(w http.ResponseWriter, got *http.Request) {
			if w != outerW || got.Body != outerBody {
				t.Errorf("the inner Handler replaced the ResponseWriter (%T) or the body (%T)", w, got.Body)
			}
		}))
		BodyLimits{IdleTimeout: time.Second, WriteIdleTimeout: time.Second}.Handler(http.HandlerFunc(func(w http.ResponseWriter, got *http.Request) {
			outerW, outerBody = w, got.Body
			if _, ok := got.Body.(*body); !ok {
				t.Errorf("body %T, want limited", got.Body)
			}
			inner.ServeHTTP(w, got)
		})).ServeHTTP(httptest.NewRecorder(), r)
	})
}

// TestAnswerCloseDecision: the Connection: close of an HTTP/1.1 answer
// follows the body's state at the first WriteHeader, Write or Flush (not
// at an informational 1xx), or when the handler returns.
func TestAnswerCloseDecision(t *testing.T) {
	for _, tc := range []struct {
		name      string
		handle    func(w http.ResponseWriter, r *http.Request)
		wantClose bool
	}{
		{"read to EOF, then written", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			_, _ = io.WriteString(w, "ok")
		}, false},
		{"written, then read to EOF", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "ok")
			_, _ = io.ReadAll(r.Body)
		}, true},
		{"103 Early Hints, then read to EOF, then written", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			_, _ = io.ReadAll(r.Body)
			w.WriteHeader(http.StatusOK)
		}, false},
		{"read to EOF, nothing written", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
		}, false},
		{"nothing read, nothing written", func(w http.ResponseWriter, r *http.Request) {}, true},
		{"read in part, then flushed", func(w http.ResponseWriter, r *http.Request) {
			_, _ = r.Body.Read(make([]byte, 1))
			w.(http.Flusher).Flush()
		}, true},
		{"read failed", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			_, _ = io.WriteString(w, "ok")
		}, true},
	} {
		for _, l := range []BodyLimits{{}, {IdleTimeout: time.Second, WriteIdleTimeout: time.Second}} {
			t.Run(fmt.Sprintf("%s/limits %v", tc.name, l.IdleTimeout > 0), func(t *testing.T) {
				var rc io.ReadCloser = io.NopCloser(strings.NewReader("body"))
				if strings.HasPrefix(tc.name, "read failed") {
					rc = io.NopCloser(io.MultiReader(strings.NewReader("bo"), errReader{}))
				}
				r := httptest.NewRequest(http.MethodPost, "/", nil)
				r.Body, r.ContentLength = rc, 4
				w := &snapWriter{h: make(http.Header)}
				l.Handler(http.HandlerFunc(tc.handle)).ServeHTTP(w, r)
				if !w.final { // net/http writes the header when the handler returns
					w.conn = w.h.Get("Connection")
				}
				if got := w.conn == "close"; got != tc.wantClose {
					t.Errorf("Connection: close %v, want %v", got, tc.wantClose)
				}
			})
		}
	}
}

// snapWriter records the Connection header as the final header is
// written, the way net/http copies the header map at that moment.
type snapWriter struct {
	h     http.Header
	final bool
	conn  string
}

func (w *snapWriter) Header() http.Header { return w.h }

func (w *snapWriter) WriteHeader(code int) {
	if code >= 200 && !w.final {
		w.final, w.conn = true, w.h.Get("Connection")
	}
}

func (w *snapWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}

func (w *snapWriter) Flush() { w.WriteHeader(http.StatusOK) }

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }
