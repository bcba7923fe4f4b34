package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/cmd/statusphere/ingest"
	"github.com/ioproxy/ioproxy/cmd/statusphere/jetstream"
	"github.com/ioproxy/ioproxy/cmd/statusphere/jetstream/jetstreamtest"
	"github.com/ioproxy/ioproxy/cmd/statusphere/store"
)

const coll = "xyz.statusphere.status"

// logBuffer collects log output from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// fakeStore records what the ingester does.
type fakeStore struct {
	puts    []store.Status
	deletes []string
	err     error
}

func (f *fakeStore) PutStatus(_ context.Context, st store.Status) error {
	if f.err != nil {
		return f.err
	}
	f.puts = append(f.puts, st)
	return nil
}

func (f *fakeStore) DeleteStatus(_ context.Context, uri string) error {
	if f.err != nil {
		return f.err
	}
	f.deletes = append(f.deletes, uri)
	return nil
}

func decode(t *testing.T, raw string) jetstream.Event {
	t.Helper()
	var ev jetstream.Event
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestHandleEvent(t *testing.T) {
	const did = "did:plc:alice"
	const rkey = "3n33jai3lbc2t"
	const uri = "at://did:plc:alice/xyz.statusphere.status/3n33jai3lbc2t"
	ok := jetstreamtest.Status("👍", "2026-11-24T10:00:00.000Z")
	tests := []struct {
		name    string
		raw     string
		put     string // the emoji stored, if any
		deleted bool
		logged  string // part of the log line for a dropped record
	}{
		{"create", jetstreamtest.Commit(did, 1795553170411587, "create", coll, rkey, ok), "👍", false, ""},
		{"update", jetstreamtest.Commit(did, 1795553170411587, "update", coll, rkey, jetstreamtest.Status("🦋", "2026-11-24T10:00:00Z")), "🦋", false, ""},
		{"delete", jetstreamtest.Commit(did, 1795553170411587, "delete", coll, rkey, ""), "", true, ""},
		{"zwj emoji", jetstreamtest.Commit(did, 1, "create", coll, rkey, jetstreamtest.Status("👩‍💻", "2026-11-24T10:00:00Z")), "👩‍💻", false, ""},
		{"identity", jetstreamtest.Identity(did, "alice.test", 1), "", false, ""},
		{"account", jetstreamtest.Account(did, 1), "", false, ""},
		{"other collection", jetstreamtest.Commit(did, 1, "create", "app.bsky.feed.post", rkey, `{"$type":"app.bsky.feed.post","text":"hi"}`), "", false, ""},
		{"two graphemes", jetstreamtest.Commit(did, 1, "create", coll, rkey, jetstreamtest.Status("👍👍", "2026-11-24T10:00:00Z")), "", false, "graphemes"},
		{"too long", jetstreamtest.Commit(did, 1, "create", coll, rkey, jetstreamtest.Status("👨🏻‍👩🏻‍👧🏻‍👦🏻", "2026-11-24T10:00:00Z")), "", false, "at most 32"},
		{"empty", jetstreamtest.Commit(did, 1, "create", coll, rkey, jetstreamtest.Status("", "2026-11-24T10:00:00Z")), "", false, "at least 1"},
		{"bad createdAt", jetstreamtest.Commit(did, 1, "create", coll, rkey, jetstreamtest.Status("👍", "yesterday")), "", false, "datetime"},
		{"wrong $type", jetstreamtest.Commit(did, 1, "create", coll, rkey, `{"$type":"app.bsky.feed.post","status":"👍","createdAt":"2026-11-24T10:00:00Z"}`), "", false, "$type"},
		{"no record", jetstreamtest.Commit(did, 1, "create", coll, rkey, ""), "", false, "not a JSON object"},
		{"rkey not a TID", jetstreamtest.Commit(did, 1, "create", coll, "self", ok), "", false, "not a TID"},
		{"bad did", jetstreamtest.Commit("alice", 1, "create", coll, rkey, ok), "", false, "invalid DID"},
		{"unknown operation", jetstreamtest.Commit(did, 1, "frobnicate", coll, rkey, ok), "", false, "unknown operation"},
		{"commit without commit", `{"did":"did:plc:alice","time_us":1,"kind":"commit"}`, "", false, "without a commit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			fs := &fakeStore{}
			ing := ingest.New(ingest.Config{Store: fs, Logger: logs.logger()})
			if err := ing.HandleEvent(context.Background(), decode(t, tt.raw)); err != nil {
				t.Fatalf("HandleEvent: %v", err)
			}
			switch {
			case tt.put != "":
				if len(fs.puts) != 1 || fs.puts[0].Status != tt.put || fs.puts[0].URI != uri || fs.puts[0].AuthorDID != did {
					t.Errorf("puts = %+v", fs.puts)
				}
			case len(fs.puts) != 0:
				t.Errorf("stored %+v", fs.puts)
			}
			if tt.deleted != (len(fs.deletes) == 1 && fs.deletes[0] == uri) {
				t.Errorf("deletes = %v", fs.deletes)
			}
			if tt.logged != "" && !strings.Contains(logs.String(), tt.logged) {
				t.Errorf("log = %q, want it to mention %q", logs.String(), tt.logged)
			}
			if tt.logged == "" && logs.String() != "" {
				t.Errorf("unexpected log: %s", logs.String())
			}
		})
	}
}

