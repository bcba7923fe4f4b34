package boltstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

func mustKeys(t testing.TB, encoded ...string) *sealed.Keys {
	t.Helper()
	k, err := sealed.ParseKeys(encoded)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// secretName is the record Secret stores, as ioproxy names its client key.
const secretName = "oauth-client-es256"

// records are one record of each kind, with credentials distinctive
// enough to look for in the raw file.
type records struct {
	sess    sessions.Session
	pending sessions.Pending
	secret  []byte
}

func newRecords(t *testing.T, c *clock) records {
	t.Helper()
	sess := newSession(c)
	sess.AccessToken = "access-" + sessions.NewToken()
	sess.RefreshToken = "refresh-" + sessions.NewToken()
	key, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	p := sessions.Pending{
		State: sessions.NewToken(), Host: "app.example.com", Issuer: "https://bsky.social",
		PKCEVerifier: "verifier-" + sessions.NewToken(), DPoPKey: key, Expiry: c.Now().Add(time.Hour),
	}
	return records{sess: sess, pending: p, secret: []byte(`{"kty":"EC","d":"client-key-` + sessions.NewToken() + `"}`)}
}

// plaintexts are what must never be in a sealed file.
func (r records) plaintexts() []string {
	return []string{r.sess.AccessToken, r.sess.RefreshToken, r.pending.PKCEVerifier, string(r.secret)}
}

// write stores r in s: the session, the pending sign-in and the secret.
func (r records) write(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	if _, err := s.Create(ctx, r.sess); err != nil {
		t.Fatal(err)
	}
	if err := s.PutPending(ctx, r.pending); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Secret(ctx, secretName, func() ([]byte, error) { return r.secret, nil }); err != nil {
		t.Fatal(err)
	}
}

// check reads r back from s: the session, the secret (not generated
// again), and the pending sign-in, which it takes.
func (r records) check(t *testing.T, s *Store) {
	t.Helper()
	ctx := t.Context()
	got, err := s.Get(ctx, r.sess.ID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if got.AccessToken != r.sess.AccessToken || got.RefreshToken != r.sess.RefreshToken {
		t.Errorf("session tokens = %q, %q; want %q, %q", got.AccessToken, got.RefreshToken, r.sess.AccessToken, r.sess.RefreshToken)
	}
	secret, err := s.Secret(ctx, secretName, func() ([]byte, error) { return nil, errors.New("generated again") })
	if err != nil || !bytes.Equal(secret, r.secret) {
		t.Errorf("Secret = %q, %v; want %q", secret, err, r.secret)
	}
	p, err := s.TakePending(ctx, r.pending.State)
	if err != nil {
		t.Fatalf("TakePending: %v", err)
	}
	if p.PKCEVerifier != r.pending.PKCEVerifier || p.DPoPKey == nil {
		t.Errorf("pending sign-in = verifier %q, key %v; want %q and a key", p.PKCEVerifier, p.DPoPKey, r.pending.PKCEVerifier)
	}
}

func openKeys(t *testing.T, path string, c *clock, keys *sealed.Keys) (*Store, error) {
	t.Helper()
	s, err := Open(Config{Path: path, Options: sessions.Options{Now: c.Now}, Keys: keys})
	if err == nil {
		t.Cleanup(func() { _ = s.Close() })
	}
	return s, err
}

func mustOpenKeys(t *testing.T, path string, c *clock, keys *sealed.Keys) *Store {
	t.Helper()
	s, err := openKeys(t, path, c, keys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// plaintextIn returns those of texts that the file at path holds as they
// are, read as raw bytes, free pages included.
func plaintextIn(t *testing.T, path string, texts []string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, x := range texts {
		if bytes.Contains(raw, []byte(x)) {
			found = append(found, x)
		}
	}
	return found
}

// rawEach calls fn with every value of the store's file, outside the store.
func rawEach(t *testing.T, path string, fn func(bucket, key, v []byte)) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketSessions, bucketPending, bucketKeys} {
			_ = tx.Bucket(b).ForEach(func(k, v []byte) error { fn(b, k, v); return nil })
		}
		return nil
	})
}

