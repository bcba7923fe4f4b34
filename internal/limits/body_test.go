package limits

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// testIdle keeps every test short; the trickles below are paced against it.
const testIdle = 300 * time.Millisecond

// readResult is what a handler saw reading its body.
type readResult struct {
	n       int64
	sum     [sha256.Size]byte
	err     error
	elapsed time.Duration
}

// readingHandler reads the whole body, reports it, and answers the way
// ioproxy's handlers are meant to: 408 for ErrBodyTooSlow.
func readingHandler(results chan<- readResult) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		res := readResult{n: n, err: err, elapsed: time.Since(start)}
		copy(res.sum[:], h.Sum(nil))
		results <- res
		switch {
		case errors.Is(err, ErrBodyTooSlow):
			http.Error(w, "request body too slow", http.StatusRequestTimeout)
		case err != nil:
			http.Error(w, err.Error(), http.StatusBadRequest)
		default:
			_, _ = fmt.Fprint(w, n)
		}
	})
}

func result(t *testing.T, results <-chan readResult) readResult {
	t.Helper()
	select {
	case res := <-results:
		return res
	case <-time.After(2 * clientDeadline):
		t.Fatal("the handler never finished reading")
		return readResult{}
	}
}

// trickle is a client sending a request body at its own pace.
type trickle struct {
	chunked bool
	size    int           // declared Content-Length, when not chunked
	first   int           // bytes sent with the headers
	every   time.Duration // then chunk bytes (one if 0) per every
	chunk   int
	upTo    int // bytes sent in all, then silence
}

