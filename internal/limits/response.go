package limits

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// drainGrace is how long net/http may go on reading an unread request
// body after an answer with Connection: close has been sent (it does so
// hoping to close the connection cleanly): as long as net/http itself
// waits before closing a connection whose client may still be sending, so
// that a client sending fast gets a clean close, not a reset that can
// destroy the answer before the client has read it.
const drainGrace = 500 * time.Millisecond

// responseWriter is the ResponseWriter that BodyLimits.Handler gives next:
// it makes an answer to an unread HTTP/1.x body close the connection, and
// fails Writes that the client blocks for longer than writeIdle.
//
// Its methods are called from the handler's goroutine, or from others
// that the handler orders (a ReverseProxy flushes from a timer, under its
// own lock); watch runs on a timer of its own, hence mu.
type responseWriter struct {
	http.ResponseWriter
	ctl       *http.ResponseController // of the ResponseWriter below
	body      *body                    // the request body, when an unread one would be read after the answer
	writeIdle time.Duration

	decided bool // the final header is on its way: Connection is set
	closing bool // it says Connection: close, for an unread body

	// Writes in progress, for watch: seq is odd while a Write, a Flush or
	// an informational header is in progress, and counts them; armed is
	// set while watch is scheduled.
	seq   atomic.Uint64
	armed atomic.Bool

	mu       sync.Mutex
	timer    *time.Timer // runs watch; created by the first Write
	seen     uint64      // the seq of the Write in progress at the last tick
	ticks    int         // how many ticks in a row have seen it
	stopped  bool        // watch must not touch the connection any more
	hijacked bool
	killed   bool // watch set the write deadline in the past
}

// watchTicks is how many times a WriteIdleTimeout watch looks at the
// Writes in progress: a Write is failed once blocked for between
// WriteIdleTimeout and a quarter more.
const watchTicks = 4

// h1Writer is the responseWriter of an HTTP/1.x request: only there is
// the ResponseWriter below a Hijacker, and code that asks w.(http.Hijacker)
// must keep getting the same answer.
type h1Writer struct{ *responseWriter }

// Hijack passes the hijack on and then leaves the connection alone: it is
// the handler's now, and net/http has cleared its deadlines.
func (w h1Writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c, brw, err := w.ctl.Hijack()
	if err == nil {
		w.hijacked = true
		w.stopLocked()
	}
	return c, brw, err
}

// isOurs reports whether w is, or wraps, an outer Handler's responseWriter.
func isOurs(w http.ResponseWriter) bool {
	for {
		switch v := w.(type) {
		case *responseWriter, h1Writer:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = v.Unwrap()
		default:
			return false
		}
	}
}

// Unwrap returns the ResponseWriter below, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *responseWriter) WriteHeader(code int) {
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		// Informational: net/http writes it at once, and a final header
		// is still to come.
		w.begin()
		w.ResponseWriter.WriteHeader(code)
		w.end()
		return
	}
	if !w.decided {
		w.decide()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.decided {
		w.decide()
	}
	w.begin()
	n, err := w.ResponseWriter.Write(p)
	w.end()
	return n, err
}

// FlushError is what http.ResponseController's Flush calls.
func (w *responseWriter) FlushError() error {
	if !w.decided {
		w.decide()
	}
	w.begin()
	err := w.ctl.Flush()
	w.end()
	return err
}

// Flush makes the writer an http.Flusher, which admin.StatusWriter and
// older streaming code ask for.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// decide adds Connection: close to the final header when the request body
// has not been read to its end: net/http would otherwise read the rest
// (up to 256 KiB) before sending the answer, at the client's pace. A body
// whose Read failed gets it too: what is left of it on the connection
// must not be read as the next request.
func (w *responseWriter) decide() {
	w.decided = true
	if w.body != nil && w.body.state() != bodyEOF {
		w.ResponseWriter.Header().Set("Connection", "close")
		w.closing = true
	}
}

// clearStaleDeadline clears the write deadline finish left on an HTTP/1.x
// connection for the previous request's last flush: net/http writes on
// its own before the first Write (a 100 Continue), and would fail.
func (w *responseWriter) clearStaleDeadline() {
	if err := w.ctl.SetWriteDeadline(time.Time{}); err != nil {
		w.writeIdle = 0 // not supported: there is nothing to watch with
	}
}

// begin marks a Write in progress for watch: two atomic operations
// (three with end) a Write. Moving the write deadline before each Write
// instead would cost a system call (on HTTP/2, a message to the
// connection's goroutine), and a clock read, which on some virtual
// machines costs as much.
func (w *responseWriter) begin() {
	if w.writeIdle <= 0 {
		return
	}
	w.seq.Add(1)
	if !w.armed.Load() && w.armed.CompareAndSwap(false, true) {
		w.arm()
	}
}

func (w *responseWriter) end() {
	if w.writeIdle > 0 {
		w.seq.Add(1)
	}
}

func (w *responseWriter) arm() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if w.timer == nil {
		w.timer = time.AfterFunc(w.writeIdle/watchTicks, w.watch)
		return
	}
	w.timer.Reset(w.writeIdle / watchTicks)
}

// watch runs every WriteIdleTimeout/watchTicks while Writes go on, and
// fails the Write in progress once watchTicks+1 ticks in a row have seen
// it (it has been blocked for WriteIdleTimeout at least) by setting the
// write deadline in the past: on HTTP/1.x the Write returns a timeout, on
// HTTP/2 the stream is reset at once. It stops ticking while no Write is
// in progress, so that a quiet answer costs nothing.
func (w *responseWriter) watch() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	s := w.seq.Load()
	if s%2 == 0 {
		w.ticks = 0
		w.armed.Store(false)
		// A Write that began before the Store saw armed still set and
		// left the arming to us.
		if w.seq.Load() != s && w.armed.CompareAndSwap(false, true) {
			w.timer.Reset(w.writeIdle / watchTicks)
		}
		return
	}
	if s != w.seen {
		w.seen, w.ticks = s, 0
	}
	w.ticks++
	if w.ticks > watchTicks {
		_ = w.ctl.SetWriteDeadline(time.Unix(1, 0))
		w.killed = true
		w.stopLocked()
		return
	}
	w.timer.Reset(w.writeIdle / watchTicks)
}

func (w *responseWriter) stopLocked() {
	w.stopped = true
	if w.timer != nil {
		w.timer.Stop()
	}
}

// finish runs when next has returned, before net/http sends what is left
// of the answer and reads what is left of the body. After it the
// ResponseWriter below may be gone (net/http's HTTP/2 one is recycled), so
// watch is stopped first.
func (w *responseWriter) finish() {
	w.mu.Lock()
	w.stopLocked()
	hijacked, killed := w.hijacked, w.killed
	w.mu.Unlock()
	if hijacked {
		return
	}
	if !w.decided {
		w.decide() // net/http writes the header now, from the same map
	}
	if w.closing && w.body.detach() {
		// net/http reads the rest of the body before closing, up to 256
		// KiB at the client's pace; a failed body has its read side timed
		// out already (or broken), and must not get more time.
		_ = w.ctl.SetReadDeadline(time.Now().Add(drainGrace))
	}
	if w.writeIdle > 0 && !killed {
		// The last flush, and the last chunk of a chunked answer, are
		// written after the handler returns, with no Write to watch.
		_ = w.ctl.SetWriteDeadline(time.Now().Add(w.writeIdle))
	}
}
