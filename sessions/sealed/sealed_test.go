package sealed

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	k := mustKeys(t, std("a"))
	for _, tc := range []struct {
		name string
		size int
	}{
		{"empty", 0},
		{"one byte", 1},
		{"100 KB", 100 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt := make([]byte, tc.size)
			rand.Read(pt)
			s := k.Seal(pt, "session:abc")
			if len(s) != tc.size+Overhead {
				t.Errorf("sealed %d bytes into %d, want %d", tc.size, len(s), tc.size+Overhead)
			}
			if s[0] != version1 {
				t.Errorf("format byte 0x%02x", s[0])
			}
			if tc.size >= 16 && bytes.Contains(s, pt[:16]) {
				t.Error("sealed value contains the plaintext")
			}
			got, err := k.Open(s, "session:abc")
			if err != nil {
				t.Fatal(err)
			}
			if got == nil || !bytes.Equal(got, pt) {
				t.Errorf("Open = %d bytes (nil %t), want the %d sealed", len(got), got == nil, len(pt))
			}
			if k.NeedsReseal(s) {
				t.Error("NeedsReseal of a value sealed with the first key")
			}
		})
	}
}

func TestSealFreshNonce(t *testing.T) {
	k := mustKeys(t, std("a"))
	pt := []byte(`{"access_token":"x"}`)
	seen := map[string]bool{}
	for range 1000 {
		s := k.Seal(pt, "session:abc")
		nonce := string(s[headerSize : headerSize+nonceSize])
		if seen[nonce] {
			t.Fatal("nonce repeated")
		}
		seen[nonce] = true
	}
	a, b := k.Seal(pt, "id"), k.Seal(pt, "id")
	if bytes.Equal(a, b) || bytes.Equal(a[headerSize+nonceSize:], b[headerSize+nonceSize:]) {
		t.Error("two seals of the same plaintext share their ciphertext")
	}
}

// TestSealDoesNotTouchInput: Seal must not write into the caller's
// plaintext, nor Open into the sealed value (bbolt hands out read-only
// mmap'd memory).
func TestSealDoesNotTouchInput(t *testing.T) {
	k := mustKeys(t, std("a"))
	pt := []byte("secret")
	s := k.Seal(pt, "id")
	sCopy := bytes.Clone(s)
	if _, err := k.Open(s, "id"); err != nil {
		t.Fatal(err)
	}
	if string(pt) != "secret" || !bytes.Equal(s, sCopy) {
		t.Error("input modified")
	}
	// Appending to the plaintext that Open returned must not reach into
	// the sealed value.
	got, _ := k.Open(s, "id")
	_ = append(got, make([]byte, 64)...)
	if !bytes.Equal(s, sCopy) {
		t.Error("sealed value modified through Open's result")
	}
}

func TestOpenErrors(t *testing.T) {
	k := mustKeys(t, std("new"), std("old"))
	good := k.Seal([]byte(`{"refresh_token":"r"}`), "session:abc")
	for _, tc := range []struct {
		name   string
		sealed []byte
		id     string
		want   error
		text   string
	}{
		{"wrong id", good, "session:abd", ErrTampered, "sealed value failed authentication: it was modified or belongs to another record"},
		{"id of another kind", good, "secret:oauth-client-es256", ErrTampered, ""},
		{"empty id", good, "", ErrTampered, ""},
		{"empty value", []byte{}, "session:abc", ErrTampered, "sealed value failed authentication: the value is empty"},
		{"nil value", nil, "session:abc", ErrTampered, ""},
		{"plaintext JSON", []byte(`{"access_token":"at","dpop_key":"k"}`), "session:abc", ErrNotSealed, "value is not sealed"},
		{"plaintext with leading space", []byte(` {"a":1}`), "session:abc", ErrNotSealed, ""},
		{"plaintext array", []byte(`[1]`), "session:abc", ErrNotSealed, ""},
		{"plaintext brace only", []byte(`{`), "session:abc", ErrNotSealed, ""},
		{"future format", append([]byte{0x82}, good[1:]...), "session:abc", ErrTampered, "unknown format byte 0x82 (a damaged value, or one written by a newer ioproxy)"},
		{"binary junk", []byte{0x00, 0x01, 0x02}, "session:abc", ErrTampered, "unknown format byte 0x00"},
		{"header only", good[:headerSize+nonceSize], "session:abc", ErrTampered, "17 bytes is shorter than any sealed value"},
		{"extra byte", append(bytes.Clone(good), 0), "session:abc", ErrTampered, ""},
		{"unknown key", mustKeys(t, std("other")).Seal([]byte("x"), "session:abc"), "session:abc", ErrUnknownKey, "put the old key back in encryption_key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pt, err := k.Open(tc.sealed, tc.id)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open = %q, %v; want %v", pt, err, tc.want)
			}
			if pt != nil {
				t.Errorf("Open returned %q with an error", pt)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not contain %q", err, tc.text)
			}
			if tc.id != "" && strings.Contains(err.Error(), tc.id) {
				t.Errorf("error %q names the record id", err)
			}
			assertOneSentinel(t, err)
		})
	}
}

