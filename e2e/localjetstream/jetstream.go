// Package localjetstream is a Jetstream for the local atmosphere, which has
// no relay: it polls a PDS's repositories over plain XRPC JSON
// (com.atproto.sync.listRepos, com.atproto.repo.listRecords) and serves
// what changed as Jetstream's JSON events on /subscribe, with
// wantedCollections and cursor. It is for ./scripts/local and the
// end-to-end tests, so that the Statusphere ingester runs there too; it is
// not a production Jetstream (no firehose, no signatures, events of a few
// collections only).
package localjetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Config configures a Jetstream.
type Config struct {
	// PDSURL is the PDS to poll, such as http://localhost:2583.
	PDSURL string
	// Collections are the record collections to report.
	Collections []string
	// Interval between polls; default 1s.
	Interval time.Duration
	// MaxEvents bounds the event log kept for cursors; default 10000.
	MaxEvents  int
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// Jetstream polls a PDS and serves the changes.
type Jetstream struct {
	cfg Config

	// Poll state, touched only by Run.
	revs    map[string]string            // did -> last repo rev seen
	records map[string]map[string]record // did -> uri -> record

	mu      sync.Mutex
	events  []event
	lastUS  int64
	changed chan struct{} // closed and replaced when events are added
}

type record struct {
	CID   string
	Value json.RawMessage
}

type event struct {
	timeUS     int64
	collection string
	raw        []byte
}

// New returns a Jetstream; call Run to start polling.
func New(cfg Config) *Jetstream {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = 10000
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PDSURL = strings.TrimSuffix(cfg.PDSURL, "/")
	return &Jetstream{cfg: cfg, revs: map[string]string{}, records: map[string]map[string]record{}, changed: make(chan struct{})}
}

// Run polls until ctx ends. Records that exist at the first poll are
// reported as creates, so a consumer that restarts catches up.
func (j *Jetstream) Run(ctx context.Context) error {
	t := time.NewTicker(j.cfg.Interval)
	defer t.Stop()
	for {
		if err := j.Poll(ctx); err != nil && ctx.Err() == nil {
			j.cfg.Logger.Warn("local jetstream: poll failed", "pds", j.cfg.PDSURL, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Poll compares the PDS's repositories with the last poll once and
// records the differences as events.
func (j *Jetstream) Poll(ctx context.Context) error {
	repos, err := j.listRepos(ctx)
	if err != nil {
		return err
	}
	for _, r := range repos {
		if r.Rev != "" && j.revs[r.DID] == r.Rev {
			continue
		}
		now, err := j.listAll(ctx, r.DID)
		if err != nil {
			return err
		}
		j.diff(r.DID, r.Rev, j.records[r.DID], now)
		j.records[r.DID] = now
		j.revs[r.DID] = r.Rev
	}
	return nil
}

type repoInfo struct {
	DID string `json:"did"`
	Rev string `json:"rev"`
}

func (j *Jetstream) listRepos(ctx context.Context) ([]repoInfo, error) {
	var all []repoInfo
	cursor := ""
	for {
		q := url.Values{"limit": {"500"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var out struct {
			Cursor string     `json:"cursor"`
			Repos  []repoInfo `json:"repos"`
		}
		if err := j.get(ctx, "com.atproto.sync.listRepos", q, &out); err != nil {
			return nil, err
		}
		all = append(all, out.Repos...)
		if out.Cursor == "" || len(out.Repos) == 0 {
			return all, nil
		}
		cursor = out.Cursor
	}
}

func (j *Jetstream) listAll(ctx context.Context, did string) (map[string]record, error) {
	out := map[string]record{}
	for _, coll := range j.cfg.Collections {
		cursor := ""
		for {
			q := url.Values{"repo": {did}, "collection": {coll}, "limit": {"100"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page struct {
				Cursor  string `json:"cursor"`
				Records []struct {
					URI   string          `json:"uri"`
					CID   string          `json:"cid"`
					Value json.RawMessage `json:"value"`
				} `json:"records"`
			}
			if err := j.get(ctx, "com.atproto.repo.listRecords", q, &page); err != nil {
				return nil, err
			}
			for _, r := range page.Records {
				out[r.URI] = record{CID: r.CID, Value: r.Value}
			}
			if page.Cursor == "" || len(page.Records) == 0 {
				break
			}
			cursor = page.Cursor
		}
	}
	return out, nil
}

func (j *Jetstream) get(ctx context.Context, nsid string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.cfg.PDSURL+"/xrpc/"+nsid+"?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("%s: %w", nsid, err)
	}
	resp, err := j.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", nsid, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", nsid, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %.200s", nsid, resp.Status, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: %w", nsid, err)
	}
	return nil
}

// diff turns the change from before to now into events, in a stable order.
func (j *Jetstream) diff(did, rev string, before, now map[string]record) {
	var uris []string
	for uri := range now {
		uris = append(uris, uri)
	}
	for uri := range before {
		if _, ok := now[uri]; !ok {
			uris = append(uris, uri)
		}
	}
	slices.Sort(uris)
	for _, uri := range uris {
		old, had := before[uri]
		cur, has := now[uri]
		switch {
		case has && !had:
			j.publish(did, rev, "create", uri, &cur)
		case has && had && cur.CID != old.CID:
			j.publish(did, rev, "update", uri, &cur)
		case !has && had:
			j.publish(did, rev, "delete", uri, nil)
		}
	}
}

// commitEvent is Jetstream's JSON shape of a commit event.
type commitEvent struct {
	DID    string `json:"did"`
	TimeUS int64  `json:"time_us"`
	Kind   string `json:"kind"`
	Commit struct {
		Rev        string          `json:"rev"`
		Operation  string          `json:"operation"`
		Collection string          `json:"collection"`
		RKey       string          `json:"rkey"`
		Record     json.RawMessage `json:"record,omitempty"`
		CID        string          `json:"cid,omitempty"`
	} `json:"commit"`
}

func (j *Jetstream) publish(did, rev, op, uri string, rec *record) {
	// at://did/collection/rkey
	parts := strings.Split(strings.TrimPrefix(uri, "at://"), "/")
	if len(parts) != 3 {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	us := j.cfg.Now().UnixMicro()
	if us <= j.lastUS {
		us = j.lastUS + 1
	}
	j.lastUS = us
	ev := commitEvent{DID: did, TimeUS: us, Kind: "commit"}
	ev.Commit.Rev, ev.Commit.Operation, ev.Commit.Collection, ev.Commit.RKey = rev, op, parts[1], parts[2]
	if rec != nil {
		ev.Commit.Record, ev.Commit.CID = rec.Value, rec.CID
	}
	raw, err := json.Marshal(ev)
	if err != nil {
		return
	}
	j.events = append(j.events, event{timeUS: us, collection: parts[1], raw: raw})
	if over := len(j.events) - j.cfg.MaxEvents; over > 0 {
		j.events = slices.Delete(j.events, 0, over)
	}
	close(j.changed)
	j.changed = make(chan struct{})
}

// ServeHTTP serves /subscribe as Jetstream does: events of the wanted
// collections, from the cursor (time_us) when one is given, else from now
// on.
func (j *Jetstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/subscribe" {
		http.NotFound(w, r)
		return
	}
	wanted := r.URL.Query()["wantedCollections"]
	j.mu.Lock()
	next := len(j.events) // index of the next event to send
	if c := r.URL.Query().Get("cursor"); c != "" {
		cursor, err := strconv.ParseInt(c, 10, 64)
		if err != nil {
			j.mu.Unlock()
			http.Error(w, "cursor must be a number of microseconds", http.StatusBadRequest)
			return
		}
		next = 0
		for next < len(j.events) && j.events[next].timeUS < cursor {
			next++
		}
	}
	sentUS := int64(0)
	if next > 0 {
		sentUS = j.events[next-1].timeUS
	}
	j.mu.Unlock()

	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx := conn.CloseRead(r.Context())
	for {
		j.mu.Lock()
		var batch [][]byte
		for _, ev := range j.events {
			if ev.timeUS <= sentUS {
				continue
			}
			sentUS = ev.timeUS
			if len(wanted) == 0 || slices.Contains(wanted, ev.collection) {
				batch = append(batch, ev.raw)
			}
		}
		changed := j.changed
		j.mu.Unlock()
		for _, raw := range batch {
			if err := conn.Write(ctx, websocket.MessageText, raw); err != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}
