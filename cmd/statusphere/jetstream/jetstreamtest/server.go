// Package jetstreamtest is an in-process Jetstream for tests: it speaks Jetstream's JSON over a
// real WebSocket, honours wantedCollections and cursor, and can drop connections mid-stream.
package jetstreamtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Conn describes one subscription the server accepted.
type Conn struct {
	// Cursor is the cursor query parameter, "" when none was sent.
	Cursor string
	// WantedCollections are the wantedCollections query parameters.
	WantedCollections []string
}

// Server is a fake Jetstream. Events are published into an ordered log; each subscriber gets
// the events at or after its cursor, or, without a cursor, those published after it connected.
type Server struct {
	srv *httptest.Server

	mu        sync.Mutex
	events    []event
	changed   chan struct{} // closed and replaced whenever events or conns change
	conns     []Conn
	dropAfter []int // for the next connections: close abruptly after sending this many events
}

type event struct {
	raw        []byte
	timeUS     int64
	kind       string
	collection string
	always     bool
}

// NewServer starts a server that is closed when the test ends.
func NewServer(t testing.TB) *Server {
	s := &Server{changed: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.subscribe))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the subscribe endpoint, ws://127.0.0.1:port/subscribe.
func (s *Server) URL() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/subscribe" }

// Close stops the server and drops its connections.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Publish appends one event, given as Jetstream's JSON, to the log. Text that does not parse
// as an event is sent to every subscriber as it is.
func (s *Server) Publish(t testing.TB, raw string) {
	t.Helper()
	var head struct {
		TimeUS int64  `json:"time_us"`
		Kind   string `json:"kind"`
		Commit *struct {
			Collection string `json:"collection"`
		} `json:"commit"`
	}
	ev := event{raw: []byte(raw)}
	if err := json.Unmarshal([]byte(raw), &head); err != nil {
		// A malformed event, published on purpose: deliver it to everyone.
		ev.always = true
	} else {
		ev.timeUS, ev.kind = head.TimeUS, head.Kind
		if head.Commit != nil {
			ev.collection = head.Commit.Collection
		}
	}
	s.mu.Lock()
	s.events = append(s.events, ev)
	s.notifyLocked()
	s.mu.Unlock()
}

// DropNextAfter makes the next connection close abruptly (no close frame) once it has sent n
// events. Calls queue up for the connections after it.
func (s *Server) DropNextAfter(n int) {
	s.mu.Lock()
	s.dropAfter = append(s.dropAfter, n)
	s.mu.Unlock()
}

// Conns returns the subscriptions accepted so far.
func (s *Server) Conns() []Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.conns)
}

// WaitConns waits until at least n subscriptions were accepted and returns them.
func (s *Server) WaitConns(t testing.TB, n int) []Conn {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		conns, changed := slices.Clone(s.conns), s.changed
		s.mu.Unlock()
		if len(conns) >= n {
			return conns
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("jetstreamtest: %d connections after 10s, want %d", len(conns), n)
		}
	}
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) subscribe(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/subscribe" {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	info := Conn{Cursor: q.Get("cursor"), WantedCollections: q["wantedCollections"]}
	var cursor int64 = -1
	if info.Cursor != "" {
		c, err := strconv.ParseInt(info.Cursor, 10, 64)
		if err != nil {
			http.Error(w, fmt.Sprintf("bad cursor %q", info.Cursor), http.StatusBadRequest)
			return
		}
		cursor = c
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()

	s.mu.Lock()
	s.conns = append(s.conns, info)
	drop := -1
	if len(s.dropAfter) > 0 {
		drop, s.dropAfter = s.dropAfter[0], s.dropAfter[1:]
	}
	next := len(s.events) // live tail without a cursor
	if cursor >= 0 {
		next = 0
	}
	s.notifyLocked()
	s.mu.Unlock()

	// Reading is needed to answer pings and notice the client leaving.
	ctx := conn.CloseRead(r.Context())
	sent := 0
	for {
		s.mu.Lock()
		var ev *event
		for next < len(s.events) && ev == nil {
			e := s.events[next]
			next++
			if e.always || (e.timeUS >= cursor && wanted(e, info.WantedCollections)) {
				ev = &e
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if ev == nil {
			select {
			case <-changed:
				continue
			case <-ctx.Done():
				return
			}
		}
		if drop >= 0 && sent >= drop {
			return // CloseNow: the client sees the connection die, as on a network failure
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := conn.Write(wctx, websocket.MessageText, ev.raw)
		cancel()
		if err != nil {
			return
		}
		sent++
	}
}

// wanted applies Jetstream's filter: identity and account events always pass; commits pass when
// their collection is wanted (or nothing is).
func wanted(e event, collections []string) bool {
	if e.kind != "commit" || len(collections) == 0 {
		return true
	}
	return slices.Contains(collections, e.collection)
}

// Commit is a commit event's JSON, as Jetstream sends it. record is the record's JSON, "" for
// a delete.
func Commit(did string, timeUS int64, op, collection, rkey, record string) string {
	commit := fmt.Sprintf(`{"rev":"3l3qo2vutsw2b","operation":%q,"collection":%q,"rkey":%q`, op, collection, rkey)
	if record != "" {
		commit += `,"record":` + record + `,"cid":"bafyreidwaivazkwu67xztlmuobx35hs2lnfh3kolmgfmucldvhd3sgzcqi"`
	}
	return fmt.Sprintf(`{"did":%q,"time_us":%d,"kind":"commit","commit":%s}}`, did, timeUS, commit)
}

// Status is the JSON of an xyz.statusphere.status record.
func Status(emoji, createdAt string) string {
	b, _ := json.Marshal(map[string]string{"$type": "xyz.statusphere.status", "status": emoji, "createdAt": createdAt})
	return string(b)
}

// Identity is an identity event's JSON.
func Identity(did, handle string, timeUS int64) string {
	return fmt.Sprintf(`{"did":%q,"time_us":%d,"kind":"identity","identity":{"did":%q,"handle":%q,"seq":1409752997,"time":"2024-09-05T06:11:04.870Z"}}`,
		did, timeUS, did, handle)
}

// Account is an account event's JSON.
func Account(did string, timeUS int64) string {
	return fmt.Sprintf(`{"did":%q,"time_us":%d,"kind":"account","account":{"active":true,"did":%q,"seq":1409753013,"time":"2024-09-05T06:11:04.870Z"}}`,
		did, timeUS, did)
}

// RunClient runs a subscriber's Run loop until the returned stop is called
// (or the test ends), and fails the test if Run returns an error. Stop may
// be called more than once.
func RunClient(t testing.TB, run func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
