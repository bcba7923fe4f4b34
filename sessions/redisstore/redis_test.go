package redisstore

// What the conformance suite cannot say, as it knows only the Store
// interface: what Redis holds (sealed values, bounded key names), what a
// lookup costs there (nothing, once cached), and what a tampered value,
// a restart or an outage does to a replica. Each test runs its own
// redis-server, so that INFO commandstats counts only its own commands.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

const (
	// propagate bounds the time an invalidation may take to reach
	// another replica's cache.
	propagate = time.Second
	// resubscribe bounds the time a replica takes to listen again once
	// Redis is back: go-redis redials at the listener's next attempt,
	// and the listener waits at most 2 s between attempts.
	resubscribe = 10 * time.Second
	// outage bounds any call while Redis is out of reach: the store
	// dials and reads with 1 s timeouts.
	outage = 5 * time.Second
	// testPrefix is every test's key prefix; each test has its server.
	testPrefix = "t:"
)

// fixture is one test's redis-server, a client of its own that reads
// and writes raw keys, and the keys its stores seal with.
type fixture struct {
	srv  *redistest.Server
	raw  *redis.Client
	keys *sealed.Keys

	mu     sync.Mutex
	closed map[*Store]bool
}

func newFixture(t *testing.T, opts redistest.Options) *fixture {
	t.Helper()
	srv := redistest.Start(t, opts)
	// One connection, so that reading INFO opens none between two
	// readings (a new connection costs HELLO and CLIENT commands).
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 1, DialTimeout: time.Second, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = raw.Close() })
	return &fixture{srv: srv, raw: raw, keys: testKeys(t), closed: map[*Store]bool{}}
}

// open opens a store on the fixture's server with cfg's URL, prefix and
// keys filled in when empty, and waits until it listens for
// invalidations (only then does it cache). The store is closed when the
// test ends, and its Close must not hang.
func (f *fixture) open(t *testing.T, cfg Config) *Store {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = f.srv.URL()
	}
	if cfg.Prefix == "" {
		cfg.Prefix = testPrefix
	}
	if cfg.Keys == nil {
		cfg.Keys = f.keys
	}
	s, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("open redis store: %v", err)
	}
	t.Cleanup(func() { f.close(t, s, outage) })
	waitListening(t, s, resubscribe)
	return s
}

// close closes s unless it is closed already, failing the test if Close
// takes longer than d.
func (f *fixture) close(t *testing.T, s *Store, d time.Duration) {
	t.Helper()
	f.mu.Lock()
	done := f.closed[s]
	f.closed[s] = true
	f.mu.Unlock()
	if !done {
		closeWithin(t, s, d)
	}
}

func closeWithin(t *testing.T, s *Store, d time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(d):
		t.Errorf("Close has not returned after %v", d)
	}
}

// listening reports whether s's cache believes invalidations arrive.
func listening(s *Store) bool {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	return s.cache.live
}

