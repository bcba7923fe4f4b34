// Package server assembles a running ioproxy from a configuration: the
// session store, the OAuth clients, the ingress listeners, the calling
// ports and the admin listener. cmd/ioproxy calls it, and so do the
// end-to-end tests, which run the same assembly in-process.
package server

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/ioproxy/ioproxy/admin"
	"github.com/ioproxy/ioproxy/calling"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/ingress"
	"github.com/ioproxy/ioproxy/ingress/certs"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// Options are what a Server needs besides its configuration.
type Options struct {
	Logger *slog.Logger
	// RootCAs, when set, replaces the system roots for outbound TLS (tests).
	RootCAs *x509.CertPool
	// ShutdownTimeout bounds the wait for in-flight requests at Close.
	ShutdownTimeout time.Duration
}

// Server is a running ioproxy.
type Server struct {
	cfg      *config.Config
	log      *slog.Logger
	store    sessions.Store
	tokens   *calling.Tokens
	certs    *certs.Manager
	router   *ingress.Router
	nomad    *ingress.Nomad // nil without nomad:<service> backends
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
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &Server{cfg: cfg, log: opts.Logger, cancel: cancel, shutdown: opts.ShutdownTimeout, Addrs: map[string]string{}, ready: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	s.recorder = admin.NewRecorder(admin.RecorderConfig{Logger: s.log, Hosts: cfg.Admin.Hosts})
	if err := s.openStore(); err != nil {
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
	if s.certs, err = certs.New(ctx, certs.Config{DataDir: cfg.DataDir, TLS: cfg.TLS, Hosts: cfg.Hosts, Logger: s.log}); err != nil {
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

// openStore opens the session store in the data dir.
func (s *Server) openStore() error {
	store, err := boltstore.Open(filepath.Join(s.cfg.DataDir, "ioproxy.db"), sessions.Options{
		MaxSessions: s.cfg.Sessions.MaxSessions, MaxPerAccount: s.cfg.Sessions.MaxPerAccount,
	})
	if err != nil {
		return err
	}
	s.store = store
	s.recorder.SetSessionCounter(func() int {
		n, _ := store.Count(context.Background())
		return n
	})
	return nil
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
		Sessions:     s.store,
		Nomad:        s.nomad,
		SignIns:      signIns,
		Recorder:     s.recorder,
		StaleSession: s.tokens.RefreshLater,
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
	run(func(ctx context.Context) { s.tokens.RunPrune(ctx, 10*time.Minute) })
	run(s.certs.Watch)
	// The listeners are up, so ACME validations can reach us now.
	run(s.certs.Prefetch)
	if s.nomad != nil {
		run(s.nomad.Run)
	}
}

// Reload re-reads certificate files (on SIGHUP).
func (s *Server) Reload() error { return s.certs.Reload() }

// Store returns the session store (tests inspect it).
func (s *Server) Store() sessions.Store { return s.store }

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
