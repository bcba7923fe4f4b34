package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ioproxy/ioproxy/admin"
	"github.com/ioproxy/ioproxy/calling"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/ingress"
	"github.com/ioproxy/ioproxy/internal/limits"
	"github.com/ioproxy/ioproxy/sessions"
)

// adminMaxConnections bounds the admin listener's connections: scrapers,
// probes and a few traffic views.
const adminMaxConnections = 256

// maxStreamsPerConnection bounds the concurrent requests of one HTTP/2
// connection (Go's default is 250); nginx's default is 128.
const maxStreamsPerConnection = 100

// listeners are the bound listeners, each with its server, not serving
// until serve.
type listeners struct {
	log *slog.Logger
	// bodies bound the progress of request bodies and answers on every
	// listener: a trickle is cut with 408, an unread answer after a while.
	bodies  limits.BodyLimits
	pending []*port
}

// port is one bound listener and its server. Its handler may be
// replaced on a reload; its address and connection limits stay until it
// closes.
type port struct {
	role string
	// addr is the address as configured (the bound one is ln's, in
	// Server.Addrs), which a reload compares.
	addr    string
	max     int
	conns   *limits.Conns
	handler *swapHandler
	srv     *http.Server
	ln      net.Listener
	tls     bool
	// closing is set once the port is being shut down, when its listener
	// may close before its server knows.
	closing atomic.Bool
}

// shutdown stops the port gracefully: no new connections, in-flight
// requests finish until ctx ends, then the rest are cut.
func (p *port) shutdown(ctx context.Context) {
	p.closing.Store(true)
	if err := p.srv.Shutdown(ctx); err != nil {
		_ = p.srv.Close()
	}
	// A port bound but never served is not known to its server.
	_ = p.ln.Close()
}

// swapHandler is a handler that a reload replaces; each request is
// served start to end by the handler it began with.
type swapHandler struct{ h atomic.Pointer[http.Handler] }

func newSwapHandler(h http.Handler) *swapHandler {
	sh := &swapHandler{}
	sh.set(h)
	return sh
}

func (sh *swapHandler) set(h http.Handler) { sh.h.Store(&h) }

func (sh *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*sh.h.Load()).ServeHTTP(w, r)
}

func (s *Server) newListeners() *listeners {
	in := s.config().Ingress
	return &listeners{log: s.log, bodies: limits.BodyLimits{IdleTimeout: in.BodyIdleTimeout, MinRate: in.BodyMinRate, WriteIdleTimeout: in.WriteIdleTimeout}}
}

// ingressConns are the connection limits of the ingress listeners: a
// client's share of each; a proxy in front holds the connections of all
// its clients, and is not limited (the trusted_proxies in use, which a
// reload may change).
func (s *Server) ingressConns() limits.ConnsConfig {
	in := s.config().Ingress
	exempt := func(a netip.Addr) bool { return trustedProxy(s.config().Ingress.TrustedProxies, a) }
	return limits.ConnsConfig{Max: in.MaxConnections, PerClient: in.MaxConnectionsPerClient, Exempt: exempt}
}

// bindAll binds the ingress listeners, the calling ports and the admin
// listener.
func (s *Server) bindAll(ls *listeners) error {
	cfg := s.config()
	p, err := s.bind(ls, "http", cfg.Ingress.HTTPAddr, s.certs.Load().HTTPHandler(s.httpHandler()), false, s.ingressConns())
	if err != nil {
		return err
	}
	s.keep(p)
	if cfg.ServesHTTPS() {
		p, err := s.bindHTTPS(ls, cfg)
		if err != nil {
			return err
		}
		s.keep(p)
	}
	specs, calls, err := s.portSpecs(cfg, s.router.Routes(), nil)
	if err != nil {
		return err
	}
	s.calls = calls
	for _, sp := range specs {
		p, err := s.bind(ls, sp.role, sp.addr, sp.handler, false, sp.conns)
		if err != nil {
			return err
		}
		s.keep(p)
	}
	if cfg.Admin.Listen != "" {
		h := s.recorder.Handler(admin.HealthFuncs{Ready: s.readyCheck})
		p, err := s.bind(ls, "admin", cfg.Admin.Listen, h, false, limits.ConnsConfig{Max: adminMaxConnections})
		if err != nil {
			return err
		}
		s.keep(p)
	}
	return nil
}