func assertOneSentinel(t testing.TB, err error) {
	t.Helper()
	n := 0
	for _, s := range []error{ErrNotSealed, ErrUnknownKey, ErrTampered} {
		if errors.Is(err, s) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("error %q matches %d of the sentinel errors, want 1", err, n)
	}
}

// TestBitFlips flips every bit of a sealed value in turn, the format byte
// and key identifier included: each must be ErrTampered, never plaintext
// or another key's problem.
func TestBitFlips(t *testing.T) {
	for _, tc := range []struct {
		name string
		ring []string
	}{
		{"one key", []string{std("a")}},
		// With a second key, a flipped identifier must not turn into an
		// attempt with the wrong key reported as a missing key.
		{"two keys", []string{std("a"), std("b")}},
		{"sealed by the second key", []string{std("b"), std("a")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := mustKeys(t, tc.ring...)
			s := mustKeys(t, std("a")).Seal([]byte(`{"access_token":"at"}`), "session:abc")
			for i := range len(s) * 8 {
				m := bytes.Clone(s)
				m[i/8] ^= 1 << (i % 8)
				pt, err := k.Open(m, "session:abc")
				if !errors.Is(err, ErrTampered) {
					t.Fatalf("bit %d of byte %d flipped: Open = %q, %v; want ErrTampered", i%8, i/8, pt, err)
				}
			}
		})
	}
}

// TestTruncated cuts a sealed value at every length, from either end.
func TestTruncated(t *testing.T) {
	k := mustKeys(t, std("a"), std("b"))
	s := k.Seal([]byte(`{"access_token":"at","refresh_token":"rt"}`), "session:abc")
	for n := range len(s) {
		for _, cut := range []struct {
			end string
			v   []byte
		}{{"tail", s[:n]}, {"head", s[len(s)-n:]}} {
			pt, err := k.Open(cut.v, "session:abc")
			if err == nil {
				t.Fatalf("%d bytes left after cutting the %s: Open = %q, want an error", n, cut.end, pt)
			}
			assertOneSentinel(t, err)
			// A cut tail keeps the first key's identifier. (What is left
			// of a cut head is random bytes that may look like any key's
			// header: NeedsReseal is a hint that only Open confirms.)
			if cut.end == "tail" && k.NeedsReseal(cut.v) {
				t.Errorf("NeedsReseal of %d bytes", n)
			}
		}
	}
}

