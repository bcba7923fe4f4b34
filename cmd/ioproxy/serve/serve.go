// Package serve assembles a running ioproxy from a configuration: the
// session store, the OAuth clients, the ingress listeners, the calling
// ports and the admin listener. cmd/ioproxy calls it, and so do the
// end-to-end tests, which run the same assembly in-process.
package serve

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ioproxy/ioproxy/admin"
	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/identity"
	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/atproto/safehttp"
	"github.com/ioproxy/ioproxy/calling"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/ingress"
	"github.com/ioproxy/ioproxy/ingress/certs"
	"github.com/ioproxy/ioproxy/internal/limits"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/sessions"
)

// Options are what a Server needs besides its configuration.
type Options struct {
	Logger *slog.Logger
	// RootCAs, when set, replaces the system roots for outbound TLS (tests).
	RootCAs *x509.CertPool
	// ShutdownTimeout bounds the wait for in-flight requests at Close.
	ShutdownTimeout time.Duration
}

// adminMaxConnections bounds the admin listener's connections: scrapers,
// probes and a few traffic views.
const adminMaxConnections = 256

// SessionLifetime is how long a session lives without a token refresh.
const SessionLifetime = 30 * 24 * time.Hour

// Server is a running ioproxy.
type Server struct {
	cfg      *config.Config
	log      *slog.Logger
	store    *sessions.Store
	tokens   *calling.Tokens
	certs    *certs.Manager
	router   *ingress.Router
	recorder *admin.Recorder
	servers  []*http.Server
	// Addrs are the bound listen addresses by role ("http", "https",
	// "admin", "call:<label>"), useful when a port was 0.
	Addrs map[string]string

	cancel   context.CancelFunc
	wg       sync.WaitGroup
	shutdown time.Duration
	ready    chan struct{}
	once     sync.Once
}

