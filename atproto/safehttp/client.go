// Package safehttp builds the HTTP client for every outbound fetch whose
// target a user chooses: handle well-knowns, did:web documents, PDS and OAuth
// server metadata, token endpoints. Such a URL can name any host, so the
// client refuses to reach anything but public unicast addresses over https,
// checks the address at dial time (after DNS, so a rebinding DNS answer is
// caught too), ignores proxy environment variables, caps redirects, timeouts
// and response sizes.
package safehttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// DefaultHint is appended to refusals to tell an operator how to allow
// loopback and plain-http servers while developing.
const DefaultHint = "set identity.allow_insecure for development"

// Defaults for the zero values of Options.
const (
	DefaultTimeout               = 10 * time.Second
	DefaultDialTimeout           = 5 * time.Second
	DefaultTLSHandshakeTimeout   = 5 * time.Second
	DefaultResponseHeaderTimeout = 5 * time.Second
	DefaultMaxRedirects          = 3
	DefaultMaxIdleConnsPerHost   = 16
	DefaultMaxResponseBytes      = 1 << 20
)

// ErrRefused matches (with errors.Is) every *RefusedError.
var ErrRefused = errors.New("refused by the outbound request guard")

// ErrBodyTooLarge is returned when a response body passes its size limit.
var ErrBodyTooLarge = errors.New("response body too large")

// ErrTooManyRedirects is returned when a fetch is redirected more than
// Options.MaxRedirects times.
var ErrTooManyRedirects = errors.New("too many redirects")

// RefusedError says which address or URL the guard refused and why.
type RefusedError struct {
	Target string // the IP address or URL refused
	Reason string // e.g. "loopback address", "only https URLs are allowed"
	Hint   string // what the operator can do, if anything
}

func (e *RefusedError) Error() string {
	msg := "refusing to connect to " + e.Target + ": " + e.Reason
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// Is makes errors.Is(err, ErrRefused) true for every refusal.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Options configures NewClient. The zero value is the production setting.
type Options struct {
	// AllowInsecure is the development switch: it permits plain http and
	// every address (loopback, private, ...). Never set it in production.
	AllowInsecure bool
	// Timeout bounds a whole exchange: dial, redirects, headers and body.
	Timeout time.Duration
	// DialTimeout, TLSHandshakeTimeout and ResponseHeaderTimeout bound the
	// individual steps.
	DialTimeout           time.Duration
	TLSHandshakeTimeout   time.Duration
	ResponseHeaderTimeout time.Duration
	// MaxRedirects is how many redirects are followed (default 3); a
	// negative value follows none and fails on the first one.
	MaxRedirects int
	// MaxIdleConnsPerHost keeps connections to PDSes and authorization
	// servers warm; Go's default of 2 throttles concurrent sign-ins.
	MaxIdleConnsPerHost int
	// MaxResponseBytes caps every response body read through the client
	// (default 1 MiB; negative: no cap). Callers that know a smaller bound
	// should still use ReadBody with it.
	MaxResponseBytes int64
	// UserAgent is sent on requests that carry none.
	UserAgent string
	// Hint is appended to refusal messages (default DefaultHint).
	Hint string
	// RootCAs overrides the system roots, e.g. for a test CA.
	RootCAs *x509.CertPool
}

func (o Options) withDefaults() Options {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = DefaultResponseHeaderTimeout
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = DefaultMaxRedirects
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if o.Hint == "" {
		o.Hint = DefaultHint
	}
	return o
}

// NewClient returns an http.Client guarded as described in the package doc.
func NewClient(opts Options) *http.Client {
	return newClient(opts, nil)
}

// guard holds the checks shared by the dialer, the transport and the
// redirect policy of one client.
type guard struct {
	opts   Options
	policy *addrPolicy
	// exempt lets this package's tests reach httptest servers (loopback)
	// while every other check stays on.
	exempt func(netip.Addr) bool
}

func newClient(opts Options, exempt func(netip.Addr) bool) *http.Client {
	opts = opts.withDefaults()
	g := &guard{opts: opts, policy: newAddrPolicy(), exempt: exempt}
	dialer := &net.Dialer{
		Timeout:   opts.DialTimeout,
		KeepAlive: 30 * time.Second,
	}
	if !opts.AllowInsecure {
		dialer.Control = g.control
	}
	tr := &http.Transport{
		// nil, not ProxyFromEnvironment: a proxy would dial on our behalf
		// and the address check would only ever see the proxy.
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    opts.TLSHandshakeTimeout,
		ResponseHeaderTimeout:  opts.ResponseHeaderTimeout,
		ExpectContinueTimeout:  time.Second,
		IdleConnTimeout:        90 * time.Second,
		MaxIdleConns:           100,
		MaxIdleConnsPerHost:    opts.MaxIdleConnsPerHost,
		MaxResponseHeaderBytes: 64 << 10,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    opts.RootCAs,
		},
	}
	return &http.Client{
		Transport:     &guardedTransport{g: g, next: tr},
		CheckRedirect: g.checkRedirect,
		Timeout:       opts.Timeout,
	}
}