func TestRotation(t *testing.T) {
	old := mustKeys(t, std("old"))
	sealedOld := old.Seal([]byte(`{"dpop_key":"k"}`), "session:abc")

	both := mustKeys(t, std("new"), std("old"))
	pt, err := both.Open(sealedOld, "session:abc")
	if err != nil || string(pt) != `{"dpop_key":"k"}` {
		t.Fatalf("[new, old] Open = %q, %v", pt, err)
	}
	if !both.NeedsReseal(sealedOld) {
		t.Error("NeedsReseal = false for a value sealed with the old key")
	}
	resealed := both.Seal(pt, "session:abc")
	if both.NeedsReseal(resealed) {
		t.Error("NeedsReseal = true after resealing")
	}

	newOnly := mustKeys(t, std("new"))
	if pt, err := newOnly.Open(resealed, "session:abc"); err != nil || string(pt) != `{"dpop_key":"k"}` {
		t.Fatalf("[new] Open of the resealed value = %q, %v", pt, err)
	}
	// The operator dropped the old key before every record was rewritten.
	_, err = newOnly.Open(sealedOld, "session:abc")
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("[new] Open of a value sealed with the old key = %v, want ErrUnknownKey", err)
	}
	id := keyID(testKey("old"))
	want := "value was sealed with a key that is not in encryption_key (key " + hex.EncodeToString(id[:]) + "): put the old key back in encryption_key, after the current one, until every record has been rewritten"
	if err.Error() != want {
		t.Errorf("error %q\nwant  %q", err, want)
	}
	// Open reports the key, NeedsReseal still says the value is not
	// sealed with the current one.
	if !newOnly.NeedsReseal(sealedOld) {
		t.Error("NeedsReseal = false for a value sealed with a removed key")
	}
}

// TestSharedKeyID builds a ring whose keys have the same identifier, which
// random keys do once in 2^32 pairs: Open tries each and NeedsReseal errs on
// the side of rewriting.
func TestSharedKeyID(t *testing.T) {
	k := mustKeys(t, std("a"), std("b"), std("c"))
	for i := range k.ring {
		k.ring[i].id = [idSize]byte{1, 2, 3, 4}
		k.ring[i].shared = true
	}
	for _, name := range []string{"a", "b", "c"} {
		one := mustKeys(t, std(name))
		one.ring[0].id = [idSize]byte{1, 2, 3, 4}
		s := one.Seal([]byte(name), "id")
		pt, err := k.Open(s, "id")
		if err != nil || string(pt) != name {
			t.Errorf("sealed with %s: Open = %q, %v", name, pt, err)
		}
		if !k.NeedsReseal(s) {
			t.Errorf("sealed with %s: NeedsReseal = false with a shared identifier", name)
		}
		if _, err := k.Open(s, "other"); !errors.Is(err, ErrTampered) {
			t.Errorf("sealed with %s, wrong id: %v", name, err)
		}
	}
	// ParseKeys marks only the keys that share an identifier.
	if k := mustKeys(t, std("a"), std("b")); k.ring[0].shared || k.ring[1].shared {
		t.Error("distinct identifiers marked shared")
	}
}

// TestConcurrent: one *Keys serves every request of a store.
func TestConcurrent(t *testing.T) {
	k := mustKeys(t, std("a"), std("b"))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				pt := []byte{byte(g), byte(i)}
				s := k.Seal(pt, "session:abc")
				got, err := k.Open(s, "session:abc")
				if err != nil || !bytes.Equal(got, pt) {
					t.Errorf("Open = %v, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkSession2KB seals and opens a record the size of a session with
// its tokens and DPoP key.
func BenchmarkSession2KB(b *testing.B) {
	k := mustKeys(b, std("new"), std("old"))
	pt := make([]byte, 2048)
	rand.Read(pt)
	const id = "session:Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5"
	s := k.Seal(pt, id)
	b.Run("Seal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(pt)))
		for b.Loop() {
			k.Seal(pt, id)
		}
	})
	b.Run("Open", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(pt)))
		for b.Loop() {
			if _, err := k.Open(s, id); err != nil {
				b.Fatal(err)
			}
		}
	})
	old := mustKeys(b, std("old")).Seal(pt, id)
	b.Run("OpenOldKey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := k.Open(old, id); err != nil {
				b.Fatal(err)
			}
		}
	})
}