// bindHTTPS binds the HTTPS listener, at the start or at the reload that
// brings the first host with a certificate; the certificates come from
// the Manager in use at each handshake.
func (s *Server) bindHTTPS(ls *listeners, cfg *config.Config) (*port, error) {
	return s.bind(ls, "https", cfg.Ingress.HTTPSAddr, sniMatchesHost(s.router), true, s.ingressConns())
}

// callRole names a calling port's listener.
func callRole(c config.Call) string { return "call:" + c.Label }

// serveRole names a serve block's listener.
func serveRole(sv config.Serve) string { return "serve:" + sv.Label }

// portSpec is a listener that a call or serve block asks for.
type portSpec struct {
	role, addr string
	handler    http.Handler
	conns      limits.ConnsConfig
}

// callHandler is a calling port's handler and the block it was made
// for; kept is set when a reload kept it from the configuration before.
// retired is the block's, shared by the handlers rebuilt for it while it
// stays the same (a call to a host is rebuilt at every reload), and
// closed when a reload changes or removes it, which closes the
// WebSockets of every handler made for it.
type callHandler struct {
	call    config.Call
	handler http.Handler
	kept    bool
	retired *retirement
}

// retirement is a channel closed once.
type retirement struct {
	ch   chan struct{}
	once sync.Once
}

func newRetirement() *retirement { return &retirement{ch: make(chan struct{})} }

func (r *retirement) retire() { r.once.Do(func() { close(r.ch) }) }

// sameBlock reports whether two call blocks do the same: what differs
// only in a name for people, an operation's description or a setting
// that needs a restart (max_connections) does not close WebSockets.
func sameBlock(a, b config.Call) bool {
	norm := func(c config.Call) config.Call {
		c.ShortName, c.MaxConnections = "", 0
		c.Operations = slices.Clone(c.Operations)
		for i := range c.Operations {
			c.Operations[i].Description = ""
		}
		return c
	}
	return reflect.DeepEqual(norm(a), norm(b))
}

// portSpecs are the listeners of cfg's calling ports and serve blocks,
// with their handlers over routes, and the calling ports' handlers by
// label. The handler of a call to a URL whose block is the same in kept
// (the handlers in use) is kept: it holds the connections to the
// endpoint, which a new one would open again, the old ones idle.
func (s *Server) portSpecs(cfg *config.Config, routes *ingress.Routes, kept map[string]callHandler) ([]portSpec, map[string]callHandler, error) {
	var specs []portSpec
	calls := map[string]callHandler{}
	for _, c := range cfg.Calls {
		ch, ok := kept[c.Label]
		ch.kept = ok && c.Endpoint.Kind == config.EndpointURL && reflect.DeepEqual(ch.call, c)
		if !ch.kept {
			retired := ch.retired
			if !ok || !sameBlock(ch.call, c) {
				retired = newRetirement()
			}
			h, err := s.newCalling(c, routes, retired)
			if err != nil {
				return nil, nil, err
			}
			ch = callHandler{call: c, handler: h, retired: retired}
		}
		calls[c.Label] = ch
		// The app is a calling port's one client: no per-client share.
		specs = append(specs, portSpec{role: callRole(c), addr: c.Addr(), handler: ch.handler, conns: limits.ConnsConfig{Max: c.MaxConnections}})
	}
	for _, sv := range cfg.Serves {
		h, ok := routes.ServeHandler(sv.Label)
		if !ok {
			return nil, nil, fmt.Errorf("serve %q has no route", sv.Label)
		}
		// A serve port's clients share it as the ingress listeners'
		// do, and none is a proxy: nothing stands in front of it.
		in := cfg.Ingress
		specs = append(specs, portSpec{role: serveRole(sv), addr: sv.Addr(), handler: h, conns: limits.ConnsConfig{Max: in.MaxConnections, PerClient: in.MaxConnectionsPerClient}})
	}
	return specs, calls, nil
}

// newCalling makes a calling port's handler. A call to an ingress host
// is served by that host of routes; whether a session is still admitted
// is asked of the routes in use at each call, so that a handler kept
// across reloads follows their rules.
func (s *Server) newCalling(c config.Call, routes *ingress.Routes, retired *retirement) (http.Handler, error) {
	return calling.New(calling.Config{
		Call: c, Sessions: s.sessions, Identity: s.out.resolver, PDSClient: s.out.pds, Nonces: s.out.nonces,
		HostHandler:      routes.HostHandler,
		ProviderAdmitted: func(sess sessions.Session) bool { return s.router.Routes().ProviderSessionAdmitted(sess) },
		ATProtoAdmitted:  func(sess sessions.Session) bool { return s.router.Routes().ATProtoSessionAdmitted(sess) },
		Recorder:         s.recorder, Logger: s.log, TunnelRecheck: s.tunnelRecheck, Retired: retired.ch,
	})
}

