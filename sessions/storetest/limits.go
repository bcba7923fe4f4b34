package storetest

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/sessions"
)

var limitTests = []test{
	{name: "SessionSizeLimits", run: testSessionSizeLimits},
	{name: "SessionCaps", run: testSessionCaps},
	{name: "SessionCapsAtOnce", run: testSessionCapsAtOnce},
	{name: "ProviderAccounts", run: testProviderAccounts},
	{name: "PendingCap", run: testPendingCap},
	{name: "PendingShares", run: testPendingShares},
}

// sizeCases are sessions over a size limit, each named by the field the
// error must name.
var sizeCases = []struct {
	field string
	edit  func(*sessions.Session)
}{
	{"access token", func(x *sessions.Session) { x.AccessToken = strings.Repeat("a", sessions.MaxTokenBytes+1) }},
	{"refresh token", func(x *sessions.Session) { x.RefreshToken = strings.Repeat("a", sessions.MaxTokenBytes+1) }},
	{"scope", func(x *sessions.Session) { x.Scope = strings.Repeat("a", sessions.MaxScopeBytes+1) }},
	{"handle", func(x *sessions.Session) { x.Handle = strings.Repeat("a", sessions.MaxHandleBytes+1) }},
	{"DID", func(x *sessions.Session) { x.DID = "did:web:" + strings.Repeat("a", sessions.MaxDIDBytes) }},
	{"PDS URL", func(x *sessions.Session) { x.PDS = "https://" + strings.Repeat("a", sessions.MaxURLBytes) }},
	{"issuer", func(x *sessions.Session) { x.Issuer = "https://" + strings.Repeat("a", sessions.MaxURLBytes) }},
	{"client id", func(x *sessions.Session) { x.ClientID = "https://" + strings.Repeat("a", sessions.MaxURLBytes) }},
	{"authorization server nonce", func(x *sessions.Session) { x.AuthServerNonce = strings.Repeat("n", sessions.MaxNonceBytes+1) }},
	{"PDS nonce", func(x *sessions.Session) { x.PDSNonce = strings.Repeat("n", sessions.MaxNonceBytes+1) }},
	// JSON stores '<' as six bytes: fields under their limits must not
	// add up to more than MaxRecordBytes as stored.
	{"stored", func(x *sessions.Session) {
		x.AccessToken, x.RefreshToken, x.Scope = strings.Repeat("<", sessions.MaxTokenBytes), strings.Repeat(">", sessions.MaxTokenBytes), strings.Repeat("&", sessions.MaxScopeBytes)
	}},
	// Tokens and scope are printable ASCII: anything else would be
	// stored as escapes too.
	{"access token", func(x *sessions.Session) { x.AccessToken = "tok\x00en" }},
	{"refresh token", func(x *sessions.Session) { x.RefreshToken = "tokén" }},
	{"scope", func(x *sessions.Session) { x.Scope = "atproto\nrepo:x" }},
	{"PDS nonce", func(x *sessions.Session) { x.PDSNonce = "n\x01" }},
}

// testSessionSizeLimits: a session over a limit is refused whole, when it
// is made and when an update would make it so.
func testSessionSizeLimits(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	for i, tc := range sizeCases {
		sess := e.newSession()
		tc.edit(&sess)
		if _, err := s.Create(ctx, sess); !errors.Is(err, sessions.ErrTooLarge) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Create = %v, want ErrTooLarge naming the field", tc.field, err)
		}
		if _, err := s.Get(ctx, sess.ID); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("%s: a refused session is stored: Get = %v", tc.field, err)
		}
		ok := e.newSession()
		ok.DID = fmt.Sprintf("did:plc:user%d", i) // not one account's cap
		create(t, s, ok)
		if _, err := s.Update(ctx, ok.ID, func(x *sessions.Session) error { tc.edit(x); return nil }); !errors.Is(err, sessions.ErrTooLarge) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Update = %v, want ErrTooLarge naming the field", tc.field, err)
		}
		if got, err := s.Get(ctx, ok.ID); err != nil {
			t.Errorf("%s: after a refused update: %v", tc.field, err)
		} else if f := diff(got, ok); f != "" {
			t.Errorf("%s: a refused update changed the session's %s", tc.field, f)
		}
		if got, err := s.ByProxyKey(ctx, ok.ProxyKey); err != nil || diff(got, ok) != "" {
			t.Errorf("%s: after a refused update, by proxy key: %v", tc.field, err)
		}
	}
	// Every field at its limit fits, and survives a reopen whole.
	sess := e.newSession()
	sess.AccessToken, sess.RefreshToken, sess.Scope = strings.Repeat("a", sessions.MaxTokenBytes), strings.Repeat("r", sessions.MaxTokenBytes), strings.Repeat("s", sessions.MaxScopeBytes)
	sess.DID, sess.Handle = "did:web:"+strings.Repeat("d", sessions.MaxDIDBytes-len("did:web:")), strings.Repeat("h", sessions.MaxHandleBytes)
	url := func(c string) string { return "https://" + strings.Repeat(c, sessions.MaxURLBytes-len("https://")) }
	sess.PDS, sess.Issuer, sess.ClientID = url("p"), url("i"), url("c")
	sess.AuthServerNonce, sess.PDSNonce = strings.Repeat("n", sessions.MaxNonceBytes), strings.Repeat("m", sessions.MaxNonceBytes)
	if _, err := s.Create(ctx, sess); err != nil {
		t.Fatalf("a session at the limits: %v", err)
	}
	s = e.reopen(s)
	if got, err := s.Get(ctx, sess.ID); err != nil || diff(got, sess) != "" {
		t.Errorf("a session at the limits, after reopen: %v (differs in %q)", err, diff(got, sess))
	}
}

