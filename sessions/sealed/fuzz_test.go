package sealed

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// FuzzOpen opens arbitrary bytes under an arbitrary record id with the ring
// [new, old]. The seeds in testdata/fuzz/FuzzOpen hold values sealed with
// each key and with a key outside the ring, plaintext JSON and junk.
func FuzzOpen(f *testing.F) {
	k := mustKeys(f, std("new"), std("old"))
	f.Add(k.Seal([]byte(`{"access_token":"at"}`), "session:abc"), "session:abc")
	f.Add([]byte(`{"access_token":"at"}`), "session:abc")
	f.Fuzz(func(t *testing.T, data []byte, id string) {
		in := bytes.Clone(data)
		pt, err := k.Open(data, id)
		if !bytes.Equal(in, data) {
			t.Fatal("Open modified its input")
		}
		if len(data) > 0 && data[0] == '{' && !errors.Is(err, ErrNotSealed) {
			t.Fatalf("a value starting with { gave %v, want ErrNotSealed", err)
		}
		if err != nil {
			assertOneSentinel(t, err)
			if pt != nil {
				t.Fatalf("Open returned %q with error %v", pt, err)
			}
			if errors.Is(err, ErrNotSealed) != (len(data) > 0 && jsonStart(data[0])) {
				t.Fatalf("ErrNotSealed is for values that begin like JSON, got %v for first byte 0x%02x", err, data[0])
			}
		} else {
			// Only Seal makes values that open: check they have its shape
			// and that what came out goes back in.
			if data[0] != version1 || len(data) != len(pt)+Overhead {
				t.Fatalf("opened %d bytes from %d starting 0x%02x", len(pt), len(data), data[0])
			}
			again, err := k.Open(k.Seal(pt, id), id)
			if err != nil || !bytes.Equal(again, pt) {
				t.Fatalf("resealed plaintext opens to %q, %v", again, err)
			}
			if _, err := k.Open(data, id+"x"); !errors.Is(err, ErrTampered) {
				t.Fatalf("opened under another id: %v", err)
			}
			wantReseal := [idSize]byte(data[1:headerSize]) != k.ring[0].id
			if k.NeedsReseal(data) != wantReseal {
				t.Fatalf("NeedsReseal = %t, want %t", !wantReseal, wantReseal)
			}
		}
		// Whatever the bytes, sealed as plaintext they come back.
		got, err := k.Open(k.Seal(data, id), id)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Seal then Open = %q, %v", got, err)
		}
	})
}

// keyErrors is every error ParseKeys may return, with positions, counts
// and lengths as \d+: anything else, such as a quoted key, fails the fuzz.
var keyErrors = regexp.MustCompile(`^(no encryption key|encryption keys \d+ and \d+ are the same key; list each key once, the newest first|encryption key \d+ (is empty|is \d+ bytes|is \d+ hex digits, not base64|is not base64: (\d+ characters cannot encode whole bytes|character \d+ is not a base64 character|character \d+ mixes the standard \(\+ /\) and URL-safe \(- _\) alphabets)))(; ` + regexp.QuoteMeta(advice) + `)?$`)

// FuzzParseKeys checks that ParseKeys never panics, that its errors are
// one of the messages it documents (so none can quote a key), and that any
// keyring it accepts works.
func FuzzParseKeys(f *testing.F) {
	for _, seed := range [][2]string{
		{std("a"), std("b")},
		{std("a"), std("a")},
		{std("a"), ""},
		{"not base64!", std("b")},
		{"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", ""},
		{"-" + std("a")[1:], ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		for _, in := range [][]string{{a}, {a, b}} {
			k, err := ParseKeys(in)
			if err != nil {
				if !keyErrors.MatchString(err.Error()) {
					t.Fatalf("ParseKeys(%q): undocumented error %q", in, err)
				}
				continue
			}
			if k.Len() != len(in) {
				t.Fatalf("%d keys from %d entries", k.Len(), len(in))
			}
			pt, err := k.Open(k.Seal([]byte("x"), "id"), "id")
			if err != nil || string(pt) != "x" {
				t.Fatalf("round trip: %q, %v", pt, err)
			}
		}
	})
}

// TestFuzzOpenSeeds keeps the seeds meaningful: each still reaches the
// outcome it was written for, so a change of format that left them all
// junk would show here rather than as a silently weaker fuzz run.
func TestFuzzOpenSeeds(t *testing.T) {
	k := mustKeys(t, std("new"), std("old"))
	for _, tc := range []struct {
		file string
		want error // nil: opens
	}{
		{"sealed-new", nil},
		{"sealed-old", nil},
		{"sealed-empty", nil},
		{"sealed-unknown-key", ErrUnknownKey},
		{"wrong-id", ErrTampered},
		{"plaintext-json", ErrNotSealed},
		{"empty", ErrTampered},
		{"future-format", ErrTampered},
		{"header-only", ErrTampered},
		{"flipped-key-id", ErrTampered},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, id := readSeed(t, filepath.Join("testdata", "fuzz", "FuzzOpen", tc.file))
			_, err := k.Open(data, id)
			if tc.want == nil && err != nil || !errors.Is(err, tc.want) {
				t.Errorf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

// readSeed reads a corpus file of FuzzOpen: a []byte line then a string line.
func readSeed(t *testing.T, path string) ([]byte, string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a two-value corpus file", path)
	}
	data, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	id, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "string("), ")"))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(data), id
}
