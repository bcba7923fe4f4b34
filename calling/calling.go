// Package calling serves calling ports: the listeners of `call` blocks
// through which a backend makes plain HTTP calls and ioproxy adds the rest.
//
// An endpoint "@" sends each call to the signed-in user's own PDS with the
// session's DPoP-bound access token, retrying once on a new DPoP nonce and
// refreshing an expired token, so one call from the app is one call to the
// PDS in steady state. Other endpoints are plain reverse proxies.
package calling

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/ioproxy/ioproxy/access"
	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/identity"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/httpguard"
	"github.com/ioproxy/ioproxy/internal/httpx"
	"github.com/ioproxy/ioproxy/internal/limits"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/sessions"
)

// Resolver finds accounts; *identity.Resolver implements it.
type Resolver interface {
	Lookup(ctx context.Context, input string) (*identity.Identity, error)
	LookupDID(ctx context.Context, did syntax.DID) (*identity.Identity, error)
}

// Config configures one calling port.
type Config struct {
	Call config.Call
	// Sessions finds a call's session by its Proxy-Session key and keeps
	// its tokens fresh.
	Sessions *sessions.Lifecycle
	Identity Resolver
	// PDSClient carries calls to PDSs. PDS addresses come from DID
	// documents, which users control, so it must be SSRF-guarded.
	PDSClient *http.Client
	// Nonces are the DPoP nonces per server, shared with sign-in.
	Nonces *dpop.Nonces
	// HostHandler serves calls whose endpoint names an ingress host.
	HostHandler func(name string) (http.Handler, bool)
	// ProviderAdmitted and ATProtoAdmitted, when set, say whether a
	// session may still be used (its host's rules as they stand now, a
	// reload may have changed them); calls with a session the rules
	// refuse get 401.
	ProviderAdmitted func(sessions.Session) bool
	ATProtoAdmitted  func(sessions.Session) bool
	// Recorder receives a report of every call and of upstream answer
	// times; observe.Discard when nil.
	Recorder observe.Recorder
	Logger   *slog.Logger
	// TunnelRecheck is how often a WebSocket's session is asked again
	// (DefaultTunnelRecheck when zero).
	TunnelRecheck time.Duration
	// Retired, when closed, closes the port's WebSockets and refuses new
	// ones: the server closes it when a reload changes or removes the
	// call block, and hands it on to the handlers it rebuilds for an
	// unchanged one. Nil: never.
	Retired <-chan struct{}
}

// New returns the handler of a calling port.
func New(cfg Config) (http.Handler, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Recorder == nil {
		cfg.Recorder = observe.Discard{}
	}
	var inner http.Handler
	var own *http.Transport
	switch cfg.Call.Endpoint.Kind {
	case config.EndpointPDS:
		if cfg.Sessions == nil || cfg.Identity == nil || cfg.PDSClient == nil || cfg.Nonces == nil {
			return nil, fmt.Errorf("call %q: endpoint \"@\" needs sessions, identity, a PDS client and nonces", cfg.Call.Label)
		}
		inner = &pdsHandler{cfg: cfg, buffers: httpx.NewBufferPool()}
	case config.EndpointHost:
		if cfg.HostHandler == nil {
			return nil, fmt.Errorf("call %q: endpoint %q names a host, but no ingress is given", cfg.Call.Label, cfg.Call.Endpoint.Host)
		}
		h, ok := cfg.HostHandler(cfg.Call.Endpoint.Host)
		if !ok {
			return nil, fmt.Errorf("call %q: endpoint %q is not an ingress host", cfg.Call.Label, cfg.Call.Endpoint.Host)
		}
		inner = h
	case config.EndpointURL:
		inner, own = urlProxy(cfg)
	default:
		return nil, fmt.Errorf("call %q: no endpoint", cfg.Call.Label)
	}
	hosts := map[string]bool{}
	for _, h := range cfg.Call.Hosts {
		hosts[h] = true
	}
	recheck := cfg.TunnelRecheck
	if recheck <= 0 {
		recheck = DefaultTunnelRecheck
	}
	return &port{cfg: cfg, inner: inner, hosts: hosts, transport: own, recheck: recheck}, nil
}

// CloseIdleConnections closes the idle connections of the port's own
// transport (a call to a URL has one; "@" and host endpoints share
// theirs): a reload that replaces the port calls it, or each reload
// would leave a set open until its idle timeout.
func (p *port) CloseIdleConnections() {
	if p.transport != nil {
		p.transport.CloseIdleConnections()
	}
}

// port applies what every calling port does whatever its endpoint: the
// Host and Upgrade guards, operations, operations_only, the request
// record.
type port struct {
	cfg   Config
	inner http.Handler
	// hosts are the names besides IP literals and localhost that the port
	// answers under.
	hosts map[string]bool
	// transport is the port's own, if it has one (a call to a URL).
	transport *http.Transport
	// recheck is how often a tunnel's session is asked again (see
	// tunnels.go).
	recheck time.Duration
}