// rawUpdate changes the store's file outside the store.
func rawUpdate(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// TestSealedAtRest: with Keys, nothing in the file, free pages included,
// holds a token, a PKCE verifier or the secret; without, it all is there,
// which is what the check looks for.
func TestSealedAtRest(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	for _, tc := range []struct {
		name  string
		keys  *sealed.Keys
		plain bool
	}{
		{"plain", nil, true},
		{"sealed", mustKeys(t, sealed.Generate()), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "data", "db")
			r := newRecords(t, c)
			s := mustOpenKeys(t, path, c, tc.keys)
			r.write(t, s)
			// An update and a sign-out leave old pages behind.
			gone := newRecords(t, c)
			gone.sess.DID = "did:plc:bob"
			gone.write(t, s)
			if _, err := s.Update(t.Context(), gone.sess.ID, func(x *sessions.Session) error { x.Handle = "bob.test"; return nil }); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(t.Context(), gone.sess.ID); err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			found := plaintextIn(t, path, r.plaintexts())
			if tc.plain && len(found) != len(r.plaintexts()) {
				t.Fatalf("the plain file holds %d of %d plaintexts; the check cannot see them", len(found), len(r.plaintexts()))
			}
			if !tc.plain && len(found) > 0 {
				t.Errorf("the sealed file holds %q", found)
			}
			if !tc.plain {
				if found := plaintextIn(t, path, gone.plaintexts()); len(found) > 0 {
					t.Errorf("the sealed file holds %q of a deleted session", found)
				}
			}
			s = mustOpenKeys(t, path, c, tc.keys)
			if n := s.Resealed(); n != 0 {
				t.Errorf("Resealed = %d, want 0", n)
			}
			r.check(t, s)
		})
	}
}

// TestPlaintextIsSealedAtOpen: turning encryption on for a store written
// without it needs a restart: Open seals every record, compacts the file
// so that no free page keeps the plaintext (of these records, or of
// those deleted before), and the records read back the same.
func TestPlaintextIsSealedAtOpen(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "data", "db")
	r, gone := newRecords(t, c), newRecords(t, c)
	gone.sess.DID = "did:plc:bob"
	s := mustOpenKeys(t, path, c, nil)
	r.write(t, s)
	if _, err := s.Create(t.Context(), gone.sess); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), gone.sess.ID); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	plain := append(r.plaintexts(), gone.sess.AccessToken)
	if found := plaintextIn(t, path, plain); len(found) != len(plain) {
		t.Fatalf("the plain file holds %d of %d plaintexts; the check cannot see them", len(found), len(plain))
	}

	keys := mustKeys(t, sealed.Generate())
	s = mustOpenKeys(t, path, c, keys)
	if n := s.Resealed(); n != 3 {
		t.Errorf("Resealed = %d, want 3 (a session, a pending sign-in, a secret)", n)
	}
	_ = s.Close()
	if found := plaintextIn(t, path, plain); len(found) > 0 {
		t.Errorf("after sealing at Open, the file still holds %q", found)
	}
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the compaction's file is left: %v", err)
	}
	rawEach(t, path, func(bucket, key, v []byte) {
		if _, err := keys.Open(v, kindOf(t, bucket).record(key)); err != nil {
			t.Errorf("a raw %s value: %v", bucket, err)
		}
	})
	s = mustOpenKeys(t, path, c, keys)
	if n := s.Resealed(); n != 0 {
		t.Errorf("second Open: Resealed = %d, want 0", n)
	}
	r.check(t, s)
}

func kindOf(t *testing.T, bucket []byte) kind {
	t.Helper()
	for _, k := range []kind{sessionKind, pendingKind, secretKind} {
		if bytes.Equal(k.bucket, bucket) {
			return k
		}
	}
	t.Fatalf("no kind of record in bucket %s", bucket)
	return kind{}
}

// TestRotation: with a new key first and the old one after, Open reseals
// every record with the new key, after which the old key can go.
func TestRotation(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "data", "db")
	a, b := sealed.Generate(), sealed.Generate()
	r := newRecords(t, c)
	s := mustOpenKeys(t, path, c, mustKeys(t, a))
	r.write(t, s)
	_ = s.Close()

	s = mustOpenKeys(t, path, c, mustKeys(t, b, a))
	if n := s.Resealed(); n != 3 {
		t.Errorf("Resealed = %d, want 3", n)
	}
	_ = s.Close()
	onlyA, onlyB := mustKeys(t, a), mustKeys(t, b)
	rawEach(t, path, func(bucket, key, v []byte) {
		if _, err := onlyA.Open(v, kindOf(t, bucket).record(key)); !errors.Is(err, sealed.ErrUnknownKey) {
			t.Errorf("a raw %s value under the old key: %v, want ErrUnknownKey", bucket, err)
		}
	})
	s, err := openKeys(t, path, c, onlyB)
	if err != nil {
		t.Fatalf("the new key alone: %v", err)
	}
	if n := s.Resealed(); n != 0 {
		t.Errorf("Resealed with the new key alone = %d, want 0", n)
	}
	r.check(t, s)
}