// testSessionCaps: an account's sessions on a host beyond MaxPerAccount
// end its oldest; a store at MaxSessions refuses new accounts, but still
// lets an account at its cap replace its oldest.
func testSessionCaps(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{MaxSessions: 5, MaxPerAccount: 2})
	mk := func(did, host string) sessions.Session {
		e.clock.Add(time.Second)
		x := e.newSession()
		x.DID, x.Host = did, host
		return x
	}
	a1, a2, a3 := mk("did:plc:a", "h1"), mk("did:plc:a", "h1"), mk("did:plc:a", "h1")
	for _, x := range []sessions.Session{a1, a2} {
		create(t, s, x)
	}
	ev, err := s.Create(ctx, a3)
	if err != nil || len(ev) != 1 || ev[0].ID != a1.ID {
		t.Fatalf("third session of an account: evicted %d, %v; want the oldest", len(ev), err)
	}
	if f := diff(ev[0], a1); f != "" {
		t.Errorf("the evicted session returned differs in its %s: the caller revokes its tokens", f)
	}
	expectGone(t, s, a1, "the evicted session")
	// Another host, another account: counted apart.
	for _, x := range []sessions.Session{mk("did:plc:a", "h2"), mk("did:plc:b", "h1"), mk("did:plc:c", "h1")} {
		create(t, s, x)
	}
	d := mk("did:plc:d", "h1")
	if _, err := s.Create(ctx, d); !errors.Is(err, sessions.ErrFull) {
		t.Errorf("sixth session: %v, want ErrFull", err)
	}
	expectGone(t, s, d, "a session refused by a full store")
	// A full store still lets an account at its cap replace its oldest.
	a4 := mk("did:plc:a", "h1")
	if ev, err := s.Create(ctx, a4); err != nil || len(ev) != 1 || ev[0].ID != a2.ID {
		t.Errorf("full store, account at its cap: evicted %d, %v; want a2", len(ev), err)
	}
	expectGone(t, s, a2, "the second evicted session")
	expectCount(t, s, 5)
	// The evictions are kept too.
	closeAll(t, s)
	s = e.open(sessions.Options{})
	expectGone(t, s, a1, "after reopen, the evicted session")
	expectGone(t, s, a2, "after reopen, the second evicted session")
	for _, x := range []sessions.Session{a3, a4} {
		if _, err := s.Get(ctx, x.ID); err != nil {
			t.Errorf("after reopen, a session that replaced an evicted one: %v", err)
		}
	}
	expectCount(t, s, 5)
}

