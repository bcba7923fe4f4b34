// Package jetstream subscribes to a Jetstream server (JSON over WebSocket) and hands each event
// to a Handler. It reconnects with backoff and resumes from a persisted cursor, rewound by a
// small margin, so that no event is missed; handlers must therefore be idempotent.
package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// DefaultURL is the public Jetstream instance Statusphere subscribes to by default.
const DefaultURL = "wss://jetstream2.us-east.bsky.network/subscribe"

// Event kinds.
const (
	KindCommit   = "commit"
	KindIdentity = "identity"
	KindAccount  = "account"
)

// Commit operations.
const (
	OpCreate = "create"
	OpUpdate = "update"
	OpDelete = "delete"
)

// Event is one Jetstream message.
type Event struct {
	DID string `json:"did"`
	// TimeUS is when Jetstream saw the event, in unix microseconds; it is the cursor.
	TimeUS   int64           `json:"time_us"`
	Kind     string          `json:"kind"`
	Commit   *Commit         `json:"commit,omitempty"`
	Identity json.RawMessage `json:"identity,omitempty"`
	Account  json.RawMessage `json:"account,omitempty"`
}

// Commit is the commit of a "commit" event: one record created, updated or deleted.
type Commit struct {
	Rev        string `json:"rev"`
	Operation  string `json:"operation"`
	Collection string `json:"collection"`
	RKey       string `json:"rkey"`
	// Record is the record's JSON; absent for deletes.
	Record json.RawMessage `json:"record,omitempty"`
	CID    string          `json:"cid,omitempty"`
}

// Handler processes events. An error stops the current connection: the event is delivered
// again after reconnecting. Events that are merely invalid should be logged and dropped
// (return nil), or they would be retried forever.
type Handler interface {
	HandleEvent(ctx context.Context, ev Event) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, ev Event) error

// HandleEvent implements Handler.
func (f HandlerFunc) HandleEvent(ctx context.Context, ev Event) error { return f(ctx, ev) }

// CursorStore persists the cursor between runs.
type CursorStore interface {
	// Cursor returns the saved cursor; ok is false when none was saved yet.
	Cursor(ctx context.Context) (timeUS int64, ok bool, err error)
	SaveCursor(ctx context.Context, timeUS int64) error
}

// Config configures a Subscriber.
type Config struct {
	// URL is the Jetstream subscribe endpoint, ws:// or wss://. Required.
	URL string
	// Collections are sent as wantedCollections.
	Collections []string
	// Handler receives the events. Required.
	Handler Handler
	// Cursors persists the cursor. Required.
	Cursors CursorStore
	// ResumeMargin rewinds the cursor on every (re)connection, so that events Jetstream
	// stamped slightly out of order are not skipped. Default: 5s.
	ResumeMargin time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnections. Defaults: 1s and 1m.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how often the connection is checked; an unanswered ping reconnects.
	// Default: 30s.
	PingInterval time.Duration
	// SaveInterval is how often the cursor is saved when it moved (it is also saved on every
	// disconnection and when Run ends). A cursor saved late only means replays. Default: 1s.
	SaveInterval time.Duration
	// HTTPClient dials the WebSocket. Default: http.DefaultClient's transport.
	HTTPClient *http.Client
	// UserAgent, when set, is sent on the handshake.
	UserAgent string
	// Logger receives connection and drop notices. Default: slog.Default().
	Logger *slog.Logger
}

const (
	dialTimeout = 30 * time.Second
	// Statuses are tiny, but the read limit must hold any record someone may publish in the
	// collection: a message over it would break the connection at the same event forever.
	maxMessageBytes = 4 << 20
)

// Subscriber consumes a Jetstream. Run it once.
type Subscriber struct {
	cfg  Config
	log  *slog.Logger
	last atomic.Int64 // highest time_us handled

	saveMu sync.Mutex
	saved  int64 // last time_us saved
}

// New checks cfg and returns a Subscriber.
func New(cfg Config) (*Subscriber, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("jetstream url %q: %w", cfg.URL, err)
	}
	if (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return nil, fmt.Errorf("jetstream url %q: want ws:// or wss:// with a host, e.g. %s", cfg.URL, DefaultURL)
	}
	if cfg.Handler == nil || cfg.Cursors == nil {
		return nil, errors.New("jetstream: Config.Handler and Config.Cursors are required")
	}
	if cfg.ResumeMargin <= 0 {
		cfg.ResumeMargin = 5 * time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(time.Minute, cfg.MinBackoff)
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 30 * time.Second
	}
	if cfg.SaveInterval <= 0 {
		cfg.SaveInterval = time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Subscriber{cfg: cfg, log: log.With("component", "jetstream")}, nil
}

