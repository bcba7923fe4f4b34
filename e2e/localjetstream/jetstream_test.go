package localjetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/ioproxy/ioproxy/e2e/atmo"
)

// Against the real PDS: a record created, then deleted, by another client
// arrives as Jetstream create and delete events; a subscriber with a
// cursor gets them again; other collections are filtered out.
func TestEventsFromTheRealPDS(t *testing.T) {
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{{Handle: "bob.test", Password: "bob-password-1"}}})
	bob := a.Accounts[0]
	j := New(Config{PDSURL: a.PDSURL, Collections: []string{"xyz.statusphere.status"}, Interval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	srv := httptest.NewServer(j)
	defer srv.Close()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/subscribe?wantedCollections=xyz.statusphere.status"

	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	defer dcancel()
	c, _, err := websocket.Dial(dctx, wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	token, err := a.Login(dctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	var created struct{ URI string }
	post := func(nsid string, in, out any) {
		t.Helper()
		if err := a.Post(dctx, token, nsid, in, out); err != nil {
			t.Fatal(err)
		}
	}
	post("com.atproto.repo.createRecord", map[string]any{
		"repo": bob.DID, "collection": "xyz.statusphere.status",
		"record": map[string]any{"$type": "xyz.statusphere.status", "status": "🚀", "createdAt": time.Now().UTC().Format(time.RFC3339)},
	}, &created)
	post("com.atproto.repo.createRecord", map[string]any{
		"repo": bob.DID, "collection": "xyz.other.thing",
		"record": map[string]any{"$type": "xyz.other.thing", "createdAt": time.Now().UTC().Format(time.RFC3339)},
	}, nil)

	read := func(c *websocket.Conn) commitEvent {
		t.Helper()
		_, msg, err := c.Read(dctx)
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		var ev commitEvent
		if err := json.Unmarshal(msg, &ev); err != nil {
			t.Fatal(err)
		}
		return ev
	}
	ev := read(c)
	rkey := created.URI[strings.LastIndex(created.URI, "/")+1:]
	if ev.DID != bob.DID || ev.Kind != "commit" || ev.Commit.Operation != "create" || ev.Commit.Collection != "xyz.statusphere.status" || ev.Commit.RKey != rkey || !strings.Contains(string(ev.Commit.Record), "🚀") || ev.TimeUS == 0 {
		t.Fatalf("create event %+v", ev)
	}
	cursor := ev.TimeUS

	post("com.atproto.repo.deleteRecord", map[string]any{"repo": bob.DID, "collection": "xyz.statusphere.status", "rkey": rkey}, nil)
	del := read(c)
	if del.Commit.Operation != "delete" || del.Commit.RKey != rkey || len(del.Commit.Record) != 0 || del.TimeUS <= cursor {
		t.Fatalf("delete event %+v", del)
	}

	// A new subscriber with the first event's cursor gets both again.
	c2, _, err := websocket.Dial(dctx, wsURL+fmt.Sprintf("&cursor=%d", cursor), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseNow()
	if ev := read(c2); ev.Commit.Operation != "create" || ev.TimeUS != cursor {
		t.Fatalf("replayed event %+v", ev)
	}
	if ev := read(c2); ev.Commit.Operation != "delete" {
		t.Fatalf("replayed event %+v", ev)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