// TestInterruptedCompaction: the mark of a finished compaction is made
// in the compacted file only; without it, the next Open compacts again,
// even with nothing to reseal, and clears what a failed one left.
func TestInterruptedCompaction(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "data", "db")
	keys := mustKeys(t, sealed.Generate())
	r := newRecords(t, c)
	s := mustOpenKeys(t, path, c, keys)
	r.write(t, s)
	_ = s.Close()
	sealedBy(t, path, true)
	rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keySealedBy) })
	if err := os.WriteFile(path+".compact", []byte("half a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = mustOpenKeys(t, path, c, keys)
	r.check(t, s)
	_ = s.Close()
	sealedBy(t, path, true)
	if _, err := os.Stat(path + ".compact"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the compaction's file is left: %v", err)
	}
	// An empty store opened without keys may write plaintext: the mark
	// goes, and the next Open with keys compacts again.
	empty := filepath.Join(t.TempDir(), "data", "db")
	_ = mustOpenKeys(t, empty, c, keys).Close()
	sealedBy(t, empty, true)
	_ = mustOpenKeys(t, empty, c, nil).Close()
	sealedBy(t, empty, false)
}

// sealedBy checks whether the file holds the mark of a finished compaction.
func sealedBy(t *testing.T, path string, want bool) {
	t.Helper()
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		if got := tx.Bucket(bucketMeta).Get(keySealedBy) != nil; got != want {
			t.Errorf("the compaction mark is set: %v, want %v", got, want)
		}
		return nil
	})
}

// TestPlaintextLeftoversAreCompactedAway: plaintext the records no
// longer hold stays in the file's free pages until a compaction: that of
// sessions deleted before encryption was turned on (no record is left to
// reseal, yet the first Open with keys compacts), and that of sessions an
// older ioproxy, which knows no compaction mark, wrote into a sealed file.
func TestPlaintextLeftoversAreCompactedAway(t *testing.T) {
	keys := mustKeys(t, sealed.Generate())
	for _, tc := range []struct {
		name     string
		keys     *sealed.Keys // of the first store
		resealed int
		write    func(t *testing.T, path string, c *clock, ss []sessions.Session)
	}{
		{"deleted before encryption", nil, 0, func(t *testing.T, path string, c *clock, ss []sessions.Session) {
			s := mustOpenKeys(t, path, c, nil)
			defer s.Close()
			for _, sess := range ss {
				if _, err := s.Create(t.Context(), sess); err != nil {
					t.Fatal(err)
				}
			}
			// One transaction frees every page: later ones reuse few.
			c.Add(25 * time.Hour)
			if n, err := s.DeleteExpired(t.Context()); err != nil || n != len(ss) {
				t.Fatalf("DeleteExpired = %d, %v", n, err)
			}
		}},
		{"written plain into a sealed file", keys, 50, func(t *testing.T, path string, c *clock, ss []sessions.Session) {
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				for _, sess := range ss {
					v, err := sessions.EncodeSession(&sess)
					if err != nil {
						return err
					}
					if err := tx.Bucket(bucketSessions).Put([]byte(sess.ID), v); err != nil {
						return err
					}
				}
				return nil
			})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
			path := filepath.Join(t.TempDir(), "data", "db")
			_ = mustOpenKeys(t, path, c, tc.keys).Close()
			var ss []sessions.Session
			var tokens []string
			for i := range 50 {
				r := newRecords(t, c)
				r.sess.DID = fmt.Sprintf("did:plc:user%d", i)
				ss = append(ss, r.sess)
				tokens = append(tokens, r.sess.AccessToken, r.sess.RefreshToken)
			}
			tc.write(t, path, c, ss)
			if found := plaintextIn(t, path, tokens); len(found) < len(tokens)/2 {
				t.Fatalf("the file holds %d of %d tokens; the check cannot see them", len(found), len(tokens))
			}
			s := mustOpenKeys(t, path, c, keys)
			if n := s.Resealed(); n != tc.resealed {
				t.Errorf("Resealed = %d, want %d", n, tc.resealed)
			}
			_ = s.Close()
			if found := plaintextIn(t, path, tokens); len(found) > 0 {
				t.Errorf("after Open with keys, the file still holds %d tokens", len(found))
			}
		})
	}
}

