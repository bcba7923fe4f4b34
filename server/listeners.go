package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/ioproxy/ioproxy/admin"
	"github.com/ioproxy/ioproxy/calling"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/limits"
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
	pending []boundListener
}

type boundListener struct {
	srv *http.Server
	ln  net.Listener
	tls bool
}

func (s *Server) newListeners() *listeners {
	in := s.cfg.Ingress
	return &listeners{log: s.log, bodies: limits.BodyLimits{IdleTimeout: in.BodyIdleTimeout, MinRate: in.BodyMinRate, WriteIdleTimeout: in.WriteIdleTimeout}}
}

// bindAll binds the ingress listeners, the calling ports and the admin
// listener.
func (s *Server) bindAll(ls *listeners, out outbound) error {
	// A client's share of an ingress listener; a proxy in front holds
	// the connections of all its clients, and is not limited.
	ingressConns := limits.ConnsConfig{Max: s.cfg.Ingress.MaxConnections, PerClient: s.cfg.Ingress.MaxConnectionsPerClient, Exempt: trustedProxy(s.cfg.Ingress.TrustedProxies)}
	if err := s.bind(ls, "http", s.cfg.Ingress.HTTPAddr, s.certs.HTTPHandler(s.httpHandler()), false, ingressConns); err != nil {
		return err
	}
	if s.cfg.ServesHTTPS() {
		if err := s.bind(ls, "https", s.cfg.Ingress.HTTPSAddr, sniMatchesHost(s.router), true, ingressConns); err != nil {
			return err
		}
	}
	for _, c := range s.cfg.Calls {
		h, err := calling.New(calling.Config{
			Call: c, Sessions: s.sessions, Identity: out.resolver, PDSClient: out.pds, Nonces: out.nonces,
			HostHandler: s.router.HostHandler, Recorder: s.recorder, Logger: s.log,
		})
		if err != nil {
			return err
		}
		// The app is a calling port's one client: no per-client share.
		if err := s.bind(ls, "call:"+c.Label, c.Addr(), h, false, limits.ConnsConfig{Max: c.MaxConnections}); err != nil {
			return err
		}
	}
	if s.cfg.Admin.Listen != "" {
		h := s.recorder.Handler(admin.HealthFuncs{Ready: s.readyCheck})
		if err := s.bind(ls, "admin", s.cfg.Admin.Listen, h, false, limits.ConnsConfig{Max: adminMaxConnections}); err != nil {
			return err
		}
	}
	return nil
}

// bind listens on addr for role, with the connection limits, and keeps
// the listener for serve.
func (s *Server) bind(ls *listeners, role, addr string, h http.Handler, useTLS bool, connLimits limits.ConnsConfig) error {
	conns, err := limits.NewConns(connLimits)
	if err != nil {
		return fmt.Errorf("%s listener: %w", role, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s listener on %s: %w", role, addr, err)
	}
	srv := newHTTPServer(conns.Handler(ls.bodies.Handler(h)), s.log)
	srv.ConnContext = conns.ConnContext
	if useTLS {
		srv.TLSConfig = s.certs.TLSConfig()
	}
	s.servers = append(s.servers, srv)
	s.Addrs[role] = ln.Addr().String()
	s.recorder.Listener(role, conns.Open, conns.Refused)
	ls.pending = append(ls.pending, boundListener{srv, conns.Listener(ln), useTLS})
	return nil
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
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				ls.log.Error("listener stopped", "addr", p.ln.Addr().String(), "err", err)
			}
		}()
	}
}

func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler: h,
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
func trustedProxy(prefixes []netip.Prefix) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		for _, p := range prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
}

// httpHandler serves the plain HTTP listener: hosts with TLS are
// redirected to HTTPS; local hosts and hosts with TLS off are served.
func (s *Server) httpHandler() http.Handler {
	_, httpsPort, _ := net.SplitHostPort(s.cfg.Ingress.HTTPSAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := s.cfg.Host(r.Host)
		if !ok || h.ServesHTTP() {
			s.router.ServeHTTP(w, r)
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
