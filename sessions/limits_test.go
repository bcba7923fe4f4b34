package sessions

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCheapRequestsCostNoWrite: what anyone can ask for without signing in
// (a callback with a made-up state, a sign-out without a session) and the
// minutely sweep with nothing to sweep cost no write transaction.
func TestCheapRequestsCostNoWrite(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := open(t, filepath.Join(t.TempDir(), "data", "db"), c)
	defer s.Close()
	before := s.Writes()
	for _, state := range []string{"", "x", strings.Repeat("a", 43), NewToken(), strings.Repeat("é", 22), NewToken()[:42] + "="} {
		if _, err := s.TakePending(state); !errors.Is(err, ErrNotFound) {
			t.Errorf("TakePending(%q) = %v, want ErrNotFound", state, err)
		}
	}
	if err := s.Delete(NewToken()); err != nil {
		t.Fatal(err)
	}
	if n, err := s.DeleteExpired(); err != nil || n != 0 {
		t.Fatalf("DeleteExpired = %d, %v", n, err)
	}
	if got := s.Writes() - before; got != 0 {
		t.Errorf("%d writes, want 0", got)
	}
	// What does happen costs one write each.
	p := Pending{State: NewToken(), Expiry: c.Now().Add(time.Minute)}
	if err := s.PutPending(p); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TakePending(p.State); err != nil {
		t.Fatal(err)
	}
	if got := s.Writes() - before; got != 2 {
		t.Errorf("%d writes for a sign-in's pending request, want 2", got)
	}
}

func TestWellFormedToken(t *testing.T) {
	for i := 0; i < 100; i++ {
		if tok := NewToken(); !WellFormedToken(tok) {
			t.Fatalf("NewToken %q is not well formed", tok)
		}
	}
	for _, s := range []string{"", "short", strings.Repeat("a", 42), strings.Repeat("a", 44), strings.Repeat("a", 42) + "=", strings.Repeat("a", 42) + "+", strings.Repeat("a", 42) + "/"} {
		if WellFormedToken(s) {
			t.Errorf("WellFormedToken(%q)", s)
		}
	}
}

func TestSessionSizeLimits(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := open(t, filepath.Join(t.TempDir(), "data", "db"), c)
	defer s.Close()
	for _, tc := range []struct {
		field string
		edit  func(*Session)
	}{
		{"access token", func(x *Session) { x.AccessToken = strings.Repeat("a", MaxTokenBytes+1) }},
		{"refresh token", func(x *Session) { x.RefreshToken = strings.Repeat("a", MaxTokenBytes+1) }},
		{"scope", func(x *Session) { x.Scope = strings.Repeat("a", MaxScopeBytes+1) }},
		{"handle", func(x *Session) { x.Handle = strings.Repeat("a", MaxHandleBytes+1) }},
		{"DID", func(x *Session) { x.DID = "did:web:" + strings.Repeat("a", MaxDIDBytes) }},
		{"PDS URL", func(x *Session) { x.PDS = "https://" + strings.Repeat("a", MaxURLBytes) }},
		{"issuer", func(x *Session) { x.Issuer = "https://" + strings.Repeat("a", MaxURLBytes) }},
		// JSON stores '<' as six bytes: fields under their limits must not
		// add up to more than MaxRecordBytes on disk.
		{"stored", func(x *Session) {
			x.AccessToken, x.RefreshToken, x.Scope = strings.Repeat("<", MaxTokenBytes), strings.Repeat(">", MaxTokenBytes), strings.Repeat("&", MaxScopeBytes)
		}},
		{"access token", func(x *Session) { x.AccessToken = "tok\x00en" }},
		{"refresh token", func(x *Session) { x.RefreshToken = "tokén" }},
		{"scope", func(x *Session) { x.Scope = "atproto\nrepo:x" }},
	} {
		sess := newSession(c)
		tc.edit(&sess)
		if _, err := s.Create(sess); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: Create = %v, want ErrTooLarge naming the field", tc.field, err)
		}
		ok := newSession(c)
		if _, err := s.Create(ok); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update(ok.ID, func(x *Session) error { tc.edit(x); return nil }); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: Update = %v, want ErrTooLarge", tc.field, err)
		}
		if got, _ := s.Get(ok.ID); got.AccessToken != ok.AccessToken || got.Scope != ok.Scope {
			t.Errorf("%s: a refused update changed the session", tc.field)
		}
	}
	// At the limits, everything fits.
	sess := newSession(c)
	sess.AccessToken, sess.RefreshToken, sess.Scope = strings.Repeat("a", MaxTokenBytes), strings.Repeat("r", MaxTokenBytes), strings.Repeat("s", MaxScopeBytes)
	if _, err := s.Create(sess); err != nil {
		t.Errorf("a session at the limits: %v", err)
	}
}

