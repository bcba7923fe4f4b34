package jetstream

import (
	"context"
	"net/url"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// fuzzSubscriber returns a Subscriber for rawURL, or nil when New refuses
// the configuration.
func fuzzSubscriber(rawURL string, collections []string, margin, minB, maxB time.Duration) *Subscriber {
	s, err := New(Config{
		URL:          rawURL,
		Collections:  collections,
		Handler:      HandlerFunc(func(context.Context, Event) error { return nil }),
		Cursors:      &memCursor{},
		ResumeMargin: margin,
		MinBackoff:   minB,
		MaxBackoff:   maxB,
	})
	if err != nil {
		return nil
	}
	return s
}

// FuzzSubscribeURL checks the URL each (re)connection subscribes with,
// built from the configured Jetstream URL (which may carry parameters of
// its own) and the cursor of the last event handled.
//
// Properties: for a URL that New accepts, the subscribe URL parses, keeps
// the scheme, host, path, fragment and every other query parameter, asks
// for exactly the configured collections, in order, and carries a cursor
// exactly when the last event's time minus the resume margin is positive,
// equal to that difference: never one from the configured URL, which
// would skip or replay events.
func FuzzSubscribeURL(f *testing.F) {
	for _, s := range []struct {
		url    string
		c1, c2 string
		last   int64
	}{
		{DefaultURL, "xyz.statusphere.status", "", 0},
		{DefaultURL, "xyz.statusphere.status", "app.bsky.feed.post", 1795553170411587},
		{"ws://localhost:6008/subscribe?compress=false&wantedCollections=old&cursor=123", "xyz.statusphere.status", "", 1795553170411587},
		{"wss://js.example/subscribe?wantedDids=did:plc:abc&wantedDids=did:plc:def", "a&b=c", "x y", 4_000_000},
		{"wss://js.example/subscribe?cursor=1&cursor=2#frag", "", "", 5_000_001},
		{"wss://js.example/subscribe?a=%zz&b=1;c=2", "z", "", -1},
		{"ws://[::1]:6008/", "xyz.statusphere.status", "xyz.statusphere.status", 1 << 62},
		{"wss://user:pw@js.example/subscribe", "", "", 9_223_372_036_854_775_807},
		{"http://js.example/subscribe", "", "", 0}, {"wss:///subscribe", "", "", 0}, {"wss://js.example/%2e%2e/", "", "", 0},
	} {
		f.Add(s.url, s.c1, s.c2, s.last)
	}
	const margin = 5 * time.Second
	f.Fuzz(func(t *testing.T, rawURL, c1, c2 string, last int64) {
		var colls []string
		for _, c := range []string{c1, c2} {
			if c != "" {
				colls = append(colls, c)
			}
		}
		s := fuzzSubscriber(rawURL, colls, margin, 0, 0)
		if s == nil {
			return
		}
		if last > 0 {
			s.last.Store(last)
		}
		orig, err := url.Parse(rawURL)
		if err != nil {
			t.Fatalf("New accepted %q, which does not parse: %v", rawURL, err)
		}
		got := s.subscribeURL()
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("subscribe URL %q of %q does not parse: %v", got, rawURL, err)
		}
		if u.Scheme != orig.Scheme || u.Host != orig.Host || u.Path != orig.Path || u.Fragment != orig.Fragment || !reflect.DeepEqual(u.User, orig.User) {
			t.Fatalf("subscribe URL %q of %q changed the scheme, host, path, user or fragment", got, rawURL)
		}
		q, want := u.Query(), orig.Query()
		if !reflect.DeepEqual(q["wantedCollections"], colls) {
			t.Fatalf("subscribe URL %q asks for %q, want %q", got, q["wantedCollections"], colls)
		}
		var wantCursor []string
		if c := last - margin.Microseconds(); last > 0 && c > 0 {
			wantCursor = []string{strconv.FormatInt(c, 10)}
		}
		if !reflect.DeepEqual(q["cursor"], wantCursor) {
			t.Fatalf("subscribe URL %q of %q (last %d) has cursor %q, want %q", got, rawURL, last, q["cursor"], wantCursor)
		}
		for _, k := range []string{"wantedCollections", "cursor"} {
			delete(q, k)
			delete(want, k)
		}
		if len(q) != 0 || len(want) != 0 {
			if !reflect.DeepEqual(q, want) {
				t.Fatalf("subscribe URL %q of %q has the other parameters %v, want %v", got, rawURL, q, want)
			}
		}
	})
}

// FuzzBackoff checks the wait between reconnections for any configured
// bounds and attempt number.
//
// Property: after New's defaults, every wait is at least half the minimum
// and at most the maximum: never negative, never a busy loop, never an
// overflowed duration.
func FuzzBackoff(f *testing.F) {
	f.Add(int64(0), int64(0), uint16(0))
	f.Add(int64(time.Second), int64(time.Minute), uint16(10))
	f.Add(int64(time.Minute), int64(time.Second), uint16(3))
	f.Add(int64(1), int64(1<<62), uint16(65535))
	f.Add(int64(1<<62), int64(9_223_372_036_854_775_807), uint16(2))
	f.Add(int64(-5), int64(-1), uint16(1))
	f.Fuzz(func(t *testing.T, minB, maxB int64, n uint16) {
		s := fuzzSubscriber(DefaultURL, nil, 0, time.Duration(minB), time.Duration(maxB))
		if s == nil {
			t.Fatal("New refused the default URL")
		}
		lo, hi := s.cfg.MinBackoff, s.cfg.MaxBackoff
		if lo <= 0 || hi < lo {
			t.Fatalf("New(%d, %d) set the bounds %s, %s", minB, maxB, lo, hi)
		}
		if d := backoff(lo, hi, int(n)); d < lo/2 || d > hi {
			t.Fatalf("backoff(%s, %s, %d) = %s", lo, hi, n, d)
		}
	})
}