func waitListening(t testing.TB, s *Store, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !listening(s) {
		if time.Now().After(deadline) {
			t.Fatalf("the store does not listen for invalidations after %v", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// within polls cond every 10 ms until it holds, failing the test after d.
func within(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// scan returns every key under the test prefix.
func (f *fixture) scan(t *testing.T) []string {
	t.Helper()
	var keys []string
	iter := f.raw.Scan(t.Context(), 0, testPrefix+"*", 100).Iterator()
	for iter.Next(t.Context()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("scan: %v", err)
	}
	return keys
}

// contents returns every byte string that key holds, whatever its type:
// a string's value, a hash's fields and values, a sorted set's members.
func (f *fixture) contents(t *testing.T, key string) []string {
	t.Helper()
	ctx := t.Context()
	typ, err := f.raw.Type(ctx, key).Result()
	if err != nil {
		t.Fatalf("type %s: %v", key, err)
	}
	var out []string
	switch typ {
	case "string":
		v, err := f.raw.Get(ctx, key).Result()
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		out = append(out, v)
	case "hash":
		m, err := f.raw.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatalf("hgetall %s: %v", key, err)
		}
		for k, v := range m {
			out = append(out, k, v)
		}
	case "zset":
		ms, err := f.raw.ZRange(ctx, key, 0, -1).Result()
		if err != nil {
			t.Fatalf("zrange %s: %v", key, err)
		}
		out = append(out, ms...)
	case "none": // expired since the scan
	default:
		t.Fatalf("%s is a %s, which the store never writes", key, typ)
	}
	return out
}

// commands is INFO commandstats: calls per command, INFO's own left out.
func (f *fixture) commands(t *testing.T) map[string]int64 {
	t.Helper()
	info, err := f.raw.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatalf("info commandstats: %v", err)
	}
	calls := map[string]int64{}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || name == "info" {
			continue
		}
		field, _, _ := strings.Cut(rest, ",")
		n, err := strconv.ParseInt(strings.TrimPrefix(field, "calls="), 10, 64)
		if err != nil {
			t.Fatalf("commandstats line %q: %v", line, err)
		}
		calls[name] = n
	}
	return calls
}

// costsNothing runs fn and fails the test if Redis ran any command
// meanwhile.
func (f *fixture) costsNothing(t *testing.T, what string, fn func()) {
	t.Helper()
	before := f.commands(t)
	fn()
	after := f.commands(t)
	for name, n := range after {
		if d := n - before[name]; d != 0 {
			t.Errorf("%s cost %d %s commands in Redis, want none", what, d, strings.ToUpper(name))
		}
	}
}

// newSession is a live session of an account of its own, with tokens
// long and random enough that finding one in Redis is no accident.
func newSession(t testing.TB) sessions.Session {
	t.Helper()
	key, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return sessions.Session{
		ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "app.example.com",
		DID: "did:plc:" + strings.ToLower(sessions.NewToken()[:24]), Handle: "alice.test", PDS: "https://pds.example.com",
		Issuer: "https://auth.example.com", ClientID: "https://app.example.com/@/client-metadata.json",
		Scope: "atproto transition:generic", AccessToken: "at-" + sessions.NewToken(), RefreshToken: "rt-" + sessions.NewToken(),
		TokenExpiry: now.Add(time.Hour), DPoPKey: key, CreatedAt: now, Expiry: now.Add(24 * time.Hour),
	}
}

func newPending(t testing.TB) sessions.Pending {
	t.Helper()
	key, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return sessions.Pending{
		State: sessions.NewToken(), Host: "app.example.com", ClientID: "https://app.example.com/@/client-metadata.json",
		Issuer: "https://auth.example.com", PKCEVerifier: "pkce-" + sessions.NewToken(), DPoPKey: key,
		Redirect: "/", Client: "203.0.113.7", Binding: sessions.NewToken(), CreatedAt: now, Expiry: now.Add(10 * time.Minute),
	}
}

func mustCreate(t *testing.T, s *Store, sess sessions.Session) {
	t.Helper()
	if evicted, err := s.Create(t.Context(), sess); err != nil || len(evicted) != 0 {
		t.Fatalf("Create: evicted %d, %v", len(evicted), err)
	}
}

// privateD is the "d" member of a DPoP key's JWK, and the scalar it
// encodes.
func privateD(t *testing.T, k *dpop.Key) (string, []byte) {
	t.Helper()
	j, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		D string `json:"d"`
	}
	if err := json.Unmarshal(j, &m); err != nil || len(m.D) < 40 {
		t.Fatalf("the DPoP key's JWK has no d: %s (%v)", j, err)
	}
	raw, err := base64.RawURLEncoding.DecodeString(m.D)
	if err != nil {
		t.Fatal(err)
	}
	return m.D, raw
}

// Case 1: what Redis holds gives away no token, verifier, private key
// or secret: every value under the prefix is sealed, and key names and
// set members hold refs of ids, proxy keys and states, not them.
func TestSealedAtRest(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	s := f.open(t, Config{})
	ctx := t.Context()

	sess := newSession(t)
	mustCreate(t, s, sess)
	// Updated tokens are sealed too (Update writes its own way).
	updated, err := s.Update(ctx, sess.ID, func(x *sessions.Session) error {
		x.AccessToken, x.RefreshToken = "at2-"+sessions.NewToken(), "rt2-"+sessions.NewToken()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p := newPending(t)
	if err := s.PutPending(ctx, p); err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if _, err := s.Secret(ctx, "client", func() ([]byte, error) { return secret, nil }); err != nil {
		t.Fatal(err)
	}

	sessD, sessRaw := privateD(t, sess.DPoPKey)
	pendD, pendRaw := privateD(t, p.DPoPKey)
	secrets := []struct{ what, value string }{
		{"the session id", sess.ID},
		{"the proxy key", sess.ProxyKey},
		{"the state", p.State},
		{"the state cookie's binding", p.Binding},
		{"the access token", sess.AccessToken},
		{"the refresh token", sess.RefreshToken},
		{"the updated access token", updated.AccessToken},
		{"the updated refresh token", updated.RefreshToken},
		{"the session's DPoP d", sessD},
		{"the session's DPoP scalar", string(sessRaw)},
		{"the PKCE verifier", p.PKCEVerifier},
		{"the pending DPoP d", pendD},
		{"the pending DPoP scalar", string(pendRaw)},
		{"the secret", string(secret)},
		{"the secret in base64", base64.StdEncoding.EncodeToString(secret)},
		{"the secret in base64url", base64.RawURLEncoding.EncodeToString(secret)},
	}

	keys := f.scan(t)
	// The scan must see the records, or finding nothing proves nothing.
	for _, want := range []string{s.keys.session(ref(sess.ID)), s.keys.pending(ref(p.State)), s.keys.secret("client")} {
		if !containsString(keys, want) {
			t.Fatalf("no key %s in Redis; keys: %q", want, keys)
		}
	}
	for _, key := range keys {
		for _, v := range append(f.contents(t, key), key) {
			for _, sec := range secrets {
				if strings.Contains(v, sec.value) {
					t.Errorf("%s holds %s in plaintext", key, sec.what)
				}
			}
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// tamper is what an attacker with write access to Redis does to a
// sealed value: v is the victim's, other another record's of its kind.
type tamper struct {
	name string
	edit func(v, other []byte) []byte
	// otherKeys: the reader has keys of its own instead, as a replica
	// misconfigured or a key removed too early.
	otherKeys bool
	want      error
}

var tampers = []tamper{
	{name: "a byte flipped", edit: func(v, _ []byte) []byte {
		w := bytes.Clone(v)
		w[len(w)/2] ^= 0x01
		return w
	}, want: sealed.ErrTampered},
	{name: "the tag cut off", edit: func(v, _ []byte) []byte { return bytes.Clone(v[:len(v)-16]) }, want: sealed.ErrTampered},
	{name: "empty", edit: func([]byte, []byte) []byte { return []byte{} }, want: sealed.ErrTampered},
	{name: "copied from another record", edit: func(_, other []byte) []byte { return bytes.Clone(other) }, want: sealed.ErrTampered},
	{name: "plaintext JSON written in", edit: func([]byte, []byte) []byte { return []byte(`{"id":"x"}`) }, want: sealed.ErrNotSealed},
	{name: "read with other keys", edit: func(v, _ []byte) []byte { return v }, otherKeys: true, want: sealed.ErrUnknownKey},
}

// Case 2: a value tampered with in Redis is an error that says so, for
// each lookup of it, never a panic and never a session; an update does
// not run on it nor write over it.
func TestTamperedSessions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	w := f.open(t, Config{})
	ctx := t.Context()
	for _, tc := range tampers {
		t.Run(tc.name, func(t *testing.T) {
			victim, other := newSession(t), newSession(t)
			mustCreate(t, w, victim)
			mustCreate(t, w, other)
			key := w.keys.session(ref(victim.ID))
			v, err := f.raw.HGet(ctx, key, "v").Bytes()
			if err != nil {
				t.Fatal(err)
			}
			ov, err := f.raw.HGet(ctx, w.keys.session(ref(other.ID)), "v").Bytes()
			if err != nil {
				t.Fatal(err)
			}
			bad := tc.edit(v, ov)
			if err := f.raw.HSet(ctx, key, "v", bad).Err(); err != nil {
				t.Fatal(err)
			}
			// A store that has not cached the victim: the writer has, and
			// a raw write publishes no invalidation.
			cfg := Config{}
			if tc.otherKeys {
				cfg.Keys = testKeys(t)
			}
			r := f.open(t, cfg)
			for _, lookup := range []struct {
				name string
				run  func() (sessions.Session, error)
			}{
				{"Get", func() (sessions.Session, error) { return r.Get(ctx, victim.ID) }},
				{"ByProxyKey", func() (sessions.Session, error) { return r.ByProxyKey(ctx, victim.ProxyKey) }},
				{"Update", func() (sessions.Session, error) {
					return r.Update(ctx, victim.ID, func(x *sessions.Session) error {
						t.Errorf("Update ran its function on a value that does not open")
						x.Handle = "written"
						return nil
					})
				}},
			} {
				got, err := lookup.run()
				if !errors.Is(err, tc.want) {
					t.Errorf("%s = %v, want an error wrapping %v", lookup.name, err, tc.want)
				}
				if got.ID != "" || got.AccessToken != "" {
					t.Errorf("%s returned a session with its error", lookup.name)
				}
				if err != nil && strings.Contains(err.Error(), victim.ID) {
					t.Errorf("%s's error holds the session id (a credential): %v", lookup.name, err)
				}
			}
			if now, err := f.raw.HGet(ctx, key, "v").Bytes(); err != nil || !bytes.Equal(now, bad) {
				t.Errorf("the tampered value was written over (%v)", err)
			}
			if !tc.otherKeys {
				// The other session opens: one bad record spoils no other.
				if got, err := r.Get(ctx, other.ID); err != nil || got.AccessToken != other.AccessToken {
					t.Errorf("the untouched session: %v", err)
				}
			}
		})
	}
}

// Case 2, pending sign-ins and secrets: a tampered pending sign-in is
// an error wrapping what went wrong (and is gone, as any taken one); a
// tampered secret is an error, not a reason to make a new one.
func TestTamperedPendingAndSecrets(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	w := f.open(t, Config{})
	ctx := t.Context()
	for _, tc := range tampers {
		t.Run(tc.name, func(t *testing.T) {
			r := w
			if tc.otherKeys {
				r = f.open(t, Config{Keys: testKeys(t)})
			}

			victim, other := newPending(t), newPending(t)
			for _, p := range []sessions.Pending{victim, other} {
				if err := w.PutPending(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			key := w.keys.pending(ref(victim.State))
			v, err := f.raw.HGet(ctx, key, "v").Bytes()
			if err != nil {
				t.Fatal(err)
			}
			ov, err := f.raw.HGet(ctx, w.keys.pending(ref(other.State)), "v").Bytes()
			if err != nil {
				t.Fatal(err)
			}
			if err := f.raw.HSet(ctx, key, "v", tc.edit(v, ov)).Err(); err != nil {
				t.Fatal(err)
			}
			got, err := r.TakePending(ctx, victim.State)
			if !errors.Is(err, tc.want) || got.State != "" || got.PKCEVerifier != "" {
				t.Errorf("TakePending = %q, %v; want no sign-in and an error wrapping %v", got.State, err, tc.want)
			}
			if _, err := r.TakePending(ctx, victim.State); !errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("TakePending again = %v, want ErrNotFound: a taken state is gone", err)
			}

			name := "secret-" + strings.ReplaceAll(tc.name, " ", "-")
			if _, err := w.Secret(ctx, name, func() ([]byte, error) { return []byte("the secret"), nil }); err != nil {
				t.Fatal(err)
			}
			sv, err := f.raw.Get(ctx, w.keys.secret(name)).Bytes()
			if err != nil {
				t.Fatal(err)
			}
			bad := tc.edit(sv, ov)
			if err := f.raw.Set(ctx, w.keys.secret(name), bad, 0).Err(); err != nil {
				t.Fatal(err)
			}
			s, err := r.Secret(ctx, name, func() ([]byte, error) {
				t.Errorf("Secret made a new secret over a stored one that does not open")
				return []byte("new"), nil
			})
			if !errors.Is(err, tc.want) || s != nil {
				t.Errorf("Secret = %q, %v; want an error wrapping %v", s, err, tc.want)
			}
			if now, err := f.raw.Get(ctx, w.keys.secret(name)).Bytes(); err != nil || !bytes.Equal(now, bad) {
				t.Errorf("the tampered secret was written over (%v)", err)
			}
		})
	}
}

// Case 3: a cached session costs Redis nothing, by id or by proxy key,
// whether this replica wrote it or read it; and a write through another
// replica reaches the cache within a second.
func TestCache(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	a, b := f.open(t, Config{}), f.open(t, Config{})
	ctx := t.Context()

	mine, theirs := newSession(t), newSession(t)
	mustCreate(t, a, mine)   // cached as a writes it
	mustCreate(t, b, theirs) // cached by a at its first lookup
	if _, err := a.Get(ctx, theirs.ID); err != nil {
		t.Fatal(err)
	}
	f.costsNothing(t, "100 lookups of cached sessions", func() {
		for range 100 {
			for _, x := range []sessions.Session{mine, theirs} {
				if got, err := a.Get(ctx, x.ID); err != nil || got.AccessToken != x.AccessToken {
					t.Fatalf("Get: %v", err)
				}
				if got, err := a.ByProxyKey(ctx, x.ProxyKey); err != nil || got.ID != x.ID {
					t.Fatalf("ByProxyKey: %v", err)
				}
			}
		}
	})
	// A session first found by proxy key is cached as well.
	third := newSession(t)
	mustCreate(t, b, third)
	if _, err := a.ByProxyKey(ctx, third.ProxyKey); err != nil {
		t.Fatal(err)
	}
	f.costsNothing(t, "lookups of a session found by proxy key", func() {
		for range 10 {
			if _, err := a.ByProxyKey(ctx, third.ProxyKey); err != nil {
				t.Fatal(err)
			}
			if _, err := a.Get(ctx, third.ID); err != nil {
				t.Fatal(err)
			}
		}
	})

	for _, x := range []sessions.Session{mine, theirs} {
		if _, err := b.Update(ctx, x.ID, func(s *sessions.Session) error { s.Handle = "renamed.test"; return nil }); err != nil {
			t.Fatal(err)
		}
		within(t, propagate, "another replica's update in the cache", func() error {
			for _, get := range []func() (sessions.Session, error){
				func() (sessions.Session, error) { return a.Get(ctx, x.ID) },
				func() (sessions.Session, error) { return a.ByProxyKey(ctx, x.ProxyKey) },
			} {
				if got, err := get(); err != nil || got.Handle != "renamed.test" {
					return fmt.Errorf("handle %q, %v", got.Handle, err)
				}
			}
			return nil
		})
		if err := b.Delete(ctx, x.ID); err != nil {
			t.Fatal(err)
		}
		within(t, propagate, "another replica's delete in the cache", func() error {
			if _, err := a.Get(ctx, x.ID); !errors.Is(err, sessions.ErrNotFound) {
				return fmt.Errorf("Get = %v", err)
			}
			if _, err := a.ByProxyKey(ctx, x.ProxyKey); !errors.Is(err, sessions.ErrNotFound) {
				return fmt.Errorf("ByProxyKey = %v", err)
			}
			return nil
		})
	}
}

// dialGate is a go-redis hook that refuses a client's new connections
// while it is shut: a replica cut off from Redis while others are not.
type dialGate struct{ shut atomic.Bool }

func (g *dialGate) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if g.shut.Load() {
			return nil, errors.New("dial refused by the test")
		}
		return next(ctx, network, addr)
	}
}
func (g *dialGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (g *dialGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Case 4: a Redis restart with AOF loses no session; a replica listens
// again without being reopened, and what another replica wrote while it
// was not listening is not served from its cache.
func TestRestartWithAOF(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{AOF: true})
	a, b := f.open(t, Config{}), f.open(t, Config{})
	ctx := t.Context()
	all := []sessions.Session{newSession(t), newSession(t), newSession(t)}
	renamed, deleted := all[0], all[1]
	for _, x := range all {
		mustCreate(t, b, x)
		if _, err := a.Get(ctx, x.ID); err != nil { // cached by a
			t.Fatal(err)
		}
	}

	// a cannot reconnect until the other replica has written: it misses
	// those invalidations for sure.
	gate := &dialGate{}
	a.rdb.AddHook(gate)
	gate.shut.Store(true)
	f.srv.Restart(t)
	if _, err := b.Update(ctx, renamed.ID, func(s *sessions.Session) error { s.Handle = "renamed.test"; return nil }); err != nil {
		t.Fatalf("update after the restart: %v", err)
	}
	if err := b.Delete(ctx, deleted.ID); err != nil {
		t.Fatalf("delete after the restart: %v", err)
	}
	within(t, propagate, "a sees it lost its subscription", func() error {
		if listening(a) {
			return errors.New("a listens while it cannot connect")
		}
		return nil
	})
	gate.shut.Store(false)
	waitListening(t, a, resubscribe)

	// Once a listens again its cache starts afresh: no poll.
	if got, err := a.Get(ctx, deleted.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("a session deleted while a was not listening: Get = %v (served: %v); want ErrNotFound", err, got.ID != "")
	}
	if _, err := a.ByProxyKey(ctx, deleted.ProxyKey); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("a session deleted while a was not listening: ByProxyKey = %v; want ErrNotFound", err)
	}
	if got, err := a.Get(ctx, renamed.ID); err != nil || got.Handle != "renamed.test" {
		t.Errorf("a session updated while a was not listening: handle %q, %v", got.Handle, err)
	}

	// No session lost: a store that never saw them finds them all.
	c := f.open(t, Config{})
	for _, x := range []sessions.Session{renamed, all[2]} {
		if got, err := c.Get(ctx, x.ID); err != nil || got.AccessToken != x.AccessToken {
			t.Errorf("after the restart: Get = %v", err)
		}
	}
	if n, err := c.Count(ctx); err != nil || n != 2 {
		t.Errorf("after the restart: Count = %d, %v; want 2", n, err)
	}

	// And a's subscription works: a new write reaches it in time.
	if _, err := b.Update(ctx, renamed.ID, func(s *sessions.Session) error { s.Handle = "again.test"; return nil }); err != nil {
		t.Fatal(err)
	}
	within(t, propagate, "an update after the restart", func() error {
		if got, err := a.Get(ctx, renamed.ID); err != nil || got.Handle != "again.test" {
			return fmt.Errorf("handle %q, %v", got.Handle, err)
		}
		return nil
	})

	// A restart without the gate: go-redis resubscribes by itself.
	f.srv.Restart(t)
	if err := b.Delete(ctx, renamed.ID); err != nil {
		t.Fatalf("delete after the second restart: %v", err)
	}
	within(t, resubscribe, "a delete after the second restart", func() error {
		if !listening(a) {
			return errors.New("not listening yet")
		}
		if _, err := a.Get(ctx, renamed.ID); !errors.Is(err, sessions.ErrNotFound) {
			return fmt.Errorf("Get = %v", err)
		}
		return nil
	})
}

// timed runs fn and fails the test if it takes longer than d.
func timed(t *testing.T, what string, d time.Duration, fn func()) {
	t.Helper()
	start := time.Now()
	fn()
	if took := time.Since(start); took > d {
		t.Errorf("%s took %v, over %v", what, took.Round(time.Millisecond), d)
	}
}

// Case 5: with Redis out of reach, cached sessions still answer, and
// everything else fails in bounded time with an error that is not
// ErrNotFound (a signed-in user is not signed out by an outage); once
// Redis is back, the same store works again.
func TestRedisUnreachable(t *testing.T) {
	t.Parallel()
	for _, down := range []struct {
		name string
		stop func(*redistest.Server, testing.TB)
	}{
		{"stopped", (*redistest.Server).Stop},
		{"killed", (*redistest.Server).Kill},
	} {
		t.Run(down.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, redistest.Options{AOF: true})
			a, b := f.open(t, Config{}), f.open(t, Config{})
			closing := f.open(t, Config{})
			ctx := t.Context()
			cached, uncached := newSession(t), newSession(t)
			mustCreate(t, a, cached)
			mustCreate(t, b, uncached)

			down.stop(f.srv, t)
			timed(t, "lookups of a cached session", 100*time.Millisecond, func() {
				if got, err := a.Get(ctx, cached.ID); err != nil || got.AccessToken != cached.AccessToken {
					t.Errorf("Get of a cached session with Redis down: %v", err)
				}
				if got, err := a.ByProxyKey(ctx, cached.ProxyKey); err != nil || got.ID != cached.ID {
					t.Errorf("ByProxyKey of a cached session with Redis down: %v", err)
				}
			})
			// Each call with a context of its own; none may outlast it by
			// more than the store's own timeouts allow.
			const callTimeout = 2 * time.Second
			for _, op := range []struct {
				name string
				run  func(ctx context.Context) error
			}{
				{"Get", func(ctx context.Context) error { _, err := a.Get(ctx, uncached.ID); return err }},
				{"ByProxyKey", func(ctx context.Context) error { _, err := a.ByProxyKey(ctx, uncached.ProxyKey); return err }},
				{"Create", func(ctx context.Context) error { _, err := a.Create(ctx, newSession(t)); return err }},
				{"Update", func(ctx context.Context) error {
					_, err := a.Update(ctx, cached.ID, func(*sessions.Session) error { return nil })
					return err
				}},
				{"Delete", func(ctx context.Context) error { return a.Delete(ctx, uncached.ID) }},
				{"PutPending", func(ctx context.Context) error { return a.PutPending(ctx, newPending(t)) }},
				{"TakePending", func(ctx context.Context) error { _, err := a.TakePending(ctx, sessions.NewToken()); return err }},
				{"Lock", func(ctx context.Context) error {
					release, err := a.Lock(ctx, "refresh:x", time.Minute)
					if err == nil {
						release()
					}
					return err
				}},
				{"Secret", func(ctx context.Context) error {
					_, err := a.Secret(ctx, "client", func() ([]byte, error) { return []byte("s"), nil })
					return err
				}},
				{"Count", func(ctx context.Context) error { _, err := a.Count(ctx); return err }},
				{"List", func(ctx context.Context) error { _, err := a.List(ctx); return err }},
				{"DeleteExpired", func(ctx context.Context) error { _, err := a.DeleteExpired(ctx); return err }},
			} {
				timed(t, op.name+" with Redis down", outage, func() {
					ctx, cancel := context.WithTimeout(ctx, callTimeout)
					defer cancel()
					err := op.run(ctx)
					if err == nil || errors.Is(err, sessions.ErrNotFound) {
						t.Errorf("%s with Redis down = %v, want an error that is not ErrNotFound", op.name, err)
					}
				})
			}
			f.close(t, closing, outage)

			f.srv.Restart(t)
			waitListening(t, a, resubscribe)
			// The subscription has a connection of its own; the others
			// come back once go-redis's dial breaker (tripped by PoolSize
			// failed dials) sees a dial succeed, which it tries each second.
			within(t, outage, "Get after Redis is back", func() error {
				if got, err := a.Get(ctx, uncached.ID); err != nil || got.ID != uncached.ID {
					return fmt.Errorf("Get = %v", err)
				}
				return nil
			})
			mustCreate(t, a, newSession(t))
			p := newPending(t)
			if err := a.PutPending(ctx, p); err != nil {
				t.Errorf("PutPending after Redis is back: %v", err)
			}
			if _, err := a.TakePending(ctx, p.State); err != nil {
				t.Errorf("TakePending after Redis is back: %v", err)
			}
			release, err := a.Lock(ctx, "refresh:x", time.Minute)
			if err != nil {
				t.Fatalf("Lock after Redis is back: %v", err)
			}
			release()
			if err := b.Delete(ctx, cached.ID); err != nil {
				t.Fatal(err)
			}
			within(t, propagate, "a delete after Redis is back", func() error {
				if _, err := a.Get(ctx, cached.ID); !errors.Is(err, sessions.ErrNotFound) {
					return fmt.Errorf("Get = %v", err)
				}
				return nil
			})
		})
	}
}

// Case 6: ids that no store issues (see sessions.WellFormedToken) are not
// found, and cost Redis nothing: junk in a cookie or a header is not a
// lookup, and no key is built from it.
func TestJunkIDsCostNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	s := f.open(t, Config{})
	ctx := t.Context()
	good := sessions.NewToken()
	junk := []struct{ name, id string }{
		{"empty", ""},
		{"42 characters", good[:42]},
		{"44 characters", good + "A"},
		{"a colon", good[:20] + ":" + good[21:]},
		{"a key pattern", good[:42] + "*"},
		{"a newline", good[:42] + "\n"},
		{"a NUL", "\x00" + good[1:]},
		{"CRLF and a command", good[:30] + "\r\nFLUSHALL\r\n\x00"},
		{"standard base64", good[:41] + "+/"},
		{"padding", good[:42] + "="},
		{"a space", good[:42] + " "},
		{"non-ASCII", good[:41] + "é"},
		{"a prefix's worth", testPrefix + "s:" + good[:39]},
		{"10 KB", strings.Repeat("a", 10<<10)},
	}
	f.costsNothing(t, "lookups of junk ids", func() {
		for _, j := range junk {
			if _, err := s.Get(ctx, j.id); !errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("%s: Get = %v, want ErrNotFound", j.name, err)
			}
			if _, err := s.ByProxyKey(ctx, j.id); !errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("%s: ByProxyKey = %v, want ErrNotFound", j.name, err)
			}
			if _, err := s.TakePending(ctx, j.id); !errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("%s: TakePending = %v, want ErrNotFound", j.name, err)
			}
			if err := s.Delete(ctx, j.id); err != nil {
				t.Errorf("%s: Delete = %v, want nil", j.name, err)
			}
			_, err := s.Update(ctx, j.id, func(*sessions.Session) error {
				t.Errorf("%s: Update ran its function", j.name)
				return nil
			})
			if !errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("%s: Update = %v, want ErrNotFound", j.name, err)
			}
		}
	})
	// The store refuses to make such records, so that lookups may refuse
	// them unasked.
	for _, j := range junk {
		x := newSession(t)
		x.ID = j.id
		if _, err := s.Create(ctx, x); err == nil {
			t.Errorf("%s: Create of a session with this id succeeded", j.name)
		}
		x = newSession(t)
		x.ProxyKey = j.id
		if _, err := s.Create(ctx, x); err == nil {
			t.Errorf("%s: Create of a session with this proxy key succeeded", j.name)
		}
		p := newPending(t)
		p.State = j.id
		if err := s.PutPending(ctx, p); err == nil {
			t.Errorf("%s: PutPending with this state succeeded", j.name)
		}
	}
	if keys := f.scan(t); len(keys) != 0 {
		t.Errorf("refused records left keys: %q", keys)
	}
}

