// Command statusphere is the Statusphere example app, run behind ioproxy: statuses in SQLite,
// fed by Jetstream, written to each user's repository through ioproxy's calling port.
//
// Environment: PORT (default 3000), ATPROTO_PROXY (the calling port, required),
// JETSTREAM_URL (default the public Jetstream; "off" for none), STATUSPHERE_DB (default
// statusphere.sqlite), LOG_LEVEL (debug, info, warn, error; default info).
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ioproxy/ioproxy/cmd/statusphere/app"
)

func main() {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("LOG_LEVEL"))); err != nil && os.Getenv("LOG_LEVEL") != "" {
		slog.Error("LOG_LEVEL: want debug, info, warn or error", "value", os.Getenv("LOG_LEVEL"))
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg, err := app.ConfigFromEnv(os.Getenv)
	if err != nil {
		logger.Error("statusphere: bad configuration", "err", err)
		os.Exit(2)
	}
	cfg.Logger = logger

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app.Run(ctx, cfg); err != nil {
		logger.Error("statusphere stopped", "err", err)
		os.Exit(1)
	}
}
