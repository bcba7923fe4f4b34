// Package storetest is the one suite that every sessions.Store must pass:
// boltstore's tests and redisstore's run the same subtests, so that the
// rest of ioproxy may rely on what the interface says, whichever store a
// deployment picked. It uses nothing but the interface.
//
// A store's test calls Run with a Harness that opens stores over its data:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, storetest.Harness{Open: func(t *testing.T, opts sessions.Options) sessions.Store {
//			...open the store over the data of t.Name()...
//		}})
//	}
package storetest

import (
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/sessions"
)

// Harness opens stores over one shared body of data.
//
// Every subtest of Run has data of its own, and starts with none: Open
// must give each subtest its own data, for example by keying it by
// t.Name() (a file per name, or a key prefix per name in a shared
// server). Every store one subtest opens is opened with that subtest's t,
// and sees the same data. Subtests run in parallel, so Open is called
// from several goroutines at once. The suite closes every store it opens.
// Open runs on the subtest's goroutine: a store that is known to fail a
// subtest may skip it there (t.Skip, saying why), so that the suite stays
// whole for the other stores.
type Harness struct {
	// Open returns a new Store over the harness's data (after the
	// previous one was closed, for stores one process owns). Options
	// carry the limits and the clock. Open fails the test if the store
	// does not open.
	Open func(t *testing.T, opts sessions.Options) sessions.Store
	// Concurrent: two stores may be open at once over the same data
	// (replicas of a shared store). The suite then also checks that what
	// one writes the other sees.
	Concurrent bool
}

// propagation bounds the time a store may take to see what another store
// over the same data wrote: a store that caches sessions invalidates its
// cache asynchronously. Polling stops as soon as the write shows.
const propagation = 2 * time.Second

// A test is one subtest of Run.
type test struct {
	name string
	// shared: the test needs two stores open at once (Harness.Concurrent).
	shared bool
	run    func(t *testing.T, e *env)
}

// Run runs the suite against the stores h opens, each test a subtest.
func Run(t *testing.T, h Harness) {
	if h.Open == nil {
		t.Fatal("storetest: Harness.Open is nil")
	}
	var all []test
	for _, group := range [][]test{sessionTests, pendingTests, limitTests, lockTests, secretTests, sharedTests} {
		all = append(all, group...)
	}
	for _, tc := range all {
		t.Run(tc.name, func(t *testing.T) {
			// Each subtest has its data to itself, and most of their time
			// is spent waiting for the disk or the network.
			t.Parallel()
			if tc.shared && !h.Concurrent {
				t.Skip("the store is not shared by replicas (Harness.Concurrent is false)")
			}
			tc.run(t, newEnv(t, h))
		})
	}
}

// env is what one subtest works with: its harness, its test (whose name
// keys its data) and its clock.
type env struct {
	t     *testing.T
	h     Harness
	clock *clock
}

func newEnv(t *testing.T, h Harness) *env {
	// The clock starts at the real time, not at a fixed date: a shared
	// store may give records a time to live on its server's clock, and
	// the expiries the tests set must lie ahead of that clock too. Expiry
	// as the tests see it is the store's business, judged by opts.Now.
	return &env{t: t, h: h, clock: &clock{now: time.Now().UTC().Truncate(time.Millisecond)}}
}

// open opens a store over the subtest's data, on the subtest's clock.
func (e *env) open(opts sessions.Options) *store {
	e.t.Helper()
	opts.Now = e.clock.Now
	s := &store{Store: e.h.Open(e.t, opts), opts: opts}
	e.t.Cleanup(func() {
		if err := s.Close(); err != nil {
			e.t.Errorf("close store: %v", err)
		}
	})
	return s
}

// reopen closes s and opens the store again with the same options: what
// a restart keeps.
func (e *env) reopen(s *store) *store {
	e.t.Helper()
	if err := s.Close(); err != nil {
		e.t.Fatalf("close store: %v", err)
	}
	return e.open(s.opts)
}

// store is an open store that remembers its options and closes once,
// whether a test closes it or the cleanup does.
type store struct {
	sessions.Store
	opts sessions.Options

	once     sync.Once
	closeErr error
}

func (s *store) Close() error {
	s.once.Do(func() { s.closeErr = s.Store.Close() })
	return s.closeErr
}

// clock is a settable clock for opts.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newSession is a live session of did:plc:alice on app.example.com, made
// now, with a DPoP key so that every store shows it keeps one.
func (e *env) newSession() sessions.Session {
	e.t.Helper()
	key, err := dpop.GenerateKey()
	if err != nil {
		e.t.Fatal(err)
	}
	now := e.clock.Now()
	return sessions.Session{
		ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "app.example.com",
		DID: "did:plc:alice", Handle: "alice.test", PDS: "https://pds.example.com",
		Issuer: "https://auth.example.com", ClientID: "https://app.example.com/@/client-metadata.json",
		Scope: "atproto transition:generic", AccessToken: "at", RefreshToken: "rt",
		TokenExpiry: now.Add(time.Hour), DPoPKey: key, AuthServerNonce: "as-nonce", PDSNonce: "pds-nonce",
		CreatedAt: now, Expiry: now.Add(24 * time.Hour),
	}
}

// newPending is a sign-in in progress that expires in ttl.
func (e *env) newPending(ttl time.Duration) sessions.Pending {
	now := e.clock.Now()
	return sessions.Pending{State: sessions.NewToken(), Host: "app.example.com", Expiry: now.Add(ttl), CreatedAt: now}
}

// create stores sess, failing the test if it cannot, or if it evicted
// another.
func create(t *testing.T, s sessions.Store, sess sessions.Session) {
	t.Helper()
	evicted, err := s.Create(t.Context(), sess)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if len(evicted) != 0 {
		t.Fatalf("Create evicted %d sessions, want none", len(evicted))
	}
}

// diff names the first field in which got and want differ, or is "".
// Times are compared as instants (a store may keep them in another
// location, without the monotonic reading) and DPoP keys by thumbprint;
// every field counts, those added later too.
func diff(got, want any) string {
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range g.NumField() {
		if !g.Type().Field(i).IsExported() {
			continue // not stored
		}
		name := g.Type().Field(i).Name
		gf, wf := g.Field(i).Interface(), w.Field(i).Interface()
		switch wv := wf.(type) {
		case time.Time:
			if !gf.(time.Time).Equal(wv) {
				return name
			}
		case *dpop.Key:
			gv := gf.(*dpop.Key)
			if (gv == nil) != (wv == nil) || gv != nil && gv.Thumbprint() != wv.Thumbprint() {
				return name
			}
		default:
			if !reflect.DeepEqual(gf, wf) {
				return name
			}
		}
	}
	return ""
}

// eventually polls cond until it holds, for up to propagation: how long
// a store may take to see another's write.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(propagation)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, propagation, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
