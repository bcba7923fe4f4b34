package sealed

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// testKey returns a fixed 32-byte key, so failures reproduce and the fuzz
// seeds in testdata stay valid.
func testKey(name string) []byte {
	k := sha256.Sum256([]byte("sealed test key " + name))
	return k[:]
}

func std(name string) string { return base64.StdEncoding.EncodeToString(testKey(name)) }

func mustKeys(t testing.TB, encoded ...string) *Keys {
	t.Helper()
	k, err := ParseKeys(encoded)
	if err != nil {
		t.Fatalf("ParseKeys: %v", err)
	}
	return k
}

func TestParseKeysEncodings(t *testing.T) {
	raw := testKey("a")
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"standard padded", base64.StdEncoding.EncodeToString(raw)},
		{"standard unpadded", base64.RawStdEncoding.EncodeToString(raw)},
		{"URL-safe padded", base64.URLEncoding.EncodeToString(raw)},
		{"URL-safe unpadded", base64.RawURLEncoding.EncodeToString(raw)},
		{"trailing newline", base64.StdEncoding.EncodeToString(raw) + "\n"},
		{"surrounding spaces", "  " + base64.StdEncoding.EncodeToString(raw) + " "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := mustKeys(t, tc.in)
			// The same key however it is written: a value sealed under one
			// spelling opens under the canonical one.
			canonical := mustKeys(t, std("a"))
			pt, err := canonical.Open(k.Seal([]byte("x"), "id"), "id")
			if err != nil || string(pt) != "x" {
				t.Fatalf("Open = %q, %v", pt, err)
			}
		})
	}
	// The test is only meaningful if the key has characters that differ
	// between the alphabets.
	if s := base64.StdEncoding.EncodeToString(raw); !strings.ContainsAny(s, "+/") {
		t.Fatalf("test key %q has neither + nor /: pick another", s)
	}
}

func TestParseKeysErrors(t *testing.T) {
	short := base64.StdEncoding.EncodeToString(testKey("a")[:16])
	long := base64.RawURLEncoding.EncodeToString(append(testKey("a"), testKey("b")...))
	hexKey := hex.EncodeToString(testKey("a"))
	// std("a") has a + or / (TestParseKeysEncodings checks), which a - makes
	// a mix of alphabets.
	mixed := "-" + std("a")[1:]
	for _, tc := range []struct {
		name string
		in   []string
		want string
	}{
		{"no keys", nil, "no encryption key; write 32 random bytes in base64, such as the output of `openssl rand -base64 32`"},
		{"empty list", []string{}, "no encryption key; "},
		{"empty entry", []string{std("a"), "  "}, "encryption key 2 is empty; write 32 random bytes"},
		{"16 bytes", []string{std("a"), short}, "encryption key 2 is 16 bytes; write 32 random bytes in base64, such as the output of `openssl rand -base64 32`"},
		{"64 bytes", []string{long}, "encryption key 1 is 64 bytes; "},
		{"hex", []string{hexKey}, "encryption key 1 is 64 hex digits, not base64; write 32 random bytes"},
		{"not base64", []string{"not*a/key" + std("a")}, "encryption key 1 is not base64: character 4 is not a base64 character; write 32"},
		{"inner padding", []string{std("a")[:20] + "=" + std("a")[20:]}, "encryption key 1 is not base64: character 21 is not a base64 character"},
		{"mixed alphabets", []string{mixed}, "encryption key 1 is not base64: character " /* position depends on the key */},
		{"bad length", []string{std("a")[:41]}, "encryption key 1 is not base64: 41 characters cannot encode whole bytes; write 32"},
		{"duplicate", []string{std("a"), std("b"), std("a")}, "encryption keys 1 and 3 are the same key; list each key once"},
		// The last character of an unpadded key carries two bits beyond
		// the 32 bytes, which decoding drops: both spell the same key.
		{"duplicate in a non-canonical spelling", []string{strings.Repeat("A", 43), strings.Repeat("A", 42) + "B"}, "encryption keys 1 and 2 are the same key"},
		{"duplicate in another spelling", []string{std("a"), base64.RawURLEncoding.EncodeToString(testKey("a"))}, "encryption keys 1 and 2 are the same key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := ParseKeys(tc.in)
			if err == nil {
				t.Fatalf("ParseKeys = %v, want an error", k)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tc.want) {
				t.Errorf("error %q\nwant prefix %q", msg, tc.want)
			}
			if tc.name == "mixed alphabets" && !strings.Contains(msg, "mixes the standard (+ /) and URL-safe (- _) alphabets") {
				t.Errorf("error %q does not say the alphabets are mixed", msg)
			}
			for _, e := range tc.in {
				assertNoKeyText(t, msg, e)
			}
		})
	}
}

// assertNoKeyText fails if msg contains any 8-character run of the entry,
// the least that would let a reader of the log rebuild part of a key.
func assertNoKeyText(t *testing.T, msg, entry string) {
	t.Helper()
	entry = strings.TrimSpace(entry)
	for i := 0; i+8 <= len(entry); i++ {
		if strings.Contains(msg, entry[i:i+8]) {
			t.Fatalf("error %q contains key text %q", msg, entry[i:i+8])
		}
	}
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		g := Generate()
		if seen[g] {
			t.Fatalf("Generate repeated %q", g)
		}
		seen[g] = true
		if raw, err := base64.StdEncoding.DecodeString(g); err != nil || len(raw) != KeySize {
			t.Fatalf("Generate = %q: %d bytes, %v", g, len(raw), err)
		}
		mustKeys(t, g)
	}
}

func TestKeysStringHidesKeys(t *testing.T) {
	k := mustKeys(t, std("a"), std("b"))
	id := keyID(testKey("a"))
	want := "sealed.Keys[" + hex.EncodeToString(id[:])
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		got := fmt.Sprintf(verb, k)
		if !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want prefix %q", verb, got, want)
		}
		assertNoKeyText(t, got, std("a"))
		assertNoKeyText(t, got, std("b"))
	}
	if k.Len() != 2 {
		t.Errorf("Len = %d", k.Len())
	}
}