func TestSessionCaps(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := Open(filepath.Join(t.TempDir(), "data", "db"), Options{Now: c.Now, MaxSessions: 5, MaxPerAccount: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	mk := func(did, host string) Session {
		c.Add(time.Second)
		x := newSession(c)
		x.DID, x.Host = did, host
		return x
	}
	a1, a2, a3 := mk("did:plc:a", "h1"), mk("did:plc:a", "h1"), mk("did:plc:a", "h1")
	for _, x := range []Session{a1, a2} {
		if ev, err := s.Create(x); err != nil || len(ev) != 0 {
			t.Fatalf("Create = %v, %v", ev, err)
		}
	}
	ev, err := s.Create(a3)
	if err != nil || len(ev) != 1 || ev[0].ID != a1.ID {
		t.Fatalf("third session of an account: evicted %v, %v; want the oldest", ev, err)
	}
	if _, ok := s.Get(a1.ID); ok {
		t.Error("the evicted session is still live")
	}
	if _, ok := s.ByProxyKey(a1.ProxyKey); ok {
		t.Error("the evicted session is still found by proxy key")
	}
	// Another host, another account: counted apart.
	for _, x := range []Session{mk("did:plc:a", "h2"), mk("did:plc:b", "h1"), mk("did:plc:c", "h1")} {
		if ev, err := s.Create(x); err != nil || len(ev) != 0 {
			t.Fatalf("Create = %v, %v", ev, err)
		}
	}
	if _, err := s.Create(mk("did:plc:d", "h1")); !errors.Is(err, ErrFull) {
		t.Errorf("sixth session: %v, want ErrFull", err)
	}
	// A full store still lets an account at its cap replace its oldest.
	if ev, err := s.Create(mk("did:plc:a", "h1")); err != nil || len(ev) != 1 || ev[0].ID != a2.ID {
		t.Errorf("full store, account at its cap: %v, %v", ev, err)
	}
	if s.Count() != 5 {
		t.Errorf("count %d", s.Count())
	}
	// The eviction is on disk too.
	path := s.db.Path()
	_ = s.Close()
	s2, err := Open(path, Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if _, ok := s2.Get(a1.ID); ok || s2.Count() != 5 {
		t.Errorf("after restart: a1 live %v, count %d", ok, s2.Count())
	}
}

func TestPendingCap(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "data", "db")
	s, err := Open(path, Options{Now: c.Now, MaxPending: 3, MaxPendingPerIssuer: 100})
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for i := 0; i < 3; i++ {
		p := Pending{State: NewToken(), Expiry: c.Now().Add(time.Minute)}
		states = append(states, p.State)
		if err := s.PutPending(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutPending(Pending{State: NewToken(), Expiry: c.Now().Add(time.Minute)}); !errors.Is(err, ErrFull) {
		t.Errorf("fourth pending: %v, want ErrFull", err)
	}
	if _, err := s.TakePending(states[0]); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(Pending{State: NewToken(), Expiry: c.Now().Add(time.Minute)}); err != nil {
		t.Errorf("after one finished: %v", err)
	}
	// Counted again at start, and freed by the sweep.
	_ = s.Close()
	s, err = Open(path, Options{Now: c.Now, MaxPending: 3, MaxPendingPerIssuer: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.PutPending(Pending{State: NewToken(), Expiry: c.Now().Add(time.Minute)}); !errors.Is(err, ErrFull) {
		t.Errorf("after restart: %v, want ErrFull", err)
	}
	c.Add(2 * time.Minute)
	if n, err := s.DeleteExpired(); err != nil || n != 3 {
		t.Fatalf("DeleteExpired = %d, %v", n, err)
	}
	if err := s.PutPending(Pending{State: NewToken(), Expiry: c.Now().Add(time.Minute)}); err != nil {
		t.Errorf("after the sweep: %v", err)
	}
}

// TestDataDirMustBePrivate: the store holds every session's tokens and the
// client key; a dir or file others can read is refused, with what to do.
func TestDataDirMustBePrivate(t *testing.T) {
	for _, tc := range []struct {
		name            string
		dirMode, dbMode os.FileMode // 0: leave as made
		want            string
	}{
		{"made by ioproxy", 0, 0, ""},
		{"private", 0o700, 0o600, ""},
		{"dir readable by others", 0o755, 0, "chmod 700"},
		{"dir writable by group", 0o770, 0, "chmod 700"},
		{"file readable by group", 0o700, 0o640, "chmod 600"},
		{"file writable by others", 0o700, 0o602, "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			path := filepath.Join(dir, "ioproxy.db")
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			if tc.dirMode != 0 {
				if err := os.Chmod(dir, tc.dirMode); err != nil {
					t.Fatal(err)
				}
			}
			if tc.dbMode != 0 {
				if err := os.Chmod(path, tc.dbMode); err != nil {
					t.Fatal(err)
				}
			}
			s, err = Open(path, Options{})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				_ = s.Close()
				return
			}
			if err == nil {
				_ = s.Close()
				t.Fatal("Open accepted a store others can read")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "open to other users") {
				t.Errorf("error %q does not say what to do (%s)", err, tc.want)
			}
		})
	}
}

// TestPendingShares: no one client and no one authorization server (its
// subdomains together) can take every place for sign-ins in progress.
func TestPendingShares(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s, err := Open(filepath.Join(t.TempDir(), "data", "db"), Options{Now: c.Now, MaxPending: 10, MaxPendingPerClient: 2, MaxPendingPerIssuer: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	put := func(client, issuer string) error {
		return s.PutPending(Pending{State: NewToken(), Client: client, Issuer: issuer, Expiry: c.Now().Add(time.Minute)})
	}
	for _, tc := range []struct {
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
		err := put(tc.client, tc.issuer)
		if got := errors.Is(err, ErrFull); got != tc.full {
			t.Errorf("%s with %s: %v, want full %v", tc.client, tc.issuer, err, tc.full)
		}
	}
	// The shares free up as sign-ins finish or expire, and survive a restart.
	path := s.db.Path()
	_ = s.Close()
	s, err = Open(path, Options{Now: c.Now, MaxPending: 10, MaxPendingPerClient: 2, MaxPendingPerIssuer: 3})
	if err != nil {
		t.Fatal(err)
	}
	if err := put("192.0.2.1", "https://bsky.social"); !errors.Is(err, ErrFull) {
		t.Errorf("after restart the client's share is forgotten: %v", err)
	}
	c.Add(2 * time.Minute)
	if _, err := s.DeleteExpired(); err != nil {
		t.Fatal(err)
	}
	if err := put("192.0.2.1", "https://bsky.social"); err != nil {
		t.Errorf("after the sweep: %v", err)
	}
	if err := put("192.0.2.9", "https://c.evil.example"); err != nil {
		t.Errorf("after the sweep, evil.example: %v", err)
	}
}

func TestIssuerGroup(t *testing.T) {
	for in, want := range map[string]string{
		"https://bsky.social":          "bsky.social",
		"https://auth.pds.example.com": "example.com",
		"https://pds.example.co.uk":    "example.co.uk",
		"https://EXAMPLE.com.:443":     "example.com",
		"http://localhost:2583":        "localhost",
		"http://127.0.0.1:2583":        "127.0.0.1",
		"https://[2001:db8::1]":        "2001:db8::1",
		"https://foo.github.io":        "foo.github.io",
		"not a url":                    "not a url",
	} {
		if got := issuerGroup(in); got != want {
			t.Errorf("issuerGroup(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDataDirOwnership: a data dir or store file that another user owns
// is theirs to read and replace whatever its mode; a symlinked store file
// could point anywhere.
func TestDataDirOwnership(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "ioproxy.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	// A symlinked data dir is judged by what it points to: ours, fine.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(filepath.Join(link, "ioproxy.db"), Options{}); err != nil {
		t.Errorf("a symlink to our own private data dir: %v", err)
	} else {
		_ = s.Close()
	}
	// A symlinked store file is refused.
	other := filepath.Join(t.TempDir(), "data2")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(path, filepath.Join(other, "ioproxy.db")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(other, "ioproxy.db"), Options{}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a symlinked store file: %v", err)
	}

	if os.Geteuid() != 0 {
		t.Log("not root: the other-owner cases need chown")
		return
	}
	const nobody = 65534
	for _, p := range []string{dir, path} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path, Options{})
		if err == nil || !strings.Contains(err.Error(), "belongs to user 65534") || !strings.Contains(err.Error(), "chown") {
			t.Errorf("%s owned by another user: %v", p, err)
		}
		if _, err := Open(filepath.Join(link, "ioproxy.db"), Options{}); err == nil {
			t.Errorf("a symlink to a data dir another user owns (%s): accepted", p)
		}
		if err := os.Chown(p, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
}