// closeIdle closes the idle connections of a handler that a reload
// replaced, when it has any (the transport of a call to a URL): else
// they stay open until their idle timeout, one set for every reload.
func closeIdle(h http.Handler) {
	if c, ok := h.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// bind listens on addr for role, with the connection limits, and keeps
// the listener for serve; keep makes it one of the server's ports.
func (s *Server) bind(ls *listeners, role, addr string, h http.Handler, useTLS bool, connLimits limits.ConnsConfig) (*port, error) {
	conns, err := limits.NewConns(connLimits)
	if err != nil {
		return nil, fmt.Errorf("%s listener: %w", role, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listener on %s: %w", role, addr, err)
	}
	p := &port{role: role, addr: addr, max: connLimits.Max, conns: conns, handler: newSwapHandler(h), ln: conns.Listener(ln), tls: useTLS}
	p.srv = newHTTPServer(s.bg, conns.Handler(ls.bodies.Handler(p.handler)), s.log)
	p.srv.ConnContext = conns.ConnContext
	if useTLS {
		p.srv.TLSConfig = s.certs.Load().TLSConfig()
		p.srv.TLSConfig.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.certs.Load().GetCertificate(hello)
		}
	}
	ls.pending = append(ls.pending, p)
	return p, nil
}

// keep makes a bound port one of the server's, in Addrs and the metrics.
func (s *Server) keep(p *port) {
	s.ports[p.role] = p
	s.recorder.Listener(p.role, p.conns.Open, p.conns.Refused)
}

// serve starts serving every bound listener, each in a goroutine counted
// in wg.
func (ls *listeners) serve(wg *sync.WaitGroup) {
	for _, p := range ls.pending {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if p.tls {
				err = p.srv.ServeTLS(p.ln, "", "")
			} else {
				err = p.srv.Serve(p.ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) && !p.closing.Load() {
				ls.log.Error("listener stopped", "addr", p.ln.Addr().String(), "err", err)
			}
		}()
	}
	ls.pending = nil
}

// newHTTPServer serves h; its requests' contexts derive from base, which
// Close cancels once the listeners have shut down: what they leave
// running (WebSockets, which Shutdown does not wait for) ends then.
func newHTTPServer(base context.Context, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:     h,
		BaseContext: func(net.Listener) context.Context { return base },
		// Slow clients cannot hold connections open by trickling headers.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		// One HTTP/2 connection is one of max_connections: bound the
		// requests (and backend connections) it can hold at once.
		HTTP2:    &http.HTTP2Config{MaxConcurrentStreams: maxStreamsPerConnection},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// trustedProxy reports whether an address is in one of the prefixes.
func trustedProxy(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// httpHandler serves the plain HTTP listener: hosts with TLS are
// redirected to HTTPS; local hosts and hosts with TLS off are served.
func (s *Server) httpHandler() http.Handler {
	_, httpsPort, _ := net.SplitHostPort(s.config().Ingress.HTTPSAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// One snapshot of the routes decides and serves: a reload in
		// between must not serve plain HTTP for a host that now has TLS.
		routes := s.router.Routes()
		h, ok := routes.Host(r.Host)
		if !ok || h.ServesHTTP() {
			routes.ServeHTTP(w, r)
			return
		}
		host := h.Hostname
		if httpsPort != "" && httpsPort != "443" {
			host = net.JoinHostPort(host, httpsPort)
		}
		target := url.URL{Scheme: "https", Host: host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
		http.Redirect(w, r, target.String(), http.StatusPermanentRedirect)
	})
}

// sniMatchesHost refuses HTTPS requests whose Host is not the name the
// TLS connection was made for: a connection set up for one host must not
// carry requests (and cookies) for another.
func sniMatchesHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && r.TLS.ServerName != "" && config.NormalizeHost(r.Host) != config.NormalizeHost(r.TLS.ServerName) {
			http.Error(w, "421 Misdirected Request: this connection was made for "+r.TLS.ServerName, http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}
