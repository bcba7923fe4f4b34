// Package server assembles a running ioproxy from a configuration: the
// session store, the OAuth clients, the ingress listeners, the calling
// ports and the admin listener. cmd/ioproxy calls it, and so do the
// end-to-end tests, which run the same assembly in-process.
package server

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/ioproxy/ioproxy/admin"
	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/ingress"
	"github.com/ioproxy/ioproxy/ingress/certs"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
	"github.com/ioproxy/ioproxy/sessions/redisstore"
)

// Options are what a Server needs besides its configuration.
type Options struct {
	Logger *slog.Logger
	// RootCAs, when set, replaces the system roots for outbound TLS (tests).
	RootCAs *x509.CertPool
	// ShutdownTimeout bounds the wait for in-flight requests at Close.
	ShutdownTimeout time.Duration
	// LogDropped, when set, counts the log lines the process's log
	// writer dropped (admin.LogWriter.Dropped), for the metrics.
	LogDropped func() uint64
	// KeyRefresh is how often the OAuth client key ring is read again
	// from the store (DefaultKeyRefresh when zero), so that a rotation
	// stored by `ioproxy key rotate` or another replica is published.
	KeyRefresh time.Duration
	// Load reads the configuration again, for Reload: the files the
	// running one came from, with every check `ioproxy validate` makes.
	// Without it Reload only reads the certificate files again.
	Load func() (*config.Config, hcl.Diagnostics)
	// TunnelRecheck is how often an open WebSocket is judged again
	// (ingress.DefaultTunnelRecheck when zero; tests shorten it).
	TunnelRecheck time.Duration
}

