package limits

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// ErrBodyTooSlow is the error of a request body read that waited longer
// than BodyLimits.IdleTimeout for a byte, or whose rate fell below
// BodyLimits.MinRate. Answer it with 408 Request Timeout. Errors that
// wrap it also wrap the cause (os.ErrDeadlineExceeded for a stall).
var ErrBodyTooSlow = errors.New("request body too slow")

// BodyLimits are the progress a request body must make, and the progress
// a client must let its answer make.
type BodyLimits struct {
	// IdleTimeout is how long one Read may wait for data, and the window
	// of the rate check. Zero (or less) disables both limits.
	IdleTimeout time.Duration
	// MinRate is the least rate, in bytes a second, of a body over each
	// IdleTimeout its Reads spend waiting: the bytes of every such
	// window must reach MinRate × IdleTimeout. A window's surplus is not
	// carried over, so that a burst cannot buy a long trickle after it.
	// Zero (or less) disables the rate check.
	//
	// The windows count the time spent inside Read, not the time since
	// the first Read: a proxy whose backend takes the body slowly reads it
	// slowly, and that must not be blamed on the client.
	MinRate int64
	// WriteIdleTimeout is how long one Write or Flush of the answer may
	// stay blocked because the client does not take the bytes (a full
	// TCP window, an HTTP/2 flow-control window it never opens); then
	// the Write fails (after at most a quarter more: it is checked four
	// times a WriteIdleTimeout), and on HTTP/2 the stream is reset. It
	// also bounds the flush net/http makes after the handler returns. An
	// answer that goes quiet between writes (a stream of events, a long
	// poll) is not affected, however long the quiet. On HTTP/1.x it
	// replaces http.Server.WriteTimeout. Zero (or less) disables it.
	WriteIdleTimeout time.Duration
}

// Handler passes next each request with a body that fails with
// ErrBodyTooSlow when it stalls or trickles, so that next can answer 408,
// and a ResponseWriter that keeps the answer from holding the connection.
//
// A stalled Read is interrupted through http.ResponseController's
// SetReadDeadline, set before each Read. Where the ResponseWriter does not
// support it (a wrapper without Unwrap between the server and Handler, a
// recorder) only the rate is checked, when a Read returns, and a stall
// is not interrupted.
//
// The deadline is cleared as soon as the body returns io.EOF or an error,
// when it is closed, and when next returns: net/http starts a background
// read on the connection at the body's end, which a pending deadline would
// make fail, cancelling the request's context while next still works (and
// losing a backend's answer). From then on the body never touches the
// connection again, since a Transport may still be reading it from its own
// goroutine when the connection serves the next request. The exception is
// ErrBodyTooSlow, after which the connection's read side is left timed
// out: net/http then fails at once to read the rest of the body, instead
// of reading it at the client's pace before it sends next's answer, and
// closes the connection after the answer.
//
// That reading is also why, on HTTP/1.x, an answer to a request whose
// body has not been read to its end carries Connection: close (set when
// next first writes, flushes or returns): otherwise net/http reads up to
// 256 KiB of the body before it sends the answer, at the client's pace
// and without a deadline, and ioproxy answers many requests (redirects,
// refusals, errors) without reading their bodies. With the connection
// closing, net/http still reads the body once the answer is sent, hoping
// for a clean close; Handler gives that 500ms, then times the read out
// (first ending any Read of the body still in progress, a Transport's,
// which would make net/http read the rest without a deadline). This is
// done even when IdleTimeout is zero. HTTP/2 needs none of it:
// an unread body there is dropped with its stream, and Connection: close
// would end every stream of the connection.
//
// Past WriteIdleTimeout, a Write or Flush that is blocked is failed by
// setting the connection's (on HTTP/2 the stream's) write deadline in the
// past, from a timer that watches the Writes in progress: a deadline
// moved before each Write would cost a system call per Write, and on
// HTTP/2 it would reset a stream that merely waits for its next event. On
// HTTP/1.x the connection's write deadline is cleared when a request
// starts, so WriteIdleTimeout replaces http.Server.WriteTimeout.
//
// The ResponseWriter keeps http.ResponseController working (Flush,
// Hijack, deadlines, full duplex) through its Unwrap method, and is an
// http.Flusher, and on HTTP/1.x an http.Hijacker; it is not an
// io.ReaderFrom, so that every write of the answer passes the checks. A
// hijacked connection is left alone.
//
// Requests without a body pass unchanged when WriteIdleTimeout is zero:
// net/http has that background read pending from the start.
//
// next gets a shallow copy of the request, not the server's own with its
// Body replaced, because net/http decides whether the connection can carry
// another request from the type of the server's request's Body: a body of
// another type, closed early with more than 256 KiB unread, would have the
// rest of the body parsed as the next request.
//
// On HTTP/1.x the deadline that interrupts a stall also makes net/http
// cancel the request's context, before the Read returns; the copy's
// context has ErrBodyTooSlow as its cause then, so that a Transport reading
// the body (a ReverseProxy's) reports ErrBodyTooSlow rather than
// context.Canceled. Put Handler outside any middleware that sets a
// deadline on the context: the copy's context does not report the
// deadline, it is only cancelled when it passes.
//
// Nested Handlers keep the outer body limits and the outer ResponseWriter.
func (l BodyLimits) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.serve(next, w, r)
	})
}

