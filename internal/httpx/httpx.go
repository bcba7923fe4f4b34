// Package httpx holds what ingress and the calling ports each need around
// net/http: a writer that remembers the status, a transport that times
// round trips, a pool of copy buffers, the mapping of an upstream error to
// 502 or 504, and the JSON error body their clients parse.
package httpx

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// TimedTransport reports how long each round trip took to answer (to its
// response headers) to Observe, when set.
type TimedTransport struct {
	Next    http.RoundTripper
	Observe func(time.Duration)
}

// RoundTrip implements http.RoundTripper.
func (t TimedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.Observe == nil {
		return t.Next.RoundTrip(r)
	}
	start := time.Now()
	resp, err := t.Next.RoundTrip(r)
	if err == nil {
		t.Observe(time.Since(start))
	}
	return resp, err
}

// BufferPool recycles 32 KiB copy buffers: without it every proxied
// request allocates one. It implements httputil.BufferPool.
type BufferPool struct{ p sync.Pool }

// NewBufferPool returns an empty pool.
func NewBufferPool() *BufferPool {
	return &BufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

// Get returns a buffer.
func (b *BufferPool) Get() []byte { return *(b.p.Get().(*[]byte)) }

// Put returns a buffer to the pool.
func (b *BufferPool) Put(v []byte) { b.p.Put(&v) }

// GetBuffer and PutBuffer are Get and Put without the allocation that
// Put costs (a new pointer to the slice each time): the forwarder's pair.
func (b *BufferPool) GetBuffer() *[]byte  { return b.p.Get().(*[]byte) }
func (b *BufferPool) PutBuffer(p *[]byte) { b.p.Put(p) }

// IsTimeout reports whether an upstream error is a timeout (504) rather
// than a failure to reach or to read the upstream (502).
func IsTimeout(err error) bool {
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout())
}

// WriteError answers in the XRPC error shape, {"error": code, "message":
// message}, which XRPC clients and the apps behind ioproxy parse. The
// answer is never cached.
func WriteError(w http.ResponseWriter, status int, code, message string) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{code, message})
}