// send writes the request on c, the body in a goroutine that stops at the
// end of the test or at the first write error.
func (tr trickle) send(t *testing.T, c *rawClient) {
	t.Helper()
	head := "POST / HTTP/1.1\r\nHost: limits.test\r\n"
	if tr.chunked {
		head += "Transfer-Encoding: chunked\r\n\r\n"
	} else {
		head += "Content-Length: " + strconv.Itoa(tr.size) + "\r\n\r\n"
	}
	piece := func(n int) string {
		if tr.chunked {
			return fmt.Sprintf("%x\r\n%s\r\n", n, strings.Repeat("x", n))
		}
		return strings.Repeat("x", n)
	}
	if tr.first > 0 {
		head += piece(tr.first)
	}
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatalf("write request: %v", err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	t.Cleanup(func() { close(stop); <-done })
	go func() {
		defer close(done)
		tick := time.NewTicker(tr.every)
		defer tick.Stop()
		chunk := max(tr.chunk, 1)
		for sent := tr.first; sent < tr.upTo; sent += chunk {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := io.WriteString(c, piece(min(chunk, tr.upTo-sent))); err != nil {
				return
			}
		}
		if tr.chunked && tr.upTo == tr.size {
			_, _ = io.WriteString(c, "0\r\n\r\n")
		}
	}()
}

// TestBodyProgress: over real HTTP/1.1 connections, a body that trickles
// below MinRate or stalls for IdleTimeout fails with ErrBodyTooSlow (the
// handler answers 408 and the connection is closed, though the client
// keeps sending), not before the grace period and within a bounded time;
// a slow body that keeps making progress passes when the rate check is off,
// and a steady body above MinRate passes with it on. A burst buys no
// credit for a trickle after it: the trickle fails within about two
// windows of IdleTimeout, where an average over the whole body would let
// it go on for half a minute.
//
// Where a stall must not happen the client's pace is 40 times shorter than
// IdleTimeout, so that a loaded machine (the tests run beside others under
// -race) does not turn a trickle into a stall.
func TestBodyProgress(t *testing.T) {
	const slowPace = 50 * time.Millisecond
	const paced = 40 * slowPace
	for _, tc := range []struct {
		name     string
		limits   BodyLimits
		body     trickle
		wantSlow bool
		by       string // what fails it: "rate", "deadline", or "" for either
		windows  int    // if not 0, it fails within this many IdleTimeouts (and a pace)
	}{
		{"trickle, 300ms and 100 B/s", BodyLimits{IdleTimeout: testIdle, MinRate: 100}, trickle{size: 1000, every: slowPace, upTo: 1000}, true, "", 0},
		{"trickle below MinRate", BodyLimits{IdleTimeout: paced, MinRate: 100}, trickle{size: 1000, every: slowPace, upTo: 1000}, true, "rate", 0},
		{"chunked trickle below MinRate", BodyLimits{IdleTimeout: paced, MinRate: 100}, trickle{chunked: true, size: 1000, every: slowPace, upTo: 1000}, true, "rate", 0},
		{"stall after some bytes", BodyLimits{IdleTimeout: testIdle, MinRate: 100}, trickle{size: 1000, first: 10, every: time.Millisecond, upTo: 10}, true, "deadline", 0},
		{"stall, no rate check", BodyLimits{IdleTimeout: testIdle}, trickle{size: 1000, first: 10, every: time.Millisecond, upTo: 10}, true, "deadline", 0},
		{"no byte at all", BodyLimits{IdleTimeout: testIdle, MinRate: 100}, trickle{size: 1000, every: time.Millisecond}, true, "deadline", 0},
		{"chunked stall", BodyLimits{IdleTimeout: testIdle}, trickle{chunked: true, size: 1000, first: 10, every: time.Millisecond, upTo: 10}, true, "deadline", 0},
		// 3000 bytes pay for 30 s at 100 B/s: the old average let the
		// trickle on for 31 s.
		{"burst, then a trickle", BodyLimits{IdleTimeout: 500 * time.Millisecond, MinRate: 100}, trickle{size: 10000, first: 3000, every: 200 * time.Millisecond, upTo: 10000}, true, "", 3},
		{"burst, then a trickle below MinRate", BodyLimits{IdleTimeout: paced, MinRate: 100}, trickle{size: 100000, first: 3000, every: slowPace, upTo: 100000}, true, "rate", 3},
		{"steady 1 KB/s", BodyLimits{IdleTimeout: paced, MinRate: 100}, trickle{size: 3000, every: slowPace, chunk: 50, upTo: 3000}, false, "", 0},
		{"slow but steady, no rate check", BodyLimits{IdleTimeout: paced}, trickle{size: 8, every: slowPace, upTo: 8}, false, "", 0},
		{"chunked slow but steady, no rate check", BodyLimits{IdleTimeout: paced}, trickle{chunked: true, size: 8, every: slowPace, upTo: 8}, false, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			results := make(chan readResult, 1)
			addr := serve(t, &http.Server{Handler: tc.limits.Handler(readingHandler(results)), ReadHeaderTimeout: 10 * time.Second})
			c := dialRaw(t, addr)
			tc.body.send(t, c)
			res := result(t, results)
			if !tc.wantSlow {
				if res.err != nil || res.n != int64(tc.body.upTo) {
					t.Fatalf("read %d bytes, %v; want %d, nil", res.n, res.err, tc.body.upTo)
				}
				if resp, body := c.readResponse(t); resp.StatusCode != http.StatusOK || body != strconv.Itoa(tc.body.upTo) {
					t.Fatalf("answer %d %q", resp.StatusCode, body)
				}
				return
			}
			if !errors.Is(res.err, ErrBodyTooSlow) {
				t.Fatalf("read %d bytes, %v; want ErrBodyTooSlow", res.n, res.err)
			}
			if stalled := errors.Is(res.err, os.ErrDeadlineExceeded); tc.by != "" && stalled != (tc.by == "deadline") {
				t.Errorf("%v: want it failed by the %s", res.err, tc.by)
			}
			idle := tc.limits.IdleTimeout
			if res.elapsed < idle {
				t.Errorf("failed after %s, within the grace of %s", res.elapsed, idle)
			}
			// Without the limits the trickles would take 50s, the stalls
			// until the client gives up; the margin is for loaded machines.
			if res.elapsed > idle+clientDeadline {
				t.Errorf("failed only after %s, want about %s", res.elapsed, idle)
			}
			if w := time.Duration(tc.windows) * idle; tc.windows > 0 && res.elapsed > w+tc.body.every+time.Second {
				t.Errorf("failed only after %s, want within %d windows of %s", res.elapsed, tc.windows, idle)
			}
			resp, _ := c.readResponse(t)
			if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
				t.Errorf("answer %d, close %v; want 408 and the connection closed", resp.StatusCode, resp.Close)
			}
			c.closedByServer(t)
		})
	}
}