// testProviderAccounts: another provider's sessions are counted by the
// account there (provider and subject), not by their empty DID: two
// people signed in with Google are two accounts, and one of them at her
// cap does not end the other's sessions.
func testProviderAccounts(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{MaxSessions: 10, MaxPerAccount: 1})
	mk := func(provider, subject string) sessions.Session {
		e.clock.Add(time.Second)
		x := e.newSession()
		x.DID, x.Handle, x.DPoPKey = "", "", nil
		x.Provider, x.Subject, x.Email = provider, subject, subject+"@example.com"
		return x
	}
	alice, bob := mk("google", "alice"), mk("google", "bob")
	create(t, s, alice)
	create(t, s, bob)
	sameSub := mk("github", "alice")
	create(t, s, sameSub) // the same subject at another provider is another account
	again := mk("google", "alice")
	ev, err := s.Create(ctx, again)
	if err != nil || len(ev) != 1 || ev[0].ID != alice.ID {
		t.Fatalf("alice's second Google session at MaxPerAccount 1: evicted %d, %v; want her first", len(ev), err)
	}
	got, err := s.Get(ctx, again.ID)
	if err != nil || got.Provider != "google" || got.Subject != "alice" || got.Email != "alice@example.com" {
		t.Fatalf("a provider session read back: %+v, %v", got, err)
	}
	for _, x := range []sessions.Session{bob, sameSub} {
		if _, err := s.Get(ctx, x.ID); err != nil {
			t.Errorf("the session of %s at %s ended: %v", x.Subject, x.Provider, err)
		}
	}
}

// testSessionCapsAtOnce: sign-ins that finish at once are held to the
// caps as if they came one by one, and every session a cap ended is
// returned as evicted, for its tokens to be revoked.
func testSessionCapsAtOnce(t *testing.T, e *env) {
	s := e.open(sessions.Options{MaxSessions: 5, MaxPerAccount: 2})
	capsAtOnce(t, e, s, s)
	s = e.reopen(s)
	if n, err := s.Count(t.Context()); err != nil || n > 5 {
		t.Errorf("after reopen: Count = %d, %v; want at most MaxSessions (5)", n, err)
	}
}