// maxKeyBytes bounds a key's length: the prefix, a kind, and a token or
// a digest.
const maxKeyBytes = 200

// Case 7: long values that name sets (an issuer, a client address, a
// host and DID) are hashed into key names, not copied.
func TestKeyNamesAreBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	s := f.open(t, Config{})
	ctx := t.Context()
	long := func(c string, n int) string { return strings.Repeat(c, n) }

	for _, p := range []func(*sessions.Pending){
		func(p *sessions.Pending) { p.Issuer = "https://" + long("i", 10<<10) + ".example" },
		func(p *sessions.Pending) { p.Client = long("c", 10<<10) },
		func(p *sessions.Pending) { p.Issuer, p.Client = "https://"+long("j", 10<<10), long("d", 10<<10) },
	} {
		x := newPending(t)
		p(&x)
		if err := s.PutPending(ctx, x); err != nil {
			t.Fatalf("PutPending: %v", err)
		}
	}
	for _, e := range []func(*sessions.Session){
		func(x *sessions.Session) { x.DID = "did:web:" + long("d", sessions.MaxDIDBytes-len("did:web:")) },
		func(x *sessions.Session) { x.Host = long("h", 10<<10) + ".example" },
		func(x *sessions.Session) { x.Host, x.DID = long("g", 10<<10), "did:web:"+long("e", 2000) },
	} {
		x := newSession(t)
		e(&x)
		mustCreate(t, s, x)
	}
	keys := f.scan(t)
	if len(keys) < 10 { // sessions, proxy keys, accounts, pendings, their sets
		t.Fatalf("only %d keys in Redis: %q", len(keys), keys)
	}
	for _, k := range keys {
		if len(k) > maxKeyBytes {
			t.Errorf("a key of %d bytes: %.80s…", len(k), k)
		}
	}
}