// TestBodyEOFKeepsContext: once the body has been read to its end (or
// closed, or there is none), the handler may work longer than IdleTimeout:
// its context is not cancelled and its answer reaches the client. The
// connection is reused for the next request when the body was read to its
// end; when it was not, the answer closes it (Connection: close), and the
// next request gets a new one.
func TestBodyEOFKeepsContext(t *testing.T) {
	// Long enough that a fast body over loopback never stalls for it,
	// even under -race on a loaded machine.
	const idle = 500 * time.Millisecond
	type read func(t *testing.T, r *http.Request)
	toEOF := func(t *testing.T, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			t.Errorf("read body: %v", err)
		}
	}
	for _, tc := range []struct {
		name    string
		method  string
		read    read
		chunked bool
		closes  bool // the body is left unread: the answer closes the connection
	}{
		{name: "Handler, Content-Length", method: http.MethodPost, read: toEOF},
		{name: "Handler, chunked", method: http.MethodPost, read: toEOF, chunked: true},
		{name: "read again after EOF", method: http.MethodPost, read: func(t *testing.T, r *http.Request) {
			toEOF(t, r)
			for range 3 {
				if n, err := r.Body.Read(make([]byte, 10)); n != 0 || err != io.EOF {
					t.Errorf("read after EOF: %d, %v", n, err)
				}
			}
		}},
		{name: "read in part, then Close", method: http.MethodPost, read: func(t *testing.T, r *http.Request) {
			if _, err := io.ReadFull(r.Body, make([]byte, 10)); err != nil {
				t.Errorf("read body: %v", err)
			}
			if err := r.Body.Close(); err != nil {
				t.Errorf("close body: %v", err)
			}
		}, closes: true},
		{name: "read in part, then return", method: http.MethodPost, read: func(t *testing.T, r *http.Request) {
			if _, err := io.ReadFull(r.Body, make([]byte, 10)); err != nil {
				t.Errorf("read body: %v", err)
			}
		}, closes: true},
		{name: "no body", method: http.MethodGet, read: toEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := BodyLimits{IdleTimeout: idle, MinRate: 100}
			h := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				tc.read(t, r)
				select {
				case <-r.Context().Done():
					t.Errorf("request context cancelled: %v", context.Cause(r.Context()))
					return
				case <-time.After(2 * idle): // the work of a slow backend
				}
				_, _ = io.WriteString(w, "answer")
			}))
			addr := serve(t, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
			client := &http.Client{Timeout: clientDeadline, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			for i := range 2 {
				var body io.Reader
				if tc.method == http.MethodPost {
					// Larger than net/http's 4 KiB read buffer, so that
					// what the handler leaves unread is on the connection.
					body = bytes.NewReader(bytes.Repeat([]byte("b"), 64<<10))
					if tc.chunked {
						body = io.MultiReader(body) // no length: chunked
					}
				}
				req, err := http.NewRequest(tc.method, "http://"+addr+"/", body)
				if err != nil {
					t.Fatal(err)
				}
				reused := false
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
					GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
				}))
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				got, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || string(got) != "answer" {
					t.Fatalf("request %d: %d %q %v, want 200 answer", i, resp.StatusCode, got, err)
				}
				if resp.Close != tc.closes {
					t.Errorf("request %d: Connection: close %v, want %v", i, resp.Close, tc.closes)
				}
				if i == 1 && reused == tc.closes {
					t.Errorf("the second request reused the connection: %v, want %v", reused, !tc.closes)
				}
			}
		})
	}
}

