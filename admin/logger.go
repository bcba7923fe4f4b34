package admin

import (
	"io"
	"log/slog"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/redact"
)

// NewLogger builds the process logger from the log block: JSON lines when
// format is "json", logfmt-style text otherwise, at the configured level.
// Access logs go through it too (pass it as RecorderConfig.Logger).
//
// Every record is scrubbed by redact.NewHandler on its way out: errors from
// HTTP clients and OAuth exchanges carry URLs with queries and echo tokens,
// and no log line may hold either, whichever call site logged it.
func NewLogger(w io.Writer, cfg config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Level}
	var h slog.Handler
	if cfg.Format == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(redact.NewHandler(h))
}