// Bug: Redis expires a session's hash (its TTL is its expiry) before the
// sweep sees it, and the sweep then cannot find the account set the
// hash named; those sets stayed forever, one per account that ever
// signed in. The account set now expires with its last session.
func TestNothingOutlivesExpiredSessions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	s := f.open(t, Config{})
	ctx := t.Context()
	short := 300 * time.Millisecond
	for range 3 {
		x := newSession(t)
		x.Expiry = time.Now().Add(short)
		mustCreate(t, s, x)
		y := newSession(t)
		y.DID, y.Expiry = x.DID, time.Now().Add(short+100*time.Millisecond) // two of one account
		mustCreate(t, s, y)
		p := newPending(t)
		p.Expiry = time.Now().Add(short)
		if err := s.PutPending(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(short + 200*time.Millisecond)
	n, err := s.DeleteExpired(ctx)
	if err != nil || n != 9 {
		t.Errorf("DeleteExpired = %d, %v; want 9", n, err)
	}
	within(t, 2*time.Second, "keys left by expired records", func() error {
		if left := f.scan(t); len(left) > 0 {
			return fmt.Errorf("left: %q", left)
		}
		return nil
	})
}

// The account set lives as long as its longest-lived session, however
// updates move their expiry: else a refreshed account would escape its
// MaxPerAccount cap once its set lapsed.
func TestAccountCapOutlivesFirstExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	s := f.open(t, Config{Options: sessions.Options{MaxPerAccount: 2}})
	ctx := t.Context()
	short := 300 * time.Millisecond
	first := newSession(t)
	first.Expiry = time.Now().Add(short)
	mustCreate(t, s, first)
	if _, err := s.Update(ctx, first.ID, func(x *sessions.Session) error { x.Expiry = time.Now().Add(time.Hour); return nil }); err != nil {
		t.Fatal(err)
	}
	// A session that never expires keeps the set for good.
	forever := newSession(t)
	forever.Expiry = time.Time{}
	mustCreate(t, s, forever)
	if _, err := s.Update(ctx, forever.ID, func(x *sessions.Session) error { x.Handle = "still.test"; return nil }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(short + 200*time.Millisecond)

	acct := s.keys.account(digest(first.Host, first.DID))
	if n, err := f.raw.ZCard(ctx, acct).Result(); err != nil || n != 1 {
		t.Fatalf("the account set holds %d sessions (%v), want 1", n, err)
	}
	if ttl, err := f.raw.PTTL(ctx, s.keys.account(digest(forever.Host, forever.DID))).Result(); err != nil || ttl != -1 {
		t.Errorf("the set of an account whose session never expires: TTL %v (%v), want none", ttl, err)
	}

	second, third := newSession(t), newSession(t)
	second.DID, third.DID = first.DID, first.DID
	second.CreatedAt, third.CreatedAt = first.CreatedAt.Add(time.Second), first.CreatedAt.Add(2*time.Second)
	mustCreate(t, s, second)
	evicted, err := s.Create(ctx, third)
	if err != nil || len(evicted) != 1 || evicted[0].ID != first.ID {
		t.Fatalf("the account's third session: evicted %d, %v; want the first", len(evicted), err)
	}
}

// Bug: a replica that found a cached session gone from Redis (deleted
// without an invalidation: by hand, by Redis's maxmemory eviction, or
// while the message was lost) kept the entry, and served it again as
// soon as Redis was out of reach. What Redis says is gone is dropped.
func TestGoneFromRedisStaysGone(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	maxAge := 50 * time.Millisecond
	s := f.open(t, Config{CacheMaxAge: maxAge})
	ctx := t.Context()
	byID, byProxy := newSession(t), newSession(t)
	for _, x := range []sessions.Session{byID, byProxy} {
		mustCreate(t, s, x)
		if err := f.raw.Del(ctx, s.keys.session(ref(x.ID)), s.keys.proxy(ref(x.ProxyKey))).Err(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * maxAge)
	if _, err := s.Get(ctx, byID.ID); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("Get of a session gone from Redis = %v, want ErrNotFound", err)
	}
	if _, err := s.ByProxyKey(ctx, byProxy.ProxyKey); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("ByProxyKey of a session gone from Redis = %v, want ErrNotFound", err)
	}
	f.srv.Stop(t)
	if _, err := s.Get(ctx, byID.ID); err == nil {
		t.Error("with Redis down, Get serves a session that Redis said was gone")
	}
	if _, err := s.ByProxyKey(ctx, byProxy.ProxyKey); err == nil {
		t.Error("with Redis down, ByProxyKey serves a session that Redis said was gone")
	}
}

