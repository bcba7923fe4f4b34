package jetstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ioproxy/ioproxy/cmd/statusphere/jetstream/jetstreamtest"
)

const collection = "xyz.statusphere.status"

// memCursor is a CursorStore in memory.
type memCursor struct {
	mu    sync.Mutex
	c     int64
	ok    bool
	saves int
}

func (m *memCursor) Cursor(context.Context) (int64, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.c, m.ok, nil
}

func (m *memCursor) SaveCursor(_ context.Context, c int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.c, m.ok = c, true
	m.saves++
	return nil
}

func (m *memCursor) get() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.c
}

// recorder is a Handler that records the time_us of each event, optionally failing once.
type recorder struct {
	mu     sync.Mutex
	times  []int64
	failAt int64 // fail the first delivery of this event
	failed bool
}

func (r *recorder) HandleEvent(_ context.Context, ev Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.TimeUS == r.failAt && !r.failed {
		r.failed = true
		return errors.New("store unavailable")
	}
	r.times = append(r.times, ev.TimeUS)
	return nil
}

func (r *recorder) got() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int64(nil), r.times...)
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs a subscriber until the test ends; it returns a stop function that waits for Run.
func start(t *testing.T, cfg Config) (stop func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 10*time.Millisecond
	if cfg.ResumeMargin == 0 {
		cfg.ResumeMargin = 1500 * time.Millisecond
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return jetstreamtest.RunClient(t, s.Run)
}

// base is a realistic time_us; events below are one second apart.
const base = int64(1795553170411587)

func at(i int) int64 { return base + int64(i)*1_000_000 }

func publishStatuses(t *testing.T, js *jetstreamtest.Server, from, to int) {
	for i := from; i <= to; i++ {
		js.Publish(t, jetstreamtest.Commit("did:plc:alice", at(i), "create", collection,
			"3n33jai3lbc2"+string("abcdefghijklmnopqrstuvwxyz"[i]), jetstreamtest.Status("👍", "2026-11-24T10:00:00Z")))
	}
}

func TestFirstConnectionHasNoCursorAndWantsTheCollection(t *testing.T) {
	js := jetstreamtest.NewServer(t)
	rec := &recorder{}
	start(t, Config{URL: js.URL(), Collections: []string{collection}, Handler: rec, Cursors: &memCursor{}})
	c := js.WaitConns(t, 1)[0]
	if c.Cursor != "" || len(c.WantedCollections) != 1 || c.WantedCollections[0] != collection {
		t.Errorf("subscription = %+v", c)
	}
	publishStatuses(t, js, 1, 3)
	eventually(t, "3 events", func() bool { return len(rec.got()) == 3 })
}

func TestDisconnectMidStreamResumesFromCursorMinusMargin(t *testing.T) {
	js := jetstreamtest.NewServer(t)
	publishStatuses(t, js, 1, 6)
	js.DropNextAfter(3)
	rec := &recorder{}
	cursors := &memCursor{c: at(1) - 1, ok: true} // a previous run stopped just before event 1
	start(t, Config{URL: js.URL(), Collections: []string{collection}, Handler: rec, Cursors: cursors})

	conns := js.WaitConns(t, 2)
	if want := strconv.FormatInt(at(1)-1-1_500_000, 10); conns[0].Cursor != want {
		t.Errorf("first cursor = %s, want %s (saved cursor minus margin)", conns[0].Cursor, want)
	}
	if want := strconv.FormatInt(at(3)-1_500_000, 10); conns[1].Cursor != want {
		t.Errorf("cursor after the drop = %s, want %s (last event handled minus margin)", conns[1].Cursor, want)
	}
	// Events 1-3 before the drop; the margin replays event 2 and 3, then 4-6 follow.
	eventually(t, "all events", func() bool { return len(rec.got()) == 8 })
	want := []int64{at(1), at(2), at(3), at(2), at(3), at(4), at(5), at(6)}
	if fmt.Sprint(rec.got()) != fmt.Sprint(want) {
		t.Errorf("delivered %v, want %v", rec.got(), want)
	}
	eventually(t, "cursor saved", func() bool { return cursors.get() == at(6) })
}

func TestHandlerErrorRedeliversTheEvent(t *testing.T) {
	js := jetstreamtest.NewServer(t)
	publishStatuses(t, js, 1, 4)
	rec := &recorder{failAt: at(3)}
	cursors := &memCursor{c: at(1), ok: true}
	start(t, Config{URL: js.URL(), Collections: []string{collection}, Handler: rec, Cursors: cursors, ResumeMargin: time.Microsecond})

	conns := js.WaitConns(t, 2)
	if want := strconv.FormatInt(at(2)-1, 10); conns[1].Cursor != want {
		t.Errorf("cursor after the failure = %s, want %s: the failed event must not be skipped", conns[1].Cursor, want)
	}
	eventually(t, "event 4", func() bool {
		got := rec.got()
		return len(got) > 0 && got[len(got)-1] == at(4)
	})
	seen := map[int64]bool{}
	for _, tm := range rec.got() {
		seen[tm] = true
	}
	for i := 1; i <= 4; i++ {
		if !seen[at(i)] {
			t.Errorf("event %d was never handled", i)
		}
	}
}

func TestStopSavesTheCursorAndRestartResumes(t *testing.T) {
	js := jetstreamtest.NewServer(t)
	publishStatuses(t, js, 1, 3)
	cursors := &memCursor{c: at(1) - 1, ok: true}
	rec := &recorder{}
	stop := start(t, Config{URL: js.URL(), Collections: []string{collection}, Handler: rec, Cursors: cursors,
		SaveInterval: time.Hour}) // only the flush on stop saves
	eventually(t, "3 events", func() bool { return len(rec.got()) == 3 })
	stop()
	if got := cursors.get(); got != at(3) {
		t.Fatalf("cursor after stop = %d, want %d", got, at(3))
	}

	publishStatuses(t, js, 4, 5)
	rec2 := &recorder{}
	start(t, Config{URL: js.URL(), Collections: []string{collection}, Handler: rec2, Cursors: cursors})
	conns := js.WaitConns(t, 2)
	if want := strconv.FormatInt(at(3)-1_500_000, 10); conns[1].Cursor != want {
		t.Errorf("restart cursor = %s, want %s", conns[1].Cursor, want)
	}
	// The margin replays events 2 and 3, which the handler absorbs; 4 and 5 are new.
	eventually(t, "events 2-5", func() bool { return len(rec2.got()) == 4 })
	if want := fmt.Sprint([]int64{at(2), at(3), at(4), at(5)}); fmt.Sprint(rec2.got()) != want {
		t.Errorf("after restart got %v, want %v", rec2.got(), want)
	}
}

func TestMalformedMessagesAreSkipped(t *testing.T) {
	js := jetstreamtest.NewServer(t)
	js.Publish(t, `{"did":"did:plc:alice","time_us":"not a number","kind":"commit"}`)
	publishStatuses(t, js, 1, 1)
	rec := &recorder{}
	start(t, Config{URL: js.URL(), Handler: rec, Cursors: &memCursor{c: at(1), ok: true}})
	eventually(t, "the valid event", func() bool { return len(rec.got()) == 1 })
	if len(js.Conns()) != 1 {
		t.Errorf("a malformed message broke the connection: %d connections", len(js.Conns()))
	}
}

// TestServerDownKeepsRetrying: while Jetstream is down, Run dials again and again, each wait
// drawn from the back-off (doubling from MinBackoff up to MaxBackoff, jittered down to half),
// and returns nil when its context ends. It runs in a synctest bubble, so that the waits pass
// on the fake clock, exactly and at once; the server that is down is a transport that refuses
// every dial, since a real connection cannot be waited on inside a bubble (and a closed port
// may be handed out again).
func TestServerDownKeepsRetrying(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const minBackoff, maxBackoff, runFor = time.Second, 8 * time.Second, time.Minute
		var mu sync.Mutex
		var dials []time.Time
		down := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
			mu.Lock()
			defer mu.Unlock()
			dials = append(dials, time.Now())
			return nil, errors.New("connection refused")
		})}
		s, err := New(Config{URL: "ws://jetstream.test/subscribe", Handler: &recorder{}, Cursors: &memCursor{}, Logger: quiet(),
			MinBackoff: minBackoff, MaxBackoff: maxBackoff, HTTPClient: down})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), runFor)
		defer cancel()
		if err := s.Run(ctx); err != nil {
			t.Errorf("Run = %v, want nil when its context ends", err)
		}

		mu.Lock()
		defer mu.Unlock()
		// Even with every wait at its ceiling (1+2+4+8 s, then 8 s each), a minute holds
		// ten dials.
		if len(dials) < 10 {
			t.Fatalf("%d dials in %s, want at least 10", len(dials), runFor)
		}
		ceil := minBackoff
		for i := 1; i < len(dials); i++ {
			if gap := dials[i].Sub(dials[i-1]); gap < ceil/2 || gap > ceil {
				t.Errorf("wait before dial %d = %v, want within [%v, %v]", i+1, gap, ceil/2, ceil)
			}
			ceil = min(2*ceil, maxBackoff)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "http://jetstream.example/subscribe", Handler: &recorder{}, Cursors: &memCursor{}},
		{URL: "wss://", Handler: &recorder{}, Cursors: &memCursor{}},
		{URL: "wss://jetstream.example/subscribe", Cursors: &memCursor{}},
		{URL: "wss://jetstream.example/subscribe", Handler: &recorder{}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestSubscribeURLKeepsOtherParameters(t *testing.T) {
	s, err := New(Config{URL: "wss://js.example/subscribe?compress=false&cursor=5", Collections: []string{"a.b.c", "d.e.f"},
		Handler: &recorder{}, Cursors: &memCursor{}, ResumeMargin: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.subscribeURL(), "wss://js.example/subscribe?compress=false&wantedCollections=a.b.c&wantedCollections=d.e.f"; got != want {
		t.Errorf("url = %s, want %s", got, want)
	}
	s.last.Store(5_000_000)
	if got, want := s.subscribeURL(), "wss://js.example/subscribe?compress=false&cursor=4000000&wantedCollections=a.b.c&wantedCollections=d.e.f"; got != want {
		t.Errorf("url = %s, want %s", got, want)
	}
}

func TestBackoff(t *testing.T) {
	for n := range 12 {
		d := backoff(time.Second, time.Minute, n)
		ceil := min(time.Second<<n, time.Minute)
		if d < ceil/2 || d > ceil {
			t.Errorf("backoff(%d) = %v, want within [%v, %v]", n, d, ceil/2, ceil)
		}
	}
}
