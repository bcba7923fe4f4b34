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
	"sync"
	"time"

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
}

// Server is a running ioproxy.
type Server struct {
	cfg   *config.Config
	log   *slog.Logger
	store sessions.Store
	// sessions is the session lifecycle over store, for ingress and
	// calling alike.
	sessions *sessions.Lifecycle
	// clientKeys are the confidential client's keys; nil when every
	// host uses the localhost client.
	clientKeys *oauth.ClientKeys
	keyRefresh time.Duration
	certs      *certs.Manager
	router     *ingress.Router
	nomad      *ingress.Nomad // nil without nomad:<service> backends
	recorder   *admin.Recorder
	servers    []*http.Server
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
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{cfg: cfg, log: opts.Logger, cancel: cancel, shutdown: opts.ShutdownTimeout, keyRefresh: cmp.Or(opts.KeyRefresh, DefaultKeyRefresh), Addrs: map[string]string{}, ready: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.recorder = admin.NewRecorder(admin.RecorderConfig{Logger: s.log, Hosts: cfg.Admin.Hosts, Pprof: cfg.Admin.Pprof, LogDropped: opts.LogDropped})
	if err := s.openStore(ctx); err != nil {
		return nil, err
	}
	out, err := s.newOutbound(ctx, opts.RootCAs)
	if err != nil {
		return nil, err
	}
	signIns, err := s.newSignIns(ctx, out)
	if err != nil {
		return nil, err
	}
	if err := s.newIngress(signIns); err != nil {
		return nil, err
	}
	certsCfg := certs.Config{DataDir: cfg.DataDir, TLS: cfg.TLS, Hosts: cfg.Hosts, Logger: s.log}
	if cfg.Sessions.Store == config.StoreRedis {
		// Replicas share their ACME certificates and order each once.
		// One process on bbolt keeps them as files in the data dir.
		certsCfg.Store = s.store
	}
	if s.certs, err = certs.New(ctx, certsCfg); err != nil {
		return nil, err
	}
	// Bind everything before serving anything, so a taken port fails the
	// start instead of leaving a half-running proxy.
	ls := s.newListeners()
	if err := s.bindAll(ls, out); err != nil {
		return nil, err
	}
	ls.serve(&s.wg)
	s.background(bg)
	close(s.ready)
	for role, addr := range s.Addrs {
		s.log.Info("listening", "role", role, "addr", addr)
	}
	return s, nil
}

// openStore opens the session store the configuration names, and counts
// its sessions for the metrics.
func (s *Server) openStore(ctx context.Context) error {
	store, err := OpenStore(ctx, s.cfg, s.log)
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
func (s *Server) newIngress(signIns map[string]http.Handler) error {
	for _, h := range s.cfg.Hosts {
		if h.Backend.Kind == config.BackendNomad {
			s.nomad = ingress.NewNomad(ingress.NomadConfig{Nomad: s.cfg.Nomad, Logger: s.log})
			break
		}
	}
	router, err := ingress.New(ingress.Config{
		Config:       s.cfg,
		Sessions:     s.sessions,
		Nomad:        s.nomad,
		SignIns:      signIns,
		Recorder:     s.recorder,
		StaleSession: s.sessions.RefreshLater,
		Logger:       s.log,
	})
	s.router = router
	return err
}

// background starts the jobs that run until Close.
func (s *Server) background(ctx context.Context) {
	run := func(f func(context.Context)) {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			f(ctx)
		}()
	}
	run(func(ctx context.Context) { sessions.RunCleanup(ctx, s.store, time.Minute, s.log) })
	run(func(ctx context.Context) { s.sessions.RunPrune(ctx, 10*time.Minute) })
	run(s.certs.Watch)
	// The listeners are up, so ACME validations can reach us now.
	run(s.certs.Prefetch)
	if s.nomad != nil {
		run(s.nomad.Run)
	}
	if s.clientKeys != nil {
		w := newKeyWatch(s.store, s.clientKeys, s.log)
		run(func(ctx context.Context) { w.run(ctx, s.keyRefresh) })
	}
	if r, ok := s.store.(resealer); ok && s.cfg.Sessions.EncryptionKey.Len() > 1 {
		run(func(ctx context.Context) { s.reseal(ctx, r) })
	}
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

// Reload re-reads certificate files (on SIGHUP).
func (s *Server) Reload() error { return s.certs.Reload() }

// Store returns the session store (tests inspect it).
func (s *Server) Store() sessions.Store { return s.store }

// LocalCAPEM returns the local CA that signs self-signed certificates.
func (s *Server) LocalCAPEM() []byte { return s.certs.LocalCAPEM() }

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