// cancelOnSet is a go-redis hook that ends a context once the lock's SET
// has run in Redis: the reply read (lost: false), or lost on the way.
type cancelOnSet struct {
	cancel context.CancelFunc
	lost   bool
}

func (h *cancelOnSet) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *cancelOnSet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "set" {
			h.cancel()
			if h.lost {
				cmd.SetErr(context.Canceled)
				return context.Canceled
			}
		}
		return err
	}
}
func (h *cancelOnSet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Bug: a Lock whose context ended just as Redis gave it the lock
// returned an error and left the lock held for its whole lease, which
// no one could release: every other caller waited it out. It now frees
// what it may have taken.
func TestLockAbandonedAsContextEnds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	for _, lost := range []bool{false, true} {
		t.Run(fmt.Sprintf("reply lost=%v", lost), func(t *testing.T) {
			s := f.open(t, Config{Prefix: fmt.Sprintf("t:lost-%v:", lost)})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			s.rdb.AddHook(&cancelOnSet{cancel: cancel, lost: lost})
			release, err := s.Lock(ctx, "refresh:x", time.Hour)
			if err == nil {
				release()
				t.Fatal("Lock succeeded with its context ended")
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Lock = %v, want context.Canceled", err)
			}
			within(t, 2*time.Second, "the abandoned lock freed", func() error {
				n, err := f.raw.Exists(t.Context(), s.keys.lock("refresh:x")).Result()
				if err != nil || n != 0 {
					return fmt.Errorf("the lock key exists (%v)", err)
				}
				return nil
			})
		})
	}
}