// Server is a running ioproxy.
type Server struct {
	// cfg is the configuration in use; Reload replaces it. Settings that
	// only a restart applies keep their values from the start in it.
	cfg   atomic.Pointer[config.Config]
	load  func() (*config.Config, hcl.Diagnostics)
	log   *slog.Logger
	store sessions.Store
	out   outbound
	// sessions is the session lifecycle over store, for ingress and
	// calling alike.
	sessions *sessions.Lifecycle
	// clientKeys are the confidential client's keys; nil while every
	// host uses the localhost client. Set at most once: at Start, or by
	// the commit of the first reload with a host that needs them.
	clientKeys *oauth.ClientKeys
	keyRefresh time.Duration
	// tunnelRecheck is Options.TunnelRecheck, for the router.
	tunnelRecheck time.Duration
	// providers are the OAuth clients of the hosts' oauth blocks, which a
	// reload replaces; providerHTTP is how they reach the providers.
	providers    atomic.Pointer[providerSet]
	providerHTTP *http.Client
	// certs hands out the certificates of the hosts in use; a reload
	// that changes them puts a new Manager in its place. certSettings
	// are its tlsSettings, taken when it was made: those of the running
	// configuration, taken again at a reload, would read the CA file
	// now and miss a new root under the same name.
	certs        atomic.Pointer[certs.Manager]
	certSettings string
	router       *ingress.Router
	nomad        *ingress.Nomad // nil without nomad:<service> backends
	recorder     *admin.Recorder
	// ports are the bound listeners by role ("http", "https", "admin",
	// "call:<label>", "serve:<label>"); a reload adds and closes calling
	// and serve ports. Changed under reloading (Start before it serves).
	ports map[string]*port
	// calls are the handlers of the calling ports by label, which a
	// reload keeps for an unchanged block (reusing its connections).
	calls map[string]callHandler

	// reloading serializes reloads; bg is the context of the background
	// jobs, which a reload starts more of.
	reloading sync.Mutex
	bg        context.Context
	// stopCerts ends the background jobs of the certificate Manager in use.
	stopCerts context.CancelFunc
	// closed is set, under reloading, once Close has begun.
	closed bool

	cancel context.CancelFunc
	wg     sync.WaitGroup
	// stopping counts the shutdowns of ports a reload closed.
	stopping sync.WaitGroup
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
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{log: opts.Logger, load: opts.Load, bg: bg, cancel: cancel, shutdown: opts.ShutdownTimeout, keyRefresh: cmp.Or(opts.KeyRefresh, DefaultKeyRefresh),
		tunnelRecheck: opts.TunnelRecheck, ports: map[string]*port{}, ready: make(chan struct{})}
	s.cfg.Store(cfg)
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.recorder = admin.NewRecorder(admin.RecorderConfig{Logger: s.log, Hosts: cfg.Admin.Hosts, Pprof: cfg.Admin.Pprof, LogDropped: opts.LogDropped})
	if err := s.openStore(ctx); err != nil {
		return nil, err
	}
	if s.out, err = s.newOutbound(ctx, opts.RootCAs); err != nil {
		return nil, err
	}
	oc, err := s.oauthClients(ctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	s.clientKeys = oc.keys
	s.providerHTTP = newProviderHTTP(opts)
	providers, err := s.newProviders(cfg)
	if err != nil {
		return nil, err
	}
	s.providers.Store(&providers)
	s.sessions = sessions.NewLifecycle(sessions.LifecycleConfig{Store: s.store, Clients: oc.clients, Providers: providerLookup(&s.providers), Nonces: s.out.nonces, Recorder: s.recorder, Logger: s.log})
	if err := s.newIngress(cfg, s.signIns(oc.hosts), providers); err != nil {
		return nil, err
	}
	s.certSettings = tlsSettings(cfg)
	m, err := s.newCerts(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.certs.Store(m)
	// Bind everything before serving anything, so a taken port fails the
	// start instead of leaving a half-running proxy.
	ls := s.newListeners()
	if err := s.bindAll(ls); err != nil {
		return nil, err
	}
	ls.serve(&s.wg)
	s.background(bg)
	close(s.ready)
	for role, addr := range s.Addrs() {
		s.log.Info("listening", "role", role, "addr", addr)
	}
	return s, nil
}

// config is the configuration in use.
func (s *Server) config() *config.Config { return s.cfg.Load() }

// newCerts makes the certificate Manager of cfg's hosts.
func (s *Server) newCerts(ctx context.Context, cfg *config.Config) (*certs.Manager, error) {
	certsCfg := certs.Config{DataDir: cfg.DataDir, TLS: cfg.TLS, Hosts: cfg.Hosts, Logger: s.log}
	if cfg.Sessions.Store == config.StoreRedis {
		// Replicas share their ACME certificates and order each once.
		// One process on bbolt keeps them as files in the data dir.
		certsCfg.Store = s.store
	}
	return certs.New(ctx, certsCfg)
}

// openStore opens the session store the configuration names, and counts
// its sessions for the metrics.
func (s *Server) openStore(ctx context.Context) error {
	store, err := OpenStore(ctx, s.config(), s.log)
	if err != nil {
		return err
	}
	s.store = store
	s.recorder.SetSessionCounter(func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, _ := store.Count(ctx)
		return n
	})
	return nil
}

// OpenStore opens the session store that cfg names: bbolt in the data
// dir, or the Redis server that replicas share. The commands that work
// on a deployment's store (ioproxy key rotate) open it so too.
func OpenStore(ctx context.Context, cfg *config.Config, log *slog.Logger) (sessions.Store, error) {
	c := cfg.Sessions
	opts := sessions.Options{MaxSessions: c.MaxSessions, MaxPerAccount: c.MaxPerAccount}
	switch c.Store {
	case config.StoreRedis:
		rs, err := redisstore.Open(ctx, redisstore.Config{URL: c.URL, Prefix: c.KeyPrefix, Keys: c.EncryptionKey, Options: opts, Logger: log})
		if err != nil {
			return nil, err
		}
		log.Info("session store", "store", "redis", "server", redisServer(c.URL), "key_prefix", c.KeyPrefix)
		return rs, nil
	default:
		path := filepath.Join(cfg.DataDir, "ioproxy.db")
		bs, err := boltstore.Open(boltstore.Config{Path: path, Options: opts, Keys: c.EncryptionKey})
		if err != nil {
			return nil, err
		}
		log.Info("session store", "store", "bbolt", "path", path, "sealed", c.EncryptionKey != nil)
		return bs, nil
	}
}

// redisServer is the host of a Redis url, for logs: the url may hold a
// password.
func redisServer(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	if u.Scheme == "unix" {
		return u.Path
	}
	return u.Host
}

// newIngress builds the router of every host, and the Nomad resolver when
// a host's backend needs one.
func (s *Server) newIngress(cfg *config.Config, signIns map[string]http.Handler, providers providerSet) error {
	s.nomad = s.nomadFor(cfg)
	router, err := ingress.New(ingress.Config{
		Config:       cfg,
		Sessions:     s.sessions,
		Nomad:        s.nomad,
		SignIns:      signIns,
		Providers:    providers.forIngress(),
		Recorder:     s.recorder,
		StaleSession: s.sessions.RefreshLater,
		Logger:       s.log,

		TunnelRecheck: s.tunnelRecheck,
	})
	s.router = router
	return err
}

// nomadFor is the Nomad resolver when a host or serve block of cfg needs
// one: the one running, or a new one (which the caller runs).
func (s *Server) nomadFor(cfg *config.Config) *ingress.Nomad {
	if s.nomad != nil {
		return s.nomad
	}
	// A serve block's port reaches its backend without a host in front.
	if slices.ContainsFunc(cfg.Hosts, func(h config.Host) bool { return h.Backend.Kind == config.BackendNomad }) ||
		slices.ContainsFunc(cfg.Serves, func(sv config.Serve) bool { return sv.Backend.Kind == config.BackendNomad }) {
		return ingress.NewNomad(ingress.NomadConfig{Nomad: cfg.Nomad, Logger: s.log})
	}
	return nil
}

// run runs a background job until Close.
func (s *Server) run(ctx context.Context, f func(context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f(ctx)
	}()
}

// background starts the jobs that run until Close.
func (s *Server) background(ctx context.Context) {
	s.run(ctx, func(ctx context.Context) { sessions.RunCleanup(ctx, s.store, time.Minute, s.log) })
	s.run(ctx, func(ctx context.Context) { s.sessions.RunPrune(ctx, 10*time.Minute) })
	s.runCerts(s.certs.Load())
	if s.nomad != nil {
		s.run(ctx, s.nomad.Run)
	}
	s.watchClientKeys()
	if r, ok := s.store.(resealer); ok && s.config().Sessions.EncryptionKey.Len() > 1 {
		s.run(ctx, func(ctx context.Context) { s.reseal(ctx, r) })
	}
}

// runCerts starts the background jobs of a certificate Manager, ending
// those of the one before it.
func (s *Server) runCerts(m *certs.Manager) {
	if s.stopCerts != nil {
		s.stopCerts()
	}
	ctx, stop := context.WithCancel(s.bg)
	s.stopCerts = stop
	s.run(ctx, m.Watch)
	// The listeners are up, so ACME validations can reach us now.
	s.run(ctx, m.Prefetch)
}

// watchClientKeys starts reading the client key ring again from the
// store, once there are client keys: at Start, or at the commit that
// brings the first host that needs them.
func (s *Server) watchClientKeys() {
	if s.clientKeys == nil {
		return
	}
	w := newKeyWatch(s.store, s.clientKeys, s.log)
	s.run(s.bg, func(ctx context.Context) { w.run(ctx, s.keyRefresh) })
}

// Addrs are the bound listen addresses by role ("http", "https",
// "admin", "call:<label>", "serve:<label>"), useful when a port was 0;
// a reload in progress is waited for.
func (s *Server) Addrs() map[string]string {
	s.reloading.Lock()
	defer s.reloading.Unlock()
	addrs := make(map[string]string, len(s.ports))
	for role, p := range s.ports {
		addrs[role] = p.ln.Addr().String()
	}
	return addrs
}

// resealer is a store that seals its records again with the first key
// on demand (redisstore; boltstore does it at Open).
type resealer interface {
	Reseal(ctx context.Context) (int, error)
}

// reseal seals again what older keys sealed, after a key rotation, and
// says when the old keys may go.
func (s *Server) reseal(ctx context.Context, r resealer) {
	n, err := r.Reseal(ctx)
	if err != nil {
		s.log.Error("sessions sealed with an older encryption_key were not all sealed again; keep the older keys", "resealed", n, "err", err)
		return
	}
	s.log.Info("every session is sealed with the first encryption_key; the others may go once every replica has it first", "resealed", n)
}

// Store returns the session store (tests inspect it).
func (s *Server) Store() sessions.Store { return s.store }

// LocalCAPEM returns the local CA that signs self-signed certificates.
func (s *Server) LocalCAPEM() []byte { return s.certs.Load().LocalCAPEM() }

func (s *Server) readyCheck(ctx context.Context) error {
	select {
	case <-s.ready:
	default:
		return errors.New("starting")
	}
	if c, ok := s.store.(sessions.Checker); ok {
		if err := c.Check(ctx); err != nil {
			return fmt.Errorf("session store: %w", err)
		}
	}
	return nil
}

// Close shuts down gracefully: listeners stop accepting, in-flight
// requests finish (bounded by the shutdown timeout), then the store closes.
func (s *Server) Close() {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.shutdown)
		defer cancel()
		var wg sync.WaitGroup
		s.reloading.Lock()
		s.closed = true
		for _, p := range s.ports {
			wg.Go(func() { p.shutdown(ctx) })
		}
		s.reloading.Unlock()
		wg.Wait()
		// The ports a reload stopped just before get their shutdown's
		// time too, then the WebSockets left open (which Shutdown does
		// not wait for) end with the requests' base context.
		s.stopping.Wait()
		s.cancel()
		s.wg.Wait()
		if s.sessions != nil {
			s.sessions.Wait()
		}
		if s.store != nil {
			if err := s.store.Close(); err != nil {
				s.log.Error("close session store", "err", err)
			}
		}
	})
}