// TestBodyReverseProxy: in ioproxy's own shape (Handler around a
// ReverseProxy), a fast body reaches a backend that answers after more
// than IdleTimeout, and its answer reaches the client; a trickled body
// fails the proxied request with an error that errors.Is ErrBodyTooSlow
// in the ErrorHandler, which answers 408.
func TestBodyReverseProxy(t *testing.T) {
	// A second, not less: on a loaded CI machine one Read of a fast body
	// can wait half a second for the CPU, which the proxy rightly counts
	// as a stall.
	const idle = time.Second
	backend := serve(t, &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return // the proxy gave up on the body
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(idle + idle/2):
		}
		_, _ = fmt.Fprintf(w, "backend read %d", n)
	})})
	target, err := url.Parse("http://" + backend)
	if err != nil {
		t.Fatal(err)
	}
	proxyErrs := make(chan error, 1)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		proxyErrs <- err
		if errors.Is(err, ErrBodyTooSlow) {
			http.Error(w, "request body too slow", http.StatusRequestTimeout)
			return
		}
		http.Error(w, err.Error(), http.StatusBadGateway)
	}
	l := BodyLimits{IdleTimeout: idle, MinRate: 100}
	front := serve(t, &http.Server{Handler: l.Handler(rp), ReadHeaderTimeout: 10 * time.Second})

	t.Run("fast body, slow backend", func(t *testing.T) {
		client := &http.Client{Timeout: clientDeadline, Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		resp, err := client.Post("http://"+front+"/", "application/octet-stream", bytes.NewReader(make([]byte, 64<<10)))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != "backend read 65536" {
			t.Fatalf("%d %q, want the backend's answer", resp.StatusCode, got)
		}
	})
	for _, tr := range []trickle{
		{size: 1000, every: 50 * time.Millisecond, upTo: 1000},
		{size: 1000, first: 10, every: time.Millisecond, upTo: 10},
	} {
		t.Run(fmt.Sprintf("trickled body, %d bytes then silence", tr.upTo), func(t *testing.T) {
			c := dialRaw(t, front)
			tr.send(t, c)
			select {
			case err := <-proxyErrs:
				if !errors.Is(err, ErrBodyTooSlow) {
					t.Errorf("proxy error %v, want ErrBodyTooSlow", err)
				}
			case <-time.After(clientDeadline):
				t.Fatal("the proxy never gave up")
			}
			if resp, _ := c.readResponse(t); resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("answer %d, want 408", resp.StatusCode)
			}
		})
	}
}