// Start builds everything and binds every listener, failing early and
// clearly when a port is taken; then it serves in the background until
// Close.
func Start(ctx context.Context, cfg *config.Config, opts Options) (_ *Server, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 15 * time.Second
	}
	log := opts.Logger
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{cfg: cfg, log: log, cancel: cancel, shutdown: opts.ShutdownTimeout, Addrs: map[string]string{}, ready: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	s.recorder = admin.NewRecorder(admin.RecorderConfig{Logger: log, Hosts: cfg.Admin.Hosts})
	s.store, err = sessions.Open(filepath.Join(cfg.DataDir, "ioproxy.db"), sessions.Options{
		MaxSessions: cfg.Sessions.MaxSessions, MaxPerAccount: cfg.Sessions.MaxPerAccount,
	})
	if err != nil {
		return nil, err
	}
	s.recorder.SetSessionCounter(s.store.Count)

	httpClient := safehttp.NewClient(safehttp.Options{AllowInsecure: cfg.Identity.AllowInsecure, RootCAs: opts.RootCAs, UserAgent: "ioproxy"})
	// Calls stream answers of any size and are bounded by each call
	// block's timeout instead.
	pdsClient := safehttp.NewClient(safehttp.Options{AllowInsecure: cfg.Identity.AllowInsecure, RootCAs: opts.RootCAs, Timeout: 24 * time.Hour, ResponseHeaderTimeout: 5 * time.Minute, MaxResponseBytes: -1, MaxIdleConnsPerHost: 64, MaxRedirects: -1, UserAgent: "ioproxy"})
	resolver := identity.New(identity.Config{PLCURL: cfg.Identity.PLCURL, HandleResolver: cfg.Identity.HandleResolver, HTTPClient: httpClient, AllowInsecure: cfg.Identity.AllowInsecure, Logger: log})
	nonces := &dpop.Nonces{}
	// Start from the nonces saved with the sessions, so the first call
	// after a restart does not cost a use_dpop_nonce round trip.
	for _, sess := range s.store.List() {
		nonces.Set(sess.Issuer, sess.AuthServerNonce)
		nonces.Set(sess.PDS, sess.PDSNonce)
	}

	asRetry := func() { s.recorder.NonceRetry(observe.NonceServerAuth) }
	clients := map[string]*oauth.Client{}
	signIns := map[string]http.Handler{}
	var clientKey *oauth.ClientKey
	for _, h := range cfg.Hosts {
		if h.ATProto == nil {
			continue
		}
		var c *oauth.Client
		var key *oauth.ClientKey
		base := s.publicBaseURL(h)
		if h.ATProto.Local != 0 {
			redirect := "http://127.0.0.1:" + strconv.Itoa(h.ATProto.Local) + "/@/callback"
			c, err = oauth.New(oauth.Config{
				ClientID: oauth.LocalhostClientID(redirect, h.ATProto.Scope()), RedirectURI: redirect, Scope: h.ATProto.Scope(),
				HTTP: httpClient, Identity: resolver, Nonces: nonces, AllowInsecure: cfg.Identity.AllowInsecure, OnNonceRetry: asRetry,
			})
		} else {
			if clientKey == nil {
				if clientKey, err = s.loadClientKey(); err != nil {
					return nil, err
				}
			}
			key = clientKey
			c, err = oauth.New(oauth.Config{
				ClientID: base + "/@/client-metadata.json", RedirectURI: base + "/@/callback", Scope: h.ATProto.Scope(), Key: key,
				HTTP: httpClient, Identity: resolver, Nonces: nonces, AllowInsecure: cfg.Identity.AllowInsecure, OnNonceRetry: asRetry,
			})
		}
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
		clients[c.ClientID()] = c
		signIns[h.Name] = ingress.NewSignIn(ingress.SignInConfig{
			Host: h, Client: c, ClientKey: key, BaseURL: base, Sessions: s.store, SessionLifetime: SessionLifetime,
			Recorder: s.recorder, Logger: log,
		})
	}

	s.tokens = calling.NewTokens(calling.TokensConfig{Sessions: s.store, Clients: clients, SessionLifetime: SessionLifetime, Nonces: nonces, Recorder: s.recorder, Logger: log})

	var nomad *ingress.Nomad
	for _, h := range cfg.Hosts {
		if h.Backend.Kind == config.BackendNomad {
			nomad = ingress.NewNomad(ingress.NomadConfig{Nomad: cfg.Nomad, Logger: log})
			break
		}
	}
	s.router, err = ingress.New(ingress.Config{
		Config:   cfg,
		Sessions: s.store,
		Nomad:    nomad,
		SignIn: func(h config.Host) (http.Handler, error) {
			return signIns[h.Name], nil
		},
		Recorder:     s.recorder,
		StaleSession: s.tokens.RefreshLater,
		Logger:       log,
	})
	if err != nil {
		return nil, err
	}

	s.certs, err = certs.New(ctx, certs.Config{DataDir: cfg.DataDir, TLS: cfg.TLS, Hosts: cfg.Hosts, Logger: log})
	if err != nil {
		return nil, err
	}

	// Bind everything before serving anything, so a taken port fails the
	// start instead of leaving a half-running proxy.
	type pending struct {
		srv *http.Server
		ln  net.Listener
		tls bool
	}
	var toServe []pending
	// Every listener bounds its connections (past the limit: 503) and
	// the progress of request bodies (a trickle is cut with 408).
	bodies := limits.BodyLimits{IdleTimeout: cfg.Ingress.BodyIdleTimeout, MinRate: cfg.Ingress.BodyMinRate, WriteIdleTimeout: cfg.Ingress.WriteIdleTimeout}
	bind := func(role, addr string, h http.Handler, useTLS bool, connLimits limits.ConnsConfig) error {
		conns, err := limits.NewConns(connLimits)
		if err != nil {
			return fmt.Errorf("%s listener: %w", role, err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s listener on %s: %w", role, addr, err)
		}
		srv := newHTTPServer(conns.Handler(bodies.Handler(h)), log)
		srv.ConnContext = conns.ConnContext
		if useTLS {
			srv.TLSConfig = s.certs.TLSConfig()
		}
		s.servers = append(s.servers, srv)
		s.Addrs[role] = ln.Addr().String()
		s.recorder.Listener(role, conns.Open, conns.Refused)
		toServe = append(toServe, pending{srv, conns.Listener(ln), useTLS})
		return nil
	}
	// A client's share of an ingress listener; a proxy in front holds
	// the connections of all its clients, and is not limited.
	ingressConns := limits.ConnsConfig{Max: cfg.Ingress.MaxConnections, PerClient: cfg.Ingress.MaxConnectionsPerClient, Exempt: trustedProxy(cfg.Ingress.TrustedProxies)}
	if err := bind("http", cfg.Ingress.HTTPAddr, s.certs.HTTPHandler(s.httpHandler()), false, ingressConns); err != nil {
		return nil, err
	}
	if cfg.ServesHTTPS() {
		if err := bind("https", cfg.Ingress.HTTPSAddr, sniMatchesHost(s.router), true, ingressConns); err != nil {
			return nil, err
		}
	}
	for _, c := range cfg.Calls {
		h, err := calling.New(calling.Config{
			Call: c, Sessions: s.store, Tokens: s.tokens, Identity: resolver, PDSClient: pdsClient, Nonces: nonces,
			HostHandler: s.router.HostHandler, Recorder: s.recorder, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		// The app is a calling port's one client: no per-client share.
		if err := bind("call:"+c.Label, c.Addr(), h, false, limits.ConnsConfig{Max: c.MaxConnections}); err != nil {
			return nil, err
		}
	}
	if cfg.Admin.Listen != "" {
		h := s.recorder.Handler(admin.HealthFuncs{Ready: s.readyCheck})
		if err := bind("admin", cfg.Admin.Listen, h, false, limits.ConnsConfig{Max: adminMaxConnections}); err != nil {
			return nil, err
		}
	}

	for _, p := range toServe {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			var err error
			if p.tls {
				err = p.srv.ServeTLS(p.ln, "", "")
			} else {
				err = p.srv.Serve(p.ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("listener stopped", "addr", p.ln.Addr().String(), "err", err)
			}
		}()
	}
	s.background(bg, nomad, s.tokens)
	close(s.ready)
	for role, addr := range s.Addrs {
		log.Info("listening", "role", role, "addr", addr)
	}
	return s, nil
}

func (s *Server) background(ctx context.Context, nomad *ingress.Nomad, tokens *calling.Tokens) {
	run := func(f func(context.Context)) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			f(ctx)
		}()
	}
	run(func(ctx context.Context) { s.store.RunCleanup(ctx, time.Minute, s.log) })
	run(func(ctx context.Context) { tokens.RunPrune(ctx, 10*time.Minute) })
	run(s.certs.Watch)
	// The listeners are up, so ACME validations can reach us now.
	run(s.certs.Prefetch)
	if nomad != nil {
		run(nomad.Run)
	}
}

// Reload re-reads certificate files (on SIGHUP).
func (s *Server) Reload() error { return s.certs.Reload() }

// Store returns the session store (tests inspect it).
func (s *Server) Store() *sessions.Store { return s.store }

// LocalCAPEM returns the local CA that signs self-signed certificates.
func (s *Server) LocalCAPEM() []byte { return s.certs.LocalCAPEM() }

func (s *Server) readyCheck(context.Context) error {
	select {
	case <-s.ready:
		return nil
	default:
		return errors.New("starting")
	}
}

// Close shuts down gracefully: listeners stop accepting, in-flight
// requests finish (bounded by the shutdown timeout), then the store closes.
func (s *Server) Close() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.shutdown)
		defer cancel()
		var wg sync.WaitGroup
		for _, srv := range s.servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := srv.Shutdown(ctx); err != nil {
					_ = srv.Close()
				}
			}()
		}
		wg.Wait()
		s.cancel()
		s.wg.Wait()
		if s.tokens != nil {
			s.tokens.Wait()
		}
		if s.store != nil {
			if err := s.store.Close(); err != nil {
				s.log.Error("close session store", "err", err)
			}
		}
	})
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

// maxStreamsPerConnection bounds the concurrent requests of one HTTP/2
// connection (Go's default is 250); nginx's default is 128.
const maxStreamsPerConnection = 100

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
		host := h.Name
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

// publicBaseURL is the https origin a public host is reached at, including
// the HTTPS port when it is not 443.
func (s *Server) publicBaseURL(h config.Host) string {
	if h.IsLocal() && h.ATProto != nil && h.ATProto.Local != 0 {
		return "http://127.0.0.1:" + strconv.Itoa(h.ATProto.Local)
	}
	_, port, _ := net.SplitHostPort(s.cfg.Ingress.HTTPSAddr)
	if port == "" || port == "443" || !h.ServesHTTPS() {
		return "https://" + h.Name
	}
	return "https://" + net.JoinHostPort(h.Name, port)
}

func (s *Server) loadClientKey() (*oauth.ClientKey, error) {
	raw, err := s.store.Key("oauth-client-es256", oauth.GenerateClientKey)
	if err != nil {
		return nil, err
	}
	return oauth.ParseClientKey(raw)
}