// Bug: List and Reseal read sessions in pipelines and skipped every
// command that failed once the first failure was an expired session's
// nil: a session Redis could not read (a connection lost mid-batch, a
// key of the wrong type) went missing from List and, worse, was not
// sealed again by a Reseal that reported success, so removing the old
// key afterwards lost it. Only an expired session is skipped now.
func TestListAndResealDoNotSkipUnreadable(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	s := f.open(t, Config{})
	ctx := t.Context()
	mustCreate(t, s, newSession(t))
	gone, unreadable := ref(sessions.NewToken()), ref(sessions.NewToken())
	// First in the all set an expired session's ref, then one whose key
	// is not a hash.
	if err := f.raw.ZAdd(ctx, s.keys.all(), redis.Z{Score: 1, Member: gone}, redis.Z{Score: 2, Member: unreadable}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.raw.Set(ctx, s.keys.session(unreadable), "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.List(ctx); err == nil {
		t.Errorf("List = %d sessions and no error, with one that Redis cannot read", len(got))
	}
	if n, err := s.Reseal(ctx); err == nil {
		t.Errorf("Reseal = %d and no error, with a session that Redis cannot read", n)
	}
	if err := f.raw.Del(ctx, s.keys.session(unreadable)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.raw.ZRem(ctx, s.keys.all(), unreadable).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.List(ctx); err != nil || len(got) != 1 {
		t.Errorf("List with an expired ref = %d sessions, %v; want 1", len(got), err)
	}
}

// What arrives on the invalidation channel is anyone's who can PUBLISH:
// junk there drops nothing it should not and stops nothing.
func TestJunkInvalidations(t *testing.T) {
	t.Parallel()
	f := newFixture(t, redistest.Options{})
	a, b := f.open(t, Config{}), f.open(t, Config{})
	ctx := t.Context()
	sess := newSession(t)
	mustCreate(t, a, sess)
	for _, junk := range []string{"", " ", "x", "x y z", "\x00\r\n", strings.Repeat("j", 1<<20), a.instance + " " + ref(sess.ID)} {
		if err := f.raw.Publish(ctx, a.keys.channel(), junk).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.Update(ctx, sess.ID, func(x *sessions.Session) error { x.Handle = "after.test"; return nil }); err != nil {
		t.Fatal(err)
	}
	within(t, propagate, "an update after junk on the channel", func() error {
		if !listening(a) {
			return errors.New("a stopped listening")
		}
		if got, err := a.Get(ctx, sess.ID); err != nil || got.Handle != "after.test" {
			return fmt.Errorf("handle %q, %v", got.Handle, err)
		}
		return nil
	})
}