// TestBodyLarge: a fast body of several MB passes intact, with a length
// and chunked.
func TestBodyLarge(t *testing.T) {
	payload := make([]byte, 8<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(payload)
	results := make(chan readResult, 1)
	l := BodyLimits{IdleTimeout: 5 * time.Second, MinRate: 64 << 10}
	addr := serve(t, &http.Server{Handler: l.Handler(readingHandler(results)), ReadHeaderTimeout: 10 * time.Second})
	for _, tc := range []struct {
		name string
		body io.Reader
	}{
		{"Content-Length", bytes.NewReader(payload)},
		{"chunked", io.MultiReader(bytes.NewReader(payload))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := &http.Client{Timeout: 2 * clientDeadline, Transport: &http.Transport{}}
			defer client.CloseIdleConnections()
			resp, err := client.Post("http://"+addr+"/", "application/octet-stream", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			res := result(t, results)
			if res.err != nil || res.n != int64(len(payload)) || res.sum != want {
				t.Fatalf("read %d bytes, %v, same sum %v", res.n, res.err, res.sum == want)
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
		})
	}
}

// TestBodyHTTP2: over HTTP/2 (where the deadline is the stream's, not the
// connection's) a large body passes, a finished body leaves the context
// alone, and trickles and stalls fail with ErrBodyTooSlow.
func TestBodyHTTP2(t *testing.T) {
	const idle = 500 * time.Millisecond
	results := make(chan readResult, 1)
	l := BodyLimits{IdleTimeout: idle, MinRate: 100}
	waitAfterEOF := func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			t.Errorf("read body: %v", err)
		}
		select {
		case <-r.Context().Done():
			t.Errorf("request context cancelled: %v", context.Cause(r.Context()))
			return
		case <-time.After(2 * idle):
		}
		_, _ = io.WriteString(w, "answer")
	}
	tight := l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/wait" {
			waitAfterEOF(w, r)
			return
		}
		readingHandler(results).ServeHTTP(w, r)
	}))
	// A large body over HTTP/2 under -race on a loaded machine can pause
	// for longer than a tight IdleTimeout; it only has to pass intact.
	generous := BodyLimits{IdleTimeout: 5 * time.Second, MinRate: 100}.Handler(readingHandler(results))
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("protocol %s, want HTTP/2", r.Proto)
		}
		if r.URL.Path == "/large" {
			generous.ServeHTTP(w, r)
			return
		}
		tight.ServeHTTP(w, r)
	}))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	client := ts.Client()
	client.Timeout = 2 * clientDeadline

	t.Run("large body", func(t *testing.T) {
		payload := make([]byte, 4<<20)
		if _, err := rand.Read(payload); err != nil {
			t.Fatal(err)
		}
		resp, err := client.Post(ts.URL+"/large", "application/octet-stream", bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if res := result(t, results); res.err != nil || res.sum != sha256.Sum256(payload) {
			t.Fatalf("read %d bytes, %v", res.n, res.err)
		}
	})
	t.Run("work after EOF", func(t *testing.T) {
		resp, err := client.Post(ts.URL+"/wait", "text/plain", strings.NewReader(strings.Repeat("b", 1000)))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != "answer" {
			t.Fatalf("%d %q, want 200 answer", resp.StatusCode, got)
		}
	})
	for _, tc := range []struct {
		name  string
		first int
		upTo  int
	}{
		{"trickle below MinRate", 0, 1000},
		{"stall", 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, pw := io.Pipe()
			stop := make(chan struct{})
			done := make(chan struct{})
			defer func() { close(stop); _ = pw.Close(); <-done }()
			go func() {
				defer close(done)
				if _, err := pw.Write(make([]byte, tc.first)); err != nil {
					return
				}
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for sent := tc.first; sent < tc.upTo; sent++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := pw.Write([]byte{'x'}); err != nil {
						return
					}
				}
				<-stop
			}()
			req, err := http.NewRequest(http.MethodPost, ts.URL, pr)
			if err != nil {
				t.Fatal(err)
			}
			req.ContentLength = 1000
			resp, err := client.Do(req)
			res := result(t, results)
			if !errors.Is(res.err, ErrBodyTooSlow) {
				t.Errorf("read %d bytes, %v; want ErrBodyTooSlow", res.n, res.err)
			}
			if err != nil {
				t.Fatalf("request: %v", err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("status %d, want 408", resp.StatusCode)
			}
		})
	}
}

// TestBodyWithoutDeadlines: behind a ResponseWriter wrapper without Unwrap,
// SetReadDeadline is not supported; a trickle still fails the rate check.
func TestBodyWithoutDeadlines(t *testing.T) {
	results := make(chan readResult, 1)
	l := BodyLimits{IdleTimeout: testIdle, MinRate: 100}
	limited := l.Handler(readingHandler(results))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hidden := struct{ http.ResponseWriter }{w}
		if err := http.NewResponseController(hidden).SetReadDeadline(time.Time{}); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("SetReadDeadline behind the wrapper: %v, want ErrNotSupported", err)
		}
		limited.ServeHTTP(hidden, r)
	})
	addr := serve(t, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
	c := dialRaw(t, addr)
	trickle{size: 1000, every: 50 * time.Millisecond, upTo: 1000}.send(t, c)
	if res := result(t, results); !errors.Is(res.err, ErrBodyTooSlow) || errors.Is(res.err, os.ErrDeadlineExceeded) {
		t.Fatalf("read %d bytes, %v; want ErrBodyTooSlow from the rate check", res.n, res.err)
	}
}

