package ingest_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/rivo/uniseg"

	"github.com/ioproxy/ioproxy/cmd/statusphere/ingest"
	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/lex/xyz/statusphere"
	"github.com/ioproxy/ioproxy/cmd/statusphere/jetstream"
	"github.com/ioproxy/ioproxy/cmd/statusphere/store"
)

// callStore records what the ingester asks of the store; it never fails,
// so HandleEvent has no reason to.
type callStore struct {
	puts    []store.Status
	deletes []string
}

func (s *callStore) PutStatus(_ context.Context, st store.Status) error {
	s.puts = append(s.puts, st)
	return nil
}

func (s *callStore) DeleteStatus(_ context.Context, uri string) error {
	s.deletes = append(s.deletes, uri)
	return nil
}

// FuzzHandleEvent decodes arbitrary Jetstream messages as the subscriber
// does (anyone can publish a record in the collection, with any content)
// and hands them to the ingester.
//
// Properties: nothing panics; HandleEvent fails only when the store does
// (here, never); it makes at most one store call; it stores a status
// exactly when the event is a create or update commit of
// xyz.statusphere.status by a valid DID, under a TID record key, with a
// record that passes the Lexicon (1 to 32 bytes and one grapheme of valid
// UTF-8, a Lexicon datetime, as syntax.ParseDatetime reads the spec), and
// then stores exactly that record under at://<did>/<collection>/<rkey>,
// stamped with the event's time; it deletes exactly for a delete commit of
// a valid DID and key; anything else changes nothing (no zero status is
// ever stored).
func FuzzHandleEvent(f *testing.F) {
	const did = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
	for _, s := range []string{
		`{"did":"` + did + `","time_us":1795553170411587,"kind":"commit","commit":{"rev":"3n33jai3lbc2t","operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":{"$type":"xyz.statusphere.status","createdAt":"2026-06-01T12:00:00.000Z","status":"👍"},"cid":"bafyrei"}}`,
		`{"did":"` + did + `","time_us":1795553170411588,"kind":"commit","commit":{"operation":"update","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":{"$type":"xyz.statusphere.status","createdAt":"2026-06-01T12:00:00+02:00","status":"👩‍💻"}}}`,
		`{"did":"` + did + `","time_us":1795553170411589,"kind":"commit","commit":{"operation":"delete","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t"}}`,
		`{"did":"did:web:example.com","kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":{"$type":"xyz.statusphere.status","createdAt":"2026-06-01T12:00:00Z","status":"x"}}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"self","record":{"$type":"xyz.statusphere.status","createdAt":"2026-06-01T12:00:00Z","status":"x"}}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":{"$type":"xyz.statusphere.status","createdAt":"2026-06-01T12:00:00Z","status":"ab"}}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":{"$type":"xyz.statusphere.status","createdAt":"yesterday","status":"x"}}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":{"$type":"app.bsky.feed.post","createdAt":"2026-06-01T12:00:00Z","status":"x"}}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":null}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":{"$type":"xyz.statusphere.status","createdAt":"2026-06-01T12:00:00Z","status":null}}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t"}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"create","collection":"app.bsky.feed.post","rkey":"3n33jai3lbc2t","record":{}}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"truncate","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t"}}`,
		`{"did":"` + did + `","kind":"commit"}`,
		`{"did":"not a did","kind":"commit","commit":{"operation":"delete","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t"}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"delete","collection":"xyz.statusphere.status","rkey":"../../x"}}`,
		`{"did":"` + did + `/xyz.statusphere.status/3n33jai3lbc2t#","kind":"commit","commit":{"operation":"delete","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t"}}`,
		`{"did":"` + did + `","time_us":1795553170411590,"kind":"identity","identity":{"did":"` + did + `","handle":"alice.test","seq":1,"time":"2026-06-01T12:00:00Z"}}`,
		`{"did":"` + did + `","time_us":1795553170411591,"kind":"account","account":{"active":false,"did":"` + did + `","seq":2,"status":"deleted"}}`,
		`{"DID":"` + did + `","Kind":"commit","Commit":{"Operation":"create","Collection":"xyz.statusphere.status","RKey":"3n33jai3lbc2t","Record":{"$type":"xyz.statusphere.status","createdAt":"2026-06-01T12:00:00Z","status":"x"}}}`,
		`{"did":"` + did + `","time_us":-5,"kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":{"$type":"xyz.statusphere.status","createdAt":"2026-06-01T12:00:00.123456789+00:00","status":"🇫🇷"}}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":{"$type":"xyz.statusphere.status","createdAt":"2026-06-01T12:00:00-05:00","status":"\ud83d"}}}`,
		`{"did":"` + did + `","kind":"commit","commit":{"operation":"create","collection":"xyz.statusphere.status","rkey":"3n33jai3lbc2t","record":{"$type":"xyz.statusphere.status","$type":"other","createdAt":"2026-06-01T12:00:00Z","status":"x"}}}`,
		`not json`, `null`, `[]`, `{}`,
	} {
		f.Add([]byte(s))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// fuzzNow stamps events without time_us; fixed so that IndexedAt can
	// be checked.
	fuzzNow := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev jetstream.Event
		if json.Unmarshal(data, &ev) != nil {
			return // the subscriber drops it before any handler sees it
		}
		st := &callStore{}
		ing := ingest.New(ingest.Config{Store: st, Logger: log, Now: func() time.Time { return fuzzNow }})
		if err := ing.HandleEvent(context.Background(), ev); err != nil {
			t.Fatalf("HandleEvent(%s) = %v; only a store failure may fail it", data, err)
		}
		if len(st.puts)+len(st.deletes) > 1 {
			t.Fatalf("HandleEvent(%s) made %d puts and %d deletes", data, len(st.puts), len(st.deletes))
		}

		ours := ev.Kind == jetstream.KindCommit && ev.Commit != nil && ev.Commit.Collection == statusphere.StatusNSID &&
			validDID(ev.DID) && validTID(ev.Commit.RKey)
		var c jetstream.Commit
		if ev.Commit != nil {
			c = *ev.Commit
		}
		uri := "at://" + ev.DID + "/" + c.Collection + "/" + c.RKey
		rec, recOK := lexiconStatus(c.Record)
		wantPut := ours && (c.Operation == jetstream.OpCreate || c.Operation == jetstream.OpUpdate) && recOK
		wantDelete := ours && c.Operation == jetstream.OpDelete

		if wantPut != (len(st.puts) == 1) {
			t.Fatalf("HandleEvent(%s): stored %v, want %v", data, st.puts, wantPut)
		}
		if wantDelete != (len(st.deletes) == 1) {
			t.Fatalf("HandleEvent(%s): deleted %v, want %v", data, st.deletes, wantDelete)
		}
		if wantDelete && st.deletes[0] != uri {
			t.Fatalf("HandleEvent(%s) deleted %q, want %q", data, st.deletes[0], uri)
		}
		if !wantPut {
			return
		}
		got := st.puts[0]
		indexed := fuzzNow
		if ev.TimeUS > 0 {
			indexed = time.UnixMicro(ev.TimeUS)
		}
		want := store.Status{URI: uri, AuthorDID: ev.DID, Status: rec.Status, CreatedAt: rec.CreatedAt, IndexedAt: indexed}
		if got != want {
			t.Fatalf("HandleEvent(%s) stored %+v, want %+v", data, got, want)
		}
		u, err := syntax.ParseATURI(got.URI)
		if err != nil || u.Authority().String() != ev.DID || u.Collection().String() != statusphere.StatusNSID || u.RecordKey().String() != c.RKey {
			t.Fatalf("stored under %q, which reads as %v (%v)", got.URI, u, err)
		}
	})
}