// capsAtOnce creates sessions through a and b at once, in a store with
// MaxSessions 5 and MaxPerAccount 2: half of one account, half of
// accounts of their own.
func capsAtOnce(t *testing.T, e *env, a, b sessions.Store) {
	ctx := t.Context()
	const n = 16
	var mu sync.Mutex
	stored := map[string]sessions.Session{} // Create succeeded
	evicted := map[string]bool{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		sess := e.newSession()
		sess.CreatedAt = sess.CreatedAt.Add(time.Duration(i) * time.Millisecond)
		if i%2 == 1 {
			sess.DID = fmt.Sprintf("did:plc:user%d", i)
		}
		s := []sessions.Store{a, b}[i%2]
		wg.Go(func() {
			<-start
			ev, err := s.Create(ctx, sess)
			if err != nil && !errors.Is(err, sessions.ErrFull) {
				t.Errorf("Create at once = %v, want success or ErrFull", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				stored[sess.ID] = sess
			}
			for _, x := range ev {
				if evicted[x.ID] {
					t.Errorf("the session of %s was evicted twice", x.DID)
				}
				evicted[x.ID] = true
			}
		})
	}
	close(start)
	wg.Wait()
	// What the returns say is left: the caps hold for it.
	left := map[string]sessions.Session{}
	mine := 0
	for id, x := range stored {
		if !evicted[id] {
			left[id] = x
			if x.DID == "did:plc:alice" {
				mine++
			}
		}
	}
	if len(left) > 5 {
		t.Errorf("%d sessions stored and not evicted after %d sign-ins at once, want at most MaxSessions (5)", len(left), n)
	}
	if mine > 2 {
		t.Errorf("one account has %d sessions stored and not evicted after sign-ins at once, want at most MaxPerAccount (2)", mine)
	}
	// And the store holds exactly that: a session gone without being
	// returned as evicted would keep its tokens valid.
	for _, s := range []sessions.Store{a, b} {
		eventually(t, "the sessions live after sign-ins at once", func() error {
			list, err := s.List(ctx)
			if err != nil {
				return err
			}
			live := map[string]bool{}
			for _, x := range list {
				live[x.ID] = true
				if _, ok := left[x.ID]; !ok {
					return fmt.Errorf("session %s is live, but its Create failed or it was returned as evicted", x.ID)
				}
			}
			for id, x := range left {
				if !live[id] {
					return fmt.Errorf("the session of %s is gone without being returned as evicted", x.DID)
				}
			}
			return nil
		})
	}
}

// testPendingCap: MaxPending bounds the sign-ins in progress; finished and
// swept ones free their places, and a restart counts those left.
func testPendingCap(t *testing.T, e *env) {
	ctx := t.Context()
	opts := sessions.Options{MaxPending: 3, MaxPendingPerIssuer: 100}
	s := e.open(opts)
	var states []string
	for range 3 {
		p := e.newPending(time.Minute)
		states = append(states, p.State)
		if err := s.PutPending(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	full := e.newPending(time.Minute)
	if err := s.PutPending(ctx, full); !errors.Is(err, sessions.ErrFull) {
		t.Errorf("fourth pending: %v, want ErrFull", err)
	}
	if _, err := s.TakePending(ctx, full.State); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("a refused pending sign-in is stored: TakePending = %v", err)
	}
	if _, err := s.TakePending(ctx, states[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(ctx, e.newPending(time.Minute)); err != nil {
		t.Errorf("after one finished: %v", err)
	}
	// Counted again at start, and freed by the sweep.
	s = e.reopen(s)
	if err := s.PutPending(ctx, e.newPending(time.Minute)); !errors.Is(err, sessions.ErrFull) {
		t.Errorf("after reopen: %v, want ErrFull", err)
	}
	e.clock.Add(2 * time.Minute)
	if n, err := s.DeleteExpired(ctx); err != nil || n != 3 {
		t.Fatalf("DeleteExpired = %d, %v; want 3", n, err)
	}
	for i := range 3 {
		if err := s.PutPending(ctx, e.newPending(time.Minute)); err != nil {
			t.Errorf("after the sweep, sign-in %d: %v", i+1, err)
		}
	}
	if err := s.PutPending(ctx, e.newPending(time.Minute)); !errors.Is(err, sessions.ErrFull) {
		t.Errorf("after the sweep, the fourth: %v, want ErrFull", err)
	}
}

// testPendingShares: no one client and no one authorization server (its
// subdomains together) can take every place for sign-ins in progress.
func testPendingShares(t *testing.T, e *env) {
	ctx := t.Context()
	opts := sessions.Options{MaxPending: 10, MaxPendingPerClient: 2, MaxPendingPerIssuer: 3}
	s := e.open(opts)
	put := func(client, issuer string) error {
		p := e.newPending(time.Minute)
		p.Client, p.Issuer = client, issuer
		return s.PutPending(ctx, p)
	}
	var first string // a state that counts against 192.0.2.1 and bsky.social
	for i, tc := range []struct {
		client, issuer string
		full           bool
	}{
		{"192.0.2.1", "https://bsky.social", false},
		{"192.0.2.1", "https://bsky.social", false},
		{"192.0.2.1", "https://bsky.social", true}, // the client's share
		{"192.0.2.2", "https://a.evil.example", false},
		{"192.0.2.3", "https://b.evil.example", false},
		{"192.0.2.4", "https://EVIL.example:8443", false},
		{"192.0.2.5", "https://c.evil.example", true}, // evil.example's share, whatever the subdomain
		{"192.0.2.5", "https://bsky.social", false},   // another server still has room
		{"192.0.2.6", "https://pds.example.co.uk", false},
		{"192.0.2.7", "https://other.example.co.uk", false}, // example.co.uk is not co.uk
	} {
		p := e.newPending(time.Minute)
		p.Client, p.Issuer = tc.client, tc.issuer
		err := s.PutPending(ctx, p)
		if got := errors.Is(err, sessions.ErrFull); got != tc.full {
			t.Errorf("%s with %s: %v, want full %v", tc.client, tc.issuer, err, tc.full)
		}
		if i == 0 {
			first = p.State
		}
	}
	// A finished sign-in frees its client's share.
	if _, err := s.TakePending(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := put("192.0.2.1", "https://bsky.social"); err != nil {
		t.Errorf("after one of the client's sign-ins finished: %v", err)
	}
	// The shares survive a restart, and free up as sign-ins expire.
	s = e.reopen(s)
	if err := put("192.0.2.1", "https://bsky.social"); !errors.Is(err, sessions.ErrFull) {
		t.Errorf("after reopen the client's share is forgotten: %v", err)
	}
	if err := put("192.0.2.9", "https://c.evil.example"); !errors.Is(err, sessions.ErrFull) {
		t.Errorf("after reopen evil.example's share is forgotten: %v", err)
	}
	e.clock.Add(2 * time.Minute)
	if _, err := s.DeleteExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if err := put("192.0.2.1", "https://bsky.social"); err != nil {
		t.Errorf("after the sweep: %v", err)
	}
	if err := put("192.0.2.9", "https://c.evil.example"); err != nil {
		t.Errorf("after the sweep, evil.example: %v", err)
	}
}