// TestBodyLeftAlone: Handler passes the request itself where it has
// nothing to do, and nested Handlers keep the outer limits.
func TestBodyLeftAlone(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits BodyLimits
		body   io.ReadCloser
	}{
		{"limits off", BodyLimits{}, io.NopCloser(strings.NewReader("x"))},
		{"negative timeout", BodyLimits{IdleTimeout: -time.Second}, io.NopCloser(strings.NewReader("x"))},
		{"no body", BodyLimits{IdleTimeout: time.Second}, http.NoBody},
		{"nil body", BodyLimits{IdleTimeout: time.Second}, nil},
		{"already limited", BodyLimits{IdleTimeout: time.Second}, &body{rc: http.NoBody}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			r.Body = tc.body
			called := false
			tc.limits.Handler(http.HandlerFunc(func(w http.ResponseWriter, got *http.Request) {
				called = true
				if got != r || got.Body != tc.body {
					t.Errorf("request replaced, body %T", got.Body)
				}
			})).ServeHTTP(httptest.NewRecorder(), r)
			if !called {
				t.Error("next not called")
			}
		})
	}
}

// TestBodyEarlyClose: a handler that stops reading a large body (closing it,
// as a Transport does when the backend answers early, or not) leaves the
// connection unusable: what is left of the body, whatever it looks like,
// is never served as a request. Handler keeps the server's own request,
// and the type of its Body that net/http checks, untouched for this.
func TestBodyEarlyClose(t *testing.T) {
	for _, closeIt := range []bool{false, true} {
		t.Run(map[bool]string{false: "left open", true: "closed"}[closeIt], func(t *testing.T) {
			var served atomic.Int32
			l := BodyLimits{IdleTimeout: 5 * time.Second, MinRate: 100}
			addr := serve(t, &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				served.Add(1)
				if _, err := io.ReadFull(r.Body, make([]byte, 10)); err != nil {
					t.Errorf("read body: %v", err)
				}
				if closeIt {
					_ = r.Body.Close()
				}
				_, _ = io.WriteString(w, r.URL.Path)
			}))})
			body := strings.Repeat("x", 300<<10) + "GET /smuggled HTTP/1.1\r\nHost: limits.test\r\n\r\n"
			c := dialRaw(t, addr)
			wrote := make(chan struct{})
			go func() {
				defer close(wrote)
				_, _ = fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: limits.test\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			}()
			defer func() { <-wrote }() // the write fails once the server closes, or at the client's deadline
			resp, got := c.readResponse(t)
			if resp.StatusCode != http.StatusOK || got != "/upload" || !resp.Close {
				t.Errorf("answer %d %q, close %v; want 200 /upload and the connection closed", resp.StatusCode, got, resp.Close)
			}
			c.closedByServer(t)
			if n := served.Load(); n != 1 {
				t.Errorf("%d requests served, want 1", n)
			}
		})
	}
}

// TestErrBodyTooSlowWrapped: the error a Read returns is ErrBodyTooSlow
// through any wrapping that keeps %w chains (net/http's Transport,
// url.Error), and says what happened. It runs in a synctest bubble: the
// client's pauses pass on the fake clock, so each Read takes exactly twice
// IdleTimeout, at once.
func TestErrBodyTooSlowWrapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := BodyLimits{IdleTimeout: 10 * time.Millisecond, MinRate: 1 << 30}
		r := httptest.NewRequest(http.MethodPost, "/", io.NopCloser(slowReader{wait: 20 * time.Millisecond}))
		var err, again error
		l.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, err = io.ReadAll(r.Body)
			_, again = r.Body.Read(make([]byte, 1))
		})).ServeHTTP(httptest.NewRecorder(), r)
		for _, e := range []error{
			err,
			fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", err),
			&url.Error{Op: "Post", URL: "http://backend/", Err: err},
		} {
			if !errors.Is(e, ErrBodyTooSlow) {
				t.Errorf("%v is not ErrBodyTooSlow", e)
			}
		}
		if err == nil || !strings.Contains(err.Error(), "bytes/s") {
			t.Errorf("error %v does not say the rate", err)
		}
		if again != err {
			t.Errorf("read after the failure: %v, want the same error", again)
		}
	})
}

// slowReader is a client that sends one byte per wait. Used inside a
// synctest bubble, its sleep is on the fake clock.
type slowReader struct{ wait time.Duration }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(s.wait)
	return copy(p, "x"), nil
}