func (l BodyLimits) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	hasBody := r.Body != nil && r.Body != http.NoBody
	h1 := r.ProtoMajor == 1
	// Only an HTTP/1.x body that net/http would read after the answer
	// needs watching for Connection: close.
	watchBody := h1 && hasBody && r.ContentLength != 0
	watchAnswer := (watchBody || l.WriteIdleTimeout > 0) && !isOurs(w)
	outer, _ := r.Body.(*body) // an outer Handler's: its limits stand, two would fight over the deadline
	limitBody := l.IdleTimeout > 0 && hasBody && outer == nil
	if !watchAnswer && !limitBody {
		next.ServeHTTP(w, r)
		return
	}
	ctl := http.NewResponseController(w)
	b := outer
	switch {
	case limitBody:
		b = newBody(ctl, r.Body, l)
	case watchAnswer && watchBody && outer == nil:
		b = newBody(ctl, r.Body, BodyLimits{}) // only watched
	}
	var rw *responseWriter
	if watchAnswer {
		rw = &responseWriter{ResponseWriter: w, ctl: ctl, writeIdle: l.WriteIdleTimeout}
		if watchBody {
			rw.body = b
		}
		if h1 && rw.writeIdle > 0 {
			rw.clearStaleDeadline()
		}
	}
	defer func() {
		if b != nil && b != outer {
			b.release()
		}
		if rw != nil {
			rw.finish() // after release, which would clear the deadline it sets
		}
	}()
	if b != nil && b != outer {
		if limitBody {
			parent := r.Context()
			ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
			defer cancel(context.Canceled)
			stop := context.AfterFunc(parent, func() { cancel(b.cause(context.Cause(parent))) })
			defer stop()
			r = r.WithContext(ctx)
		} else {
			r = r.WithContext(r.Context())
		}
		r.Body = b
	}
	switch {
	case rw == nil:
		next.ServeHTTP(w, r)
	case h1:
		next.ServeHTTP(h1Writer{rw}, r)
	default:
		next.ServeHTTP(rw, r)
	}
}

// newBody wraps rc; with IdleTimeout zero, the body only tracks its state
// for the answer's Connection: close.
func newBody(ctl *http.ResponseController, rc io.ReadCloser, l BodyLimits) *body {
	return &body{rc: rc, ctl: ctl, limits: l, deadlines: true, done: l.IdleTimeout <= 0}
}

// bodyState is how far a request body has been read.
type bodyState uint8

const (
	bodyOpen   bodyState = iota // bytes of it may still be on the connection
	bodyEOF                     // read to its end
	bodyFailed                  // a Read failed: the connection is done with it
)

// body is a request body with limits, or (done from the start) one whose
// state is only tracked. Read and Close may be called from different
// goroutines (a Transport closes the body it is reading), hence the
// mutex; it is never held during the underlying Read.
type body struct {
	rc     io.ReadCloser
	ctl    *http.ResponseController
	limits BodyLimits

	mu        sync.Mutex
	deadlines bool          // SetReadDeadline works on this connection
	armed     bool          // a deadline of ours may be set on the connection
	deadline  time.Time     // the last one set
	inRead    bool          // a limited Read is waiting on the connection
	done      bool          // never touch the connection's deadline again
	n         int64         // bytes read
	window    time.Duration // time spent in Read in the rate check's window
	windowN   int64         // bytes read in that window
	st        bodyState
	err       error // the ErrBodyTooSlow returned, sticky

	busy     int           // Reads and Closes of rc in progress
	detached bool          // rc is the server's again: see detach
	idle     chan struct{} // closed when busy drops to 0, for detach
}

