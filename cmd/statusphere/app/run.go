package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Run serves the app and runs its ingester until ctx ends, then shuts down gracefully. It
// returns an error when the app cannot start or the server fails.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	defer a.Close()

	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return fmt.Errorf("statusphere: listen on %s: %w", cfg.Addr, err)
		}
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		if err := a.Ingest(ctx); err != nil {
			errs <- err
			cancel()
		}
	})
	wg.Go(func() {
		a.log.Info("statusphere listening", "addr", ln.Addr().String(), "calling_port", a.cfg.ProxyURL, "jetstream", a.cfg.JetstreamURL, "db", a.cfg.DBPath)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("statusphere: serve: %w", err)
			cancel()
		}
	})

	<-ctx.Done()
	shutdownCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer stop()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		a.log.Warn("statusphere: shutdown", "err", err)
	}
	wg.Wait()
	close(errs)
	err = errors.Join(collect(errs)...)
	a.log.Info("statusphere stopped", "err", err)
	return err
}

func collect(errs <-chan error) []error {
	var out []error
	for err := range errs {
		out = append(out, err)
	}
	return out
}
