// Package ingest turns Jetstream events into stored statuses: it validates each
// xyz.statusphere.status record against its Lexicon and writes or deletes it by URI.
package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/lex/lexutil"
	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/lex/xyz/statusphere"
	"github.com/ioproxy/ioproxy/cmd/statusphere/jetstream"
	"github.com/ioproxy/ioproxy/cmd/statusphere/store"
)

// Store is where statuses go.
type Store interface {
	PutStatus(ctx context.Context, st store.Status) error
	DeleteStatus(ctx context.Context, uri string) error
}

// Config configures an Ingester.
type Config struct {
	Store Store
	// Logger receives a line for each dropped record. Default: slog.Default().
	Logger *slog.Logger
	// Now stamps records whose event has no time_us. Default: time.Now.
	Now func() time.Time
}

// Ingester is a jetstream.Handler for Statusphere.
type Ingester struct {
	store Store
	log   *slog.Logger
	now   func() time.Time
}

var _ jetstream.Handler = (*Ingester)(nil)

// New returns an Ingester.
func New(cfg Config) *Ingester {
	i := &Ingester{store: cfg.Store, log: cfg.Logger, now: cfg.Now}
	if i.log == nil {
		i.log = slog.Default()
	}
	i.log = i.log.With("component", "ingest")
	if i.now == nil {
		i.now = time.Now
	}
	return i
}

// HandleEvent implements jetstream.Handler. Identity and account events, and commits to other
// collections, are ignored; invalid statuses are logged and dropped; only a store failure is an
// error (the event is then retried).
func (i *Ingester) HandleEvent(ctx context.Context, ev jetstream.Event) error {
	if ev.Kind != jetstream.KindCommit {
		return nil
	}
	c := ev.Commit
	if c == nil {
		i.log.Warn("dropping a commit event without a commit", "did", ev.DID, "time_us", ev.TimeUS)
		return nil
	}
	if c.Collection != statusphere.StatusNSID {
		return nil
	}
	if !lexutil.ValidDID(ev.DID) {
		i.log.Warn("dropping a status with an invalid DID", "did", ev.DID, "time_us", ev.TimeUS)
		return nil
	}
	uri := fmt.Sprintf("at://%s/%s/%s", ev.DID, c.Collection, c.RKey)
	if err := statusphere.ValidateStatusKey(c.RKey); err != nil {
		i.log.Warn("dropping an invalid status", "uri", uri, "operation", c.Operation, "err", err)
		return nil
	}

	switch c.Operation {
	case jetstream.OpCreate, jetstream.OpUpdate:
		rec, err := statusphere.DecodeStatus(c.Record)
		if err != nil {
			i.log.Warn("dropping an invalid status", "uri", uri, "operation", c.Operation, "err", err)
			return nil
		}
		indexed := i.now()
		if ev.TimeUS > 0 {
			// Jetstream's time, not ours: a status ingested late (after downtime) keeps its place.
			indexed = time.UnixMicro(ev.TimeUS)
		}
		return i.store.PutStatus(ctx, store.Status{
			URI:       uri,
			AuthorDID: ev.DID,
			Status:    rec.Status,
			CreatedAt: rec.CreatedAt,
			IndexedAt: indexed,
		})
	case jetstream.OpDelete:
		return i.store.DeleteStatus(ctx, uri)
	default:
		i.log.Warn("dropping a commit with an unknown operation", "uri", uri, "operation", c.Operation)
		return nil
	}
}