func TestStoreErrorIsReturned(t *testing.T) {
	fs := &fakeStore{err: errors.New("disk full")}
	ing := ingest.New(ingest.Config{Store: fs})
	raw := jetstreamtest.Commit("did:plc:alice", 1, "create", coll, "3n33jai3lbc2t", jetstreamtest.Status("👍", "2026-11-24T10:00:00Z"))
	if err := ing.HandleEvent(context.Background(), decode(t, raw)); err == nil {
		t.Error("a store failure was swallowed; the event would be lost")
	}
}

// pipeline runs the real subscriber into the real store until stop is called.
func pipeline(t *testing.T, js *jetstreamtest.Server, st *store.Store, logs *logBuffer) (stop func()) {
	t.Helper()
	sub, err := jetstream.New(jetstream.Config{
		URL:          js.URL(),
		Collections:  []string{coll},
		Handler:      ingest.New(ingest.Config{Store: st, Logger: logs.logger()}),
		Cursors:      st,
		ResumeMargin: 1500 * time.Millisecond,
		MinBackoff:   time.Millisecond,
		MaxBackoff:   10 * time.Millisecond,
		SaveInterval: 10 * time.Millisecond,
		Logger:       logs.logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return jetstreamtest.RunClient(t, sub.Run)
}

// snapshot renders the stored statuses, newest first, as "handle-ish:emoji" for comparison.
func snapshot(t *testing.T, st *store.Store) string {
	t.Helper()
	all, err := st.LatestStatuses(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var parts []string
	for _, s := range all {
		parts = append(parts, fmt.Sprintf("%s/%s:%s", strings.TrimPrefix(s.AuthorDID, "did:plc:"), s.URI[strings.LastIndex(s.URI, "/")+1:], s.Status))
	}
	return strings.Join(parts, " ")
}

func waitFor(t *testing.T, st *store.Store, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := snapshot(t, st)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("store = %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPipeline runs Jetstream JSON through a real WebSocket into SQLite: valid statuses are
// stored once, invalid ones dropped with a log line, updates and deletes applied, identity and
// account events ignored, and a dropped connection and a restart resume without loss.
func TestPipeline(t *testing.T) {
	base := int64(1795553170411587)
	at := func(i int) int64 { return base + int64(i)*1_000_000 }
	rk := func(i int) string { return "3n33jai3lbc2" + string("abcdefghijklmnopqrstuvwxyz"[i]) }
	created := "2026-11-24T10:00:00.000Z"

	js := jetstreamtest.NewServer(t)
	path := filepath.Join(t.TempDir(), "statusphere.sqlite")
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { st.Close() }()
	// As if a previous run had stopped just before these events.
	if err := st.SaveCursor(context.Background(), at(1)-1); err != nil {
		t.Fatal(err)
	}

	for _, raw := range []string{
		jetstreamtest.Commit("did:plc:alice", at(1), "create", coll, rk(1), jetstreamtest.Status("👍", created)),
		jetstreamtest.Identity("did:plc:alice", "alice.test", at(2)),
		jetstreamtest.Commit("did:plc:bob", at(3), "create", coll, rk(3), jetstreamtest.Status("👍👍", created)), // invalid
		jetstreamtest.Commit("did:plc:bob", at(4), "create", coll, rk(4), jetstreamtest.Status("🦋", created)),
		// The connection drops here, after 4 events; the margin replays 3 and 4.
		jetstreamtest.Account("did:plc:carol", at(5)),
		jetstreamtest.Commit("did:plc:carol", at(6), "create", coll, rk(6), jetstreamtest.Status("🚀", "not a date")), // invalid
		jetstreamtest.Commit("did:plc:alice", at(7), "update", coll, rk(1), jetstreamtest.Status("🤓", created)),
		jetstreamtest.Commit("did:plc:carol", at(8), "create", coll, rk(8), jetstreamtest.Status("🧠", created)),
		jetstreamtest.Commit("did:plc:carol", at(9), "create", "app.bsky.feed.post", rk(9), `{"$type":"app.bsky.feed.post","text":"hi"}`),
	} {
		js.Publish(t, raw)
	}
	js.DropNextAfter(4)
	var logs logBuffer
	stop := pipeline(t, js, st, &logs)

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log:\n%s", logs.String())
		}
	})
	waitFor(t, st, "carol/3n33jai3lbc2i:🧠 alice/3n33jai3lbc2b:🤓 bob/3n33jai3lbc2e:🦋")
	conns := js.WaitConns(t, 2)
	if want := strconv.FormatInt(at(4)-1_500_000, 10); conns[1].Cursor != want {
		t.Errorf("cursor after the drop = %s, want %s", conns[1].Cursor, want)
	}
	for _, c := range conns {
		if len(c.WantedCollections) != 1 || c.WantedCollections[0] != coll {
			t.Errorf("wantedCollections = %v", c.WantedCollections)
		}
	}
	if n := strings.Count(logs.String(), "dropping an invalid status"); n < 2 {
		t.Errorf("%d drop lines, want one per invalid record (and its replay):\n%s", n, logs.String())
	}
	for _, want := range []string{"2 graphemes", "not a valid datetime", "jetstream disconnected"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log does not mention %q:\n%s", want, logs.String())
		}
	}

	// Restart: the cursor was saved; a new run resumes from it, replays the margin without
	// duplicates, and applies what happened in between.
	stop()
	saved, ok, err := st.Cursor(context.Background())
	// Event 9 (another collection) was filtered out by Jetstream, so 8 is the last one seen.
	if err != nil || !ok || saved != at(8) {
		t.Fatalf("saved cursor = %d, %v, %v; want %d", saved, ok, err, at(8))
	}
	st.Close()
	if st, err = store.Open(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	js.Publish(t, jetstreamtest.Commit("did:plc:bob", at(10), "delete", coll, rk(4), ""))
	js.Publish(t, jetstreamtest.Commit("did:plc:dave", at(11), "create", coll, rk(11), jetstreamtest.Status("🦋", created)))
	pipeline(t, js, st, &logs)
	conns = js.WaitConns(t, 3)
	if want := strconv.FormatInt(at(8)-1_500_000, 10); conns[2].Cursor != want {
		t.Errorf("cursor after restart = %s, want %s", conns[2].Cursor, want)
	}
	waitFor(t, st, "dave/3n33jai3lbc2l:🦋 carol/3n33jai3lbc2i:🧠 alice/3n33jai3lbc2b:🤓")
}