func validDID(s string) bool {
	_, err := syntax.ParseDID(s)
	return err == nil
}

func validTID(s string) bool {
	_, err := syntax.ParseTID(s)
	return err == nil
}

// lexiconStatus decodes and checks a record by the Lexicon of
// xyz.statusphere.status, independently of the generated code.
func lexiconStatus(raw json.RawMessage) (store.Status, bool) {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil || fields == nil {
		return store.Status{}, false
	}
	var typ string
	if json.Unmarshal(fields["$type"], &typ) != nil || typ != statusphere.StatusNSID {
		return store.Status{}, false
	}
	// Keys are matched exactly, as the record's JSON object has them:
	// "Status" is not the Lexicon's "status".
	var status, createdAt *string
	if json.Unmarshal(fields["status"], &status) != nil || json.Unmarshal(fields["createdAt"], &createdAt) != nil ||
		status == nil || createdAt == nil {
		return store.Status{}, false
	}
	s := *status
	if !utf8.ValidString(s) || len(s) < 1 || len(s) > 32 || uniseg.GraphemeClusterCount(s) > 1 {
		return store.Status{}, false
	}
	if _, err := syntax.ParseDatetime(*createdAt); err != nil {
		return store.Status{}, false
	}
	return store.Status{Status: s, CreatedAt: *createdAt}, true
}
