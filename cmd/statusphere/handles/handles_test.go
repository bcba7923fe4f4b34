package handles_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/cmd/statusphere/handles"
	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/xrpc"
)

// callingPort fakes ioproxy's calling port answering describeRepo per User-Did.
type callingPort struct {
	mu      sync.Mutex
	calls   map[string]int
	answers map[string]string // did -> JSON body; missing: 400 RepoNotFound
	delay   time.Duration
	block   chan struct{} // when set, answers wait until it is closed
	bad     []string      // problems with the requests
	// resolves answers resolveHandle (handle -> DID), as ioproxy does
	// itself; by default built from the describeRepo answers.
	resolves map[string]string
}

func (c *callingPort) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/xrpc/com.atproto.identity.resolveHandle" {
		c.mu.Lock()
		did, ok := c.resolves[r.URL.Query().Get("handle")]
		c.mu.Unlock()
		if !ok {
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"HandleNotFound","message":"no such handle"}`)
			return
		}
		fmt.Fprintf(w, `{"did":%q}`, did)
		return
	}
	did := r.Header.Get("User-Did")
	c.mu.Lock()
	c.calls[did]++
	if r.URL.Path != "/xrpc/com.atproto.repo.describeRepo" || r.URL.Query().Get("repo") != did || r.Header.Get("Proxy-Session") != "" {
		c.bad = append(c.bad, fmt.Sprintf("%s %s User-Did=%q Proxy-Session=%q", r.Method, r.URL, did, r.Header.Get("Proxy-Session")))
	}
	body, ok := c.answers[did]
	delay, block := c.delay, c.block
	c.mu.Unlock()
	time.Sleep(delay)
	if block != nil {
		<-block
	}
	if !ok {
		w.WriteHeader(400)
		io.WriteString(w, `{"error":"RepoNotFound","message":"Could not find repo"}`)
		return
	}
	io.WriteString(w, body)
}

func (c *callingPort) count(did string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[did]
}

func describe(did, handle string, correct bool) string {
	return fmt.Sprintf(`{"handle":%q,"did":%q,"didDoc":{},"collections":["xyz.statusphere.status"],"handleIsCorrect":%v}`, handle, did, correct)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func setup(t *testing.T, answers map[string]string) (*callingPort, *handles.Resolver, *clock) {
	t.Helper()
	port := &callingPort{calls: map[string]int{}, answers: answers, resolves: map[string]string{}}
	for did, body := range answers {
		var d struct{ Handle string }
		if json.Unmarshal([]byte(body), &d) == nil && d.Handle != "" {
			port.resolves[strings.ToLower(d.Handle)] = did
		}
	}
	srv := httptest.NewServer(port)
	t.Cleanup(srv.Close)
	calling, err := xrpc.NewHTTPClient(xrpc.HTTPConfig{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := handles.New(handles.Config{Calling: calling, Now: clk.now, TTL: time.Hour, FailureTTL: time.Minute,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() {
		port.mu.Lock()
		defer port.mu.Unlock()
		for _, b := range port.bad {
			t.Errorf("bad request to the calling port: %s", b)
		}
	})
	return port, r, clk
}

func TestHandlesResolvesAndCaches(t *testing.T) {
	port, r, clk := setup(t, map[string]string{
		"did:plc:alice": describe("did:plc:alice", "Alice.Test", true),
		"did:plc:bob":   describe("did:plc:bob", "bob.test", false),        // handle does not verify
		"did:plc:eve":   describe("did:plc:mallory", "mallory.test", true), // answers for someone else
		"did:plc:zed":   describe("did:plc:zed", "<script>", true),
	})
	ctx := context.Background()
	dids := []string{"did:plc:alice", "did:plc:bob", "did:plc:eve", "did:plc:zed", "did:plc:gone", "did:plc:alice"}
	got := r.Handles(ctx, dids)
	if fmt.Sprint(got) != "map[did:plc:alice:alice.test]" {
		t.Errorf("handles = %v", got)
	}
	r.Handles(ctx, dids)
	for _, did := range []string{"did:plc:alice", "did:plc:gone"} {
		if n := port.count(did); n != 1 {
			t.Errorf("%s looked up %d times, want 1 (cached)", did, n)
		}
	}
	// Failures are retried after FailureTTL, successes after TTL.
	clk.add(2 * time.Minute)
	r.Handles(ctx, dids)
	if port.count("did:plc:gone") != 2 || port.count("did:plc:alice") != 1 {
		t.Errorf("after 2m: gone=%d alice=%d lookups", port.count("did:plc:gone"), port.count("did:plc:alice"))
	}
	clk.add(2 * time.Hour)
	r.Handles(ctx, dids)
	if port.count("did:plc:alice") != 2 {
		t.Errorf("after 2h: alice=%d lookups", port.count("did:plc:alice"))
	}
}

func TestRememberSkipsTheLookup(t *testing.T) {
	port, r, _ := setup(t, nil)
	r.Remember("did:plc:alice", "alice.test")
	r.Remember("did:plc:bob", "not a handle")
	got := r.Handles(context.Background(), []string{"did:plc:alice"})
	if got["did:plc:alice"] != "alice.test" || port.count("did:plc:alice") != 0 {
		t.Errorf("handles = %v after %d lookups", got, port.count("did:plc:alice"))
	}
}

func TestSlowLookupsDoNotHoldThePage(t *testing.T) {
	port, r, _ := setup(t, map[string]string{"did:plc:slow": describe("did:plc:slow", "slow.test", true)})
	port.block = make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	// The lookup cannot finish until block is closed: Handles returns only because ctx ends.
	if got := r.Handles(ctx, []string{"did:plc:slow"}); len(got) != 0 {
		t.Errorf("handles = %v", got)
	}
	close(port.block)
	// The lookup finishes in the background and fills the cache.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := r.Handles(context.Background(), []string{"did:plc:slow"})
		if got["did:plc:slow"] == "slow.test" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the background lookup never filled the cache")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := port.count("did:plc:slow"); n != 1 {
		t.Errorf("%d lookups, want 1 shared", n)
	}
}

func TestConcurrentPagesShareLookups(t *testing.T) {
	port, r, _ := setup(t, map[string]string{"did:plc:alice": describe("did:plc:alice", "alice.test", true)})
	port.delay = 20 * time.Millisecond
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if got := r.Handles(context.Background(), []string{"did:plc:alice"}); got["did:plc:alice"] != "alice.test" {
				t.Errorf("handles = %v", got)
			}
		})
	}
	wg.Wait()
	if n := port.count("did:plc:alice"); n != 1 {
		t.Errorf("%d lookups for 10 concurrent pages, want 1", n)
	}
}

// A PDS can claim any handle in describeRepo; the handle is shown only if
// it resolves back to the DID (ioproxy answers resolveHandle itself).
func TestSpoofedHandleIsNotShown(t *testing.T) {
	const victim, attacker = "did:plc:victimvictimvictimvictim", "did:plc:attackerattackerattacke"
	port, r, _ := setup(t, map[string]string{
		attacker: describe(attacker, "jay.bsky.team", true),
		victim:   describe(victim, "jay.bsky.team", true),
	})
	port.mu.Lock()
	port.resolves["jay.bsky.team"] = victim
	port.mu.Unlock()
	got := r.Handles(context.Background(), []string{attacker, victim})
	if got[attacker] != "" {
		t.Errorf("the attacker's PDS got its claimed handle shown: %q", got[attacker])
	}
	if got[victim] != "jay.bsky.team" {
		t.Errorf("the real owner's handle = %q", got[victim])
	}
}