// control runs after DNS resolution, for every address the dialer tries, so
// the address checked is the address connected to.
func (g *guard) control(network, address string, _ syscall.RawConn) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return &RefusedError{Target: address, Reason: "network " + network + " is not allowed", Hint: g.opts.Hint}
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &RefusedError{Target: address, Reason: "unparseable address", Hint: g.opts.Hint}
	}
	addr := ap.Addr().WithZone("")
	if g.exempt != nil && g.exempt(addr) {
		return nil
	}
	if r := g.policy.reason(addr); r != "" {
		return &RefusedError{Target: addr.String(), Reason: r, Hint: g.opts.Hint}
	}
	return nil
}

// checkURL refuses schemes other than https (http too with AllowInsecure).
func (g *guard) checkURL(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if g.opts.AllowInsecure {
			return nil
		}
		return &RefusedError{Target: redact(u), Reason: "only https URLs are allowed", Hint: g.opts.Hint}
	default:
		return &RefusedError{Target: redact(u), Reason: fmt.Sprintf("scheme %q is not allowed", u.Scheme)}
	}
}

func (g *guard) checkRedirect(req *http.Request, via []*http.Request) error {
	if g.opts.MaxRedirects < 0 {
		return fmt.Errorf("redirect to %s not followed: %w", redact(req.URL), ErrTooManyRedirects)
	}
	if len(via) > g.opts.MaxRedirects {
		return fmt.Errorf("stopped after %d redirects: %w", g.opts.MaxRedirects, ErrTooManyRedirects)
	}
	if err := g.checkURL(req.URL); err != nil {
		return fmt.Errorf("redirect refused: %w", err)
	}
	return nil
}

// redact drops user info and the query, which may carry secrets, from URLs
// that end up in error messages and logs.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}

type guardedTransport struct {
	g    *guard
	next http.RoundTripper
}

func (t *guardedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.g.checkURL(req.URL); err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	if t.g.opts.UserAgent != "" && req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", t.g.opts.UserAgent)
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	limit := t.g.opts.MaxResponseBytes
	if limit < 0 || resp.Body == nil {
		return resp, nil
	}
	if resp.ContentLength > limit {
		resp.Body.Close()
		return nil, fmt.Errorf("response from %s announces %d bytes, over the %d-byte limit: %w",
			req.URL.Host, resp.ContentLength, limit, ErrBodyTooLarge)
	}
	resp.Body = &limitedBody{rc: resp.Body, remaining: limit, limit: limit, host: req.URL.Host}
	return resp, nil
}

// limitedBody fails, rather than truncating silently, once a body passes its
// limit: a truncated JSON document could otherwise parse as something else.
type limitedBody struct {
	rc        io.ReadCloser
	remaining int64
	limit     int64
	host      string
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if b.remaining <= 0 {
		var probe [1]byte
		n, err := b.rc.Read(probe[:])
		if n > 0 {
			return 0, fmt.Errorf("response from %s is over the %d-byte limit: %w", b.host, b.limit, ErrBodyTooLarge)
		}
		return 0, err
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.rc.Read(p)
	b.remaining -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// ReadBody reads all of r, failing with an error that wraps ErrBodyTooLarge
// if r holds more than limit bytes.
func ReadBody(r io.Reader, limit int64) ([]byte, error) {
	if limit < 0 {
		limit = 0
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read response body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("response body is over the %d-byte limit: %w", limit, ErrBodyTooLarge)
	}
	return b, nil
}

// Get is a convenience for a guarded GET that returns the body only for a
// 200 response, read with the given limit.
func Get(ctx context.Context, c *http.Client, rawURL string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for %s: %w", rawURL, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, &StatusError{URL: redact(req.URL), StatusCode: resp.StatusCode}
	}
	b, err := ReadBody(resp.Body, limit)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", redact(req.URL), err)
	}
	return b, nil
}

// StatusError is returned by Get for a non-200 response.
type StatusError struct {
	URL        string
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("fetch %s: HTTP status %d", e.URL, e.StatusCode)
}
