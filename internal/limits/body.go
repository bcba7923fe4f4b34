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

// BodyLimits are the progress a request body must make.
type BodyLimits struct {
	// IdleTimeout is how long one Read may wait for data, and the grace
	// period of the rate check. Zero (or less) disables both limits.
	IdleTimeout time.Duration
	// MinRate is the least average rate, in bytes a second, of a body,
	// checked once its Reads have waited IdleTimeout in all. Zero (or
	// less) disables the rate check.
	//
	// The rate counts the time spent inside Read, not the time since the
	// first Read: a proxy whose backend takes the body slowly reads it
	// slowly, and that must not be blamed on the client.
	MinRate int64
}

// Handler passes next each request with a body that fails with
// ErrBodyTooSlow when it stalls or trickles, so that next can answer 408.
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
// Requests without a body pass unchanged: net/http has that background
// read pending from the start.
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
func (l BodyLimits) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := l.newBody(w, r)
		if b == nil {
			next.ServeHTTP(w, r)
			return
		}
		defer b.release()
		parent := r.Context()
		ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
		defer cancel(context.Canceled)
		stop := context.AfterFunc(parent, func() { cancel(b.cause(context.Cause(parent))) })
		defer stop()
		r = r.WithContext(ctx)
		r.Body = b
		next.ServeHTTP(w, r)
	})
}

func (l BodyLimits) newBody(w http.ResponseWriter, r *http.Request) *body {
	if l.IdleTimeout <= 0 || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if _, ok := r.Body.(*body); ok {
		return nil // the outer limits stand; two would fight over the deadline
	}
	return &body{rc: r.Body, ctl: http.NewResponseController(w), limits: l, deadlines: true}
}

// body is a request body with limits. Read and Close may be called from
// different goroutines (a Transport closes the body it is reading), hence
// the mutex; it is never held during the underlying Read.
type body struct {
	rc     io.ReadCloser
	ctl    *http.ResponseController
	limits BodyLimits

	mu        sync.Mutex
	deadlines bool          // SetReadDeadline works on this connection
	armed     bool          // a deadline of ours may be set on the connection
	deadline  time.Time     // the last one set
	inRead    bool          // a Read is waiting on the connection
	done      bool          // never touch the connection's deadline again
	waited    time.Duration // time spent in Read
	n         int64         // bytes read
	err       error         // the ErrBodyTooSlow returned, sticky
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	if b.err != nil {
		b.mu.Unlock()
		return 0, b.err
	}
	if b.done {
		b.mu.Unlock()
		return b.rc.Read(p)
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
	b.waited += time.Since(start)
	b.n += int64(n)
	switch {
	case err != nil && b.armed && errors.Is(err, os.ErrDeadlineExceeded):
		// The connection's read side has timed out and stays so (see
		// killLocked): nothing clears our deadline.
		b.done = true
		b.err = b.stalledLocked(err)
		return n, b.err
	case err != nil:
		// io.EOF above all, after which net/http starts its background
		// read.
		b.finishLocked()
		return n, err
	case b.tooSlowLocked():
		b.err = fmt.Errorf("%w: %d bytes in %s, below %d bytes/s", ErrBodyTooSlow, b.n, b.waited.Round(time.Millisecond), b.limits.MinRate)
		if !b.done {
			b.killLocked()
		}
		return n, b.err
	}
	return n, nil
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

func (b *body) tooSlowLocked() bool {
	if b.limits.MinRate <= 0 || b.waited < b.limits.IdleTimeout {
		return false
	}
	return float64(b.n) < float64(b.limits.MinRate)*b.waited.Seconds()
}

// Close closes the underlying body first: net/http's Close waits for a
// Read in flight and may read the rest of the body, both bounded by the
// deadline still set.
func (b *body) Close() error {
	err := b.rc.Close()
	b.release()
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