// TestRecordsThatDoNotOpen: a sealed store opened without keys, with a
// key that did not seal it, or with a record that was changed, fails to
// open, naming the kind of record and never its key (a session id, a
// state), and drops nothing: with the right key it opens as before.
func TestRecordsThatDoNotOpen(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a := sealed.Generate()
	for _, k := range []kind{sessionKind, pendingKind, secretKind} {
		for _, tc := range []struct {
			name   string
			keys   *sealed.Keys
			tamper func(v []byte) []byte
			want   error
			say    string
		}{
			{"no keys", nil, nil, ErrSealed, "set encryption_key"},
			{"another key", mustKeys(t, sealed.Generate()), nil, sealed.ErrUnknownKey, "put the old key back"},
			{"flipped bit", mustKeys(t, a), func(v []byte) []byte { v[len(v)-1] ^= 1; return v }, sealed.ErrTampered, ""},
			{"truncated", mustKeys(t, a), func(v []byte) []byte { return v[:len(v)-1] }, sealed.ErrTampered, ""},
		} {
			t.Run(k.name+"/"+tc.name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "data", "db")
				key := writeOne(t, path, c, mustKeys(t, a), k)
				if tc.tamper != nil {
					rawUpdate(t, path, func(tx *bolt.Tx) error {
						b := tx.Bucket(k.bucket)
						return b.Put(key, tc.tamper(bytes.Clone(b.Get(key))))
					})
				}
				_, err := openKeys(t, path, c, tc.keys)
				if !errors.Is(err, tc.want) {
					t.Fatalf("Open = %v, want %v", err, tc.want)
				}
				msg := err.Error()
				if !strings.Contains(msg, "stored "+k.name) || !strings.Contains(msg, tc.say) {
					t.Errorf("error %q does not say it is a stored %s, and %q", msg, k.name, tc.say)
				}
				if strings.Contains(msg, string(key)) {
					t.Errorf("error %q names the record", msg)
				}
				if tc.tamper == nil {
					if s, err := openKeys(t, path, c, mustKeys(t, a)); err != nil {
						t.Errorf("with the right key after a failed Open: %v", err)
					} else if n, _ := s.Count(t.Context()); k.name == sessionKind.name && n != 1 {
						t.Errorf("with the right key after a failed Open: %d sessions, want 1", n)
					}
				}
			})
		}
	}
}

// TestMovedRecordDoesNotOpen: a sealed value copied under another key
// (one user's session as another's, a session as a pending sign-in) is
// tampered: the seal binds the record's kind and key.
func TestMovedRecordDoesNotOpen(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	keys := mustKeys(t, sealed.Generate())
	for _, to := range []kind{sessionKind, pendingKind} {
		t.Run(to.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "data", "db")
			key := writeOne(t, path, c, keys, sessionKind)
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				v := bytes.Clone(tx.Bucket(bucketSessions).Get(key))
				return tx.Bucket(to.bucket).Put([]byte(sessions.NewToken()), v)
			})
			if _, err := openKeys(t, path, c, keys); !errors.Is(err, sealed.ErrTampered) {
				t.Fatalf("Open = %v, want ErrTampered", err)
			}
		})
	}
}

// writeOne makes a store at path that holds one record of kind k, sealed
// with keys, and returns its key in the bucket.
func writeOne(t *testing.T, path string, c *clock, keys *sealed.Keys, k kind) []byte {
	t.Helper()
	r := newRecords(t, c)
	s := mustOpenKeys(t, path, c, keys)
	defer s.Close()
	ctx := t.Context()
	var key []byte
	var err error
	switch k.name {
	case sessionKind.name:
		key = []byte(r.sess.ID)
		_, err = s.Create(ctx, r.sess)
	case pendingKind.name:
		key = []byte(r.pending.State)
		err = s.PutPending(ctx, r.pending)
	default:
		key = []byte(secretName)
		_, err = s.Secret(ctx, secretName, func() ([]byte, error) { return r.secret, nil })
	}
	if err != nil {
		t.Fatal(err)
	}
	return key
}