// errDetached is what a Read gets once the handler has returned with the
// body unread: the body is no longer the handler's to read.
var errDetached = errors.New("request body read after the answer, which closes the connection")

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.err != nil {
		b.mu.Unlock()
		return 0, b.err
	}
	if b.detached {
		b.mu.Unlock()
		return 0, errDetached
	}
	b.busy++
	if b.done {
		b.mu.Unlock()
		n, err := b.rc.Read(p)
		b.mu.Lock()
		defer b.mu.Unlock()
		b.callEndedLocked()
		if err != nil {
			b.endLocked(err)
		}
		return n, err
	}
	start := time.Now()
	if b.deadlines {
		deadline := start.Add(b.limits.IdleTimeout)
		if err := b.ctl.SetReadDeadline(deadline); err != nil {
			b.deadlines = false
		} else {
			b.armed, b.deadline = true, deadline
		}
	}
	b.inRead = true
	b.mu.Unlock()

	n, err := b.rc.Read(p)

	b.mu.Lock()
	defer b.mu.Unlock()
	b.inRead = false
	b.callEndedLocked()
	b.window += time.Since(start)
	b.n += int64(n)
	b.windowN += int64(n)
	switch {
	case err != nil && b.armed && errors.Is(err, os.ErrDeadlineExceeded):
		// The connection's read side has timed out and stays so (see
		// killLocked): nothing clears our deadline.
		b.done = true
		b.err = b.stalledLocked(err)
		b.st = bodyFailed
		return n, b.err
	case err != nil:
		// io.EOF above all, after which net/http starts its background
		// read.
		b.endLocked(err)
		b.finishLocked()
		return n, err
	case b.tooSlowLocked():
		b.err = fmt.Errorf("%w: %d bytes in the last %s of %d, below %d bytes/s", ErrBodyTooSlow, b.windowN, b.window.Round(time.Millisecond), b.n, b.limits.MinRate)
		b.st = bodyFailed
		if !b.done {
			b.killLocked()
		}
		return n, b.err
	}
	return n, nil
}

func (b *body) callEndedLocked() {
	b.busy--
	if b.busy == 0 && b.idle != nil {
		close(b.idle)
		b.idle = nil
	}
}

func (b *body) endLocked(err error) {
	if b.st != bodyOpen {
		return
	}
	if err == io.EOF {
		b.st = bodyEOF
	} else {
		b.st = bodyFailed
	}
}

func (b *body) state() bodyState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

func (b *body) stalledLocked(err error) error {
	return fmt.Errorf("%w: no data for %s after %d bytes: %w", ErrBodyTooSlow, b.limits.IdleTimeout, b.n, err)
}

// cause is the reason to give a request context that net/http cancelled
// with parent as its cause: the body's failure, if that is what made it.
// When the stall's deadline is what cancelled it, the Read that timed out
// may not have returned yet.
func (b *body) cause(parent error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if b.inRead && b.armed && !time.Now().Before(b.deadline) {
		return b.stalledLocked(os.ErrDeadlineExceeded)
	}
	return parent
}

// tooSlowLocked checks the rate once a window of IdleTimeout spent in Read
// is complete, and starts the next window empty: with an average over the
// whole body, a burst would buy a trickle for as long as the burst would
// last at MinRate (55 minutes for 1 MB against 300 bytes/s).
func (b *body) tooSlowLocked() bool {
	if b.limits.MinRate <= 0 || b.window < b.limits.IdleTimeout {
		return false
	}
	// The window as it was measured: a Read may overrun IdleTimeout.
	if float64(b.windowN) < float64(b.limits.MinRate)*b.window.Seconds() {
		return true
	}
	b.window, b.windowN = 0, 0
	return false
}

// Close closes the underlying body first: net/http's Close waits for a
// Read in flight and may read the rest of the body, both bounded by the
// deadline still set.
func (b *body) Close() error {
	b.mu.Lock()
	if b.detached {
		b.mu.Unlock()
		return nil // net/http closes the server's body itself
	}
	b.busy++
	b.mu.Unlock()
	err := b.rc.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.callEndedLocked()
	b.finishLocked()
	return err
}

// release ends the wrapper's use of the connection's read deadline.
func (b *body) release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.finishLocked()
}

func (b *body) finishLocked() {
	if b.done {
		return
	}
	b.done = true
	// A Read in flight keeps its deadline: clearing it could leave the
	// Read waiting for ever.
	if b.armed && !b.inRead {
		_ = b.ctl.SetReadDeadline(time.Time{})
		b.armed = false
	}
}

// killLocked makes the rest of the body unreadable at once: when the
// handler answers, net/http reads what is left of the body (up to 256 KiB)
// before it sends the answer, and must not do so at the client's pace. The
// failed read makes it close the connection after the answer.
func (b *body) killLocked() {
	b.done = true
	if b.deadlines {
		_ = b.ctl.SetReadDeadline(time.Unix(1, 0))
	}
}

// detach hands the server's body back to net/http when the handler has
// returned with it unread and the connection closing. net/http then reads
// what is left of it, and a Read or Close of ours still in progress (a
// Transport's, from its own goroutine) would spoil that: net/http aborts
// a read in progress by timing the connection out, then clears the
// deadline, and would read the rest of the body without one. So detach
// ends those calls by timing the connection out itself, waits for them
// (at most drainGrace), and makes later ones return at once without
// touching the server's body. It reports whether the body was open.
func (b *body) detach() (open bool) {
	b.mu.Lock()
	b.detached = true
	open = b.st == bodyOpen
	var idle chan struct{}
	if b.busy > 0 && b.deadlines && b.ctl.SetReadDeadline(time.Unix(1, 0)) == nil {
		idle = make(chan struct{})
		b.idle = idle
	}
	b.mu.Unlock()
	if idle != nil {
		t := time.NewTimer(drainGrace)
		defer t.Stop()
		select {
		case <-idle:
		case <-t.C:
		}
	}
	return open
}