func (p *port) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	// Operations are matched on the one reading of the path; a path with
	// several ("/xrpc/allowed/..%2fother") matches none, since the
	// upstream could serve the other reading.
	var op config.Operation
	path, plain := access.PlainPath(r.URL)
	matched := false
	if plain {
		op, matched = p.cfg.Call.Operation(r.Method, path)
	}
	sw := httpx.NewStatusWriter(w)
	upstream := ""
	did := ""
	if p.cfg.Call.Endpoint.Kind == config.EndpointPDS {
		// Elsewhere User-Did is whatever a client sent: not worth logging.
		did = r.Header.Get(contract.UserDID)
	}
	// A call to an ingress host is recorded by that host's handler, as an
	// ingress request; recording it here too would count it twice.
	record := p.cfg.Call.Endpoint.Kind != config.EndpointHost
	defer func() {
		if !record {
			return
		}
		p.cfg.Recorder.Request(observe.Request{
			Time: start, Kind: observe.KindCall, Source: p.cfg.Call.Label, Operation: op.Name,
			Method: r.Method, Path: r.URL.Path, Status: sw.Status(), Duration: time.Since(start),
			Upstream: upstream, DID: did, Remote: r.RemoteAddr,
		})
	}()
	if !httpguard.HostAllowed(r.Host, p.hosts) {
		httpguard.CloseIfBody(sw, r)
		// A web page on a name that resolves to this machine (DNS
		// rebinding) must not make calls as whichever user it names.
		record = true
		writeXRPCError(sw, http.StatusForbidden, "HostNotAllowed", fmt.Sprintf("call %q does not answer under the name %q: call it by IP address or as localhost, or add the name to call %q { hosts = [...] }", p.cfg.Call.Label, config.NormalizeHost(r.Host), p.cfg.Call.Label))
		return
	}
	if !httpguard.UpgradeAllowed(r.Header) {
		record = true
		// Whatever the client sent after this request was meant for a
		// tunnel: drop it with the connection.
		sw.Header().Set("Connection", "close")
		writeXRPCError(sw, http.StatusBadRequest, "InvalidRequest", httpguard.ErrUpgradeMessage)
		return
	}
	if !matched && p.cfg.Call.OperationsOnly {
		// Refused before any credential is looked at: least privilege.
		record = true
		httpguard.CloseIfBody(sw, r)
		if !plain {
			writeXRPCError(sw, http.StatusBadRequest, "InvalidPath", fmt.Sprintf("the path %q can be read as more than one path (dot segments, encoded or doubled slashes, backslashes, \";\" or non-ASCII characters); call %q allows only its operations, so write the path plainly", r.URL.EscapedPath(), p.cfg.Call.Label))
			return
		}
		writeXRPCError(sw, http.StatusForbidden, "OperationNotAllowed", fmt.Sprintf("%s %s matches no operation of call %q, which allows only its operations", r.Method, r.URL.Path, p.cfg.Call.Label))
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), upstreamKey{}, &upstream))
	if isUpgrade(r) {
		if p.isRetired() {
			record = true
			writeXRPCError(sw, http.StatusServiceUnavailable, "CallChanged", fmt.Sprintf("call %q was changed by a configuration reload just now; call again", p.cfg.Call.Label))
			return
		}
		var stop func()
		r, stop = p.watchTunnel(r)
		defer stop()
	}
	p.inner.ServeHTTP(sw, r)
}

// upstreamKey lets inner handlers report where a call went.
type upstreamKey struct{}

func setUpstream(r *http.Request, u string) {
	if p, ok := r.Context().Value(upstreamKey{}).(*string); ok {
		*p = u
	}
}

// urlProxy is a plain reverse proxy to a fixed upstream, for endpoints that
// are URLs or host:port, and the transport it owns.
func urlProxy(cfg Config) (http.Handler, *http.Transport) {
	target := cfg.Call.Endpoint.URL
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.Call.Timeout,
		// insecure is for local upstreams with self-signed certificates.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: cfg.Call.Insecure}, //nolint:gosec // opt-in, documented
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			httpguard.StripOverrides(pr.Out.Header)
			applyCredential(pr.Out, cfg.Call.Auth)
		},
		Transport: httpx.TimedTransport{Next: tr, Observe: func(d time.Duration) { cfg.Recorder.UpstreamDuration(observe.KindCall, cfg.Call.Label, d) }},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, limits.ErrBodyTooSlow) || errors.Is(context.Cause(r.Context()), limits.ErrBodyTooSlow) {
				writeXRPCError(w, http.StatusRequestTimeout, "BodyTooSlow", "the request body came too slowly and was cut off")
				return
			}
			cfg.Logger.Warn("call upstream failed", "call", cfg.Call.Label, "upstream", target.Host, "err", err)
			status, code := upstreamErrorStatus(err)
			writeXRPCError(w, status, code, fmt.Sprintf("%s is not reachable: %s", target.Host, errorText(err)))
		},
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return withAuth(cfg, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setUpstream(r, target.Host)
		rp.ServeHTTP(w, r)
	})), tr
}

func upstreamErrorStatus(err error) (int, string) {
	if httpx.IsTimeout(err) {
		return http.StatusGatewayTimeout, "UpstreamTimeout"
	}
	return http.StatusBadGateway, "UpstreamFailure"
}

// errorText is an error's text for a caller: no URLs with queries.
func errorText(err error) string {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner.Error()
		}
	}
	return err.Error()
}

// writeXRPCError answers in the XRPC error shape, which XRPC clients parse.
func writeXRPCError(w http.ResponseWriter, status int, code, message string) {
	httpx.WriteError(w, status, code, message)
}

// readBody buffers a request body up to limit so that it can be sent
// again on a retry.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > limit {
		return nil, errBodyTooLarge
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, errBodyTooLarge
	}
	return b, nil
}

var errBodyTooLarge = errors.New("request body too large")

func bodyReader(b []byte) io.Reader {
	if b == nil {
		return nil
	}
	return bytes.NewReader(b)
}
