package admin

import (
	"io"
	"log/slog"

	"github.com/ioproxy/ioproxy/config"
)

// NewLogger builds the process logger from the log block: JSON lines when
// format is "json", logfmt-style text otherwise, at the configured level.
// Access logs go through it too (pass it as RecorderConfig.Logger).
func NewLogger(w io.Writer, cfg config.Log) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.Level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