// Run consumes events until ctx ends, reconnecting as needed. It returns nil when ctx ends and
// an error only when the saved cursor cannot be read.
func (s *Subscriber) Run(ctx context.Context) error {
	cursor, ok, err := s.cfg.Cursors.Cursor(ctx)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if ok {
		s.last.Store(cursor)
		s.saved = cursor
	}

	// The cursor is saved on a timer rather than per event: cheap when events pour in, and
	// current when they stop.
	saverCtx, stopSaver := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(s.cfg.SaveInterval)
		defer t.Stop()
		for {
			select {
			case <-saverCtx.Done():
				return
			case <-t.C:
				s.flush(saverCtx)
			}
		}
	})
	defer func() {
		stopSaver()
		wg.Wait()
		s.flush(ctx)
	}()

	attempt := 0
	for {
		received, err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		s.flush(ctx)
		if received {
			attempt = 0
		}
		delay := backoff(s.cfg.MinBackoff, s.cfg.MaxBackoff, attempt)
		attempt++
		s.log.Warn("jetstream disconnected; reconnecting", "err", err, "in", delay, "cursor", s.last.Load())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// backoff is the wait before reconnection attempt n (from 0): doubling from min up to max,
// with jitter so that many clients do not reconnect in step.
func backoff(minD, maxD time.Duration, n int) time.Duration {
	d := minD
	for range n {
		if d >= maxD/2 {
			d = maxD
			break
		}
		d *= 2
	}
	d = min(d, maxD)
	return d/2 + rand.N(d/2+1)
}

// subscribeURL is cfg.URL with wantedCollections and the cursor to resume from.
func (s *Subscriber) subscribeURL() string {
	u, _ := url.Parse(s.cfg.URL) // checked in New
	q := u.Query()
	q.Del("wantedCollections")
	q.Del("cursor")
	for _, c := range s.cfg.Collections {
		q.Add("wantedCollections", c)
	}
	if last := s.last.Load(); last > 0 {
		if c := last - s.cfg.ResumeMargin.Microseconds(); c > 0 {
			q.Set("cursor", strconv.FormatInt(c, 10))
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// session runs one connection until it fails or ctx ends; received reports whether any event
// arrived, which resets the backoff.
func (s *Subscriber) session(ctx context.Context) (received bool, err error) {
	u := s.subscribeURL()
	dialCtx, cancel := context.WithTimeout(ctx, dialTimeout)
	h := http.Header{}
	if s.cfg.UserAgent != "" {
		h.Set("User-Agent", s.cfg.UserAgent)
	}
	conn, _, err := websocket.Dial(dialCtx, u, &websocket.DialOptions{HTTPClient: s.cfg.HTTPClient, HTTPHeader: h})
	cancel()
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", u, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(maxMessageBytes)
	s.log.Info("jetstream connected", "url", u)

	// A connection can die without a close (a NAT forgetting it): ping it, and drop it when no
	// pong comes back, so that the read below fails and we reconnect.
	pingCtx, stopPing := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(s.cfg.PingInterval)
		defer t.Stop()
		for {
			select {
			case <-pingCtx.Done():
				return
			case <-t.C:
			}
			pctx, cancel := context.WithTimeout(pingCtx, s.cfg.PingInterval)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && pingCtx.Err() == nil {
				s.log.Warn("jetstream ping failed; dropping the connection", "err", err)
				conn.CloseNow()
				return
			}
		}
	})
	defer func() {
		stopPing()
		wg.Wait()
	}()

	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return received, nil
			}
			return received, fmt.Errorf("read: %w", err)
		}
		if typ != websocket.MessageText {
			s.log.Warn("jetstream: dropping a binary message; compression is not requested", "bytes", len(data))
			continue
		}
		var ev Event
		if err := json.Unmarshal(data, &ev); err != nil {
			s.log.Warn("jetstream: dropping a malformed event", "err", err, "bytes", len(data))
			continue
		}
		received = true
		if err := s.cfg.Handler.HandleEvent(ctx, ev); err != nil {
			if ctx.Err() != nil {
				return received, nil
			}
			return received, fmt.Errorf("handle event %d: %w", ev.TimeUS, err)
		}
		if ev.TimeUS > s.last.Load() {
			s.last.Store(ev.TimeUS)
		}
	}
}

// flush saves the cursor if it moved. It also runs when Run ends, after ctx has.
func (s *Subscriber) flush(ctx context.Context) {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	last := s.last.Load()
	if last == s.saved {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.cfg.Cursors.SaveCursor(ctx, last); err != nil {
		// Not fatal: a stale cursor only means replaying events, which handlers absorb.
		s.log.Warn("jetstream: cannot save the cursor", "err", err, "cursor", last)
		return
	}
	s.saved = last
}
