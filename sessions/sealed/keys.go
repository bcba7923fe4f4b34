package sealed

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of an encryption key in bytes (AES-256).
const KeySize = 32

// idSize is the length of a key identifier in a sealed value.
const idSize = 4

// advice is what every key error tells the operator to write instead.
const advice = "write 32 random bytes in base64, such as the output of `openssl rand -base64 32`"

// idLabel separates key identifiers from any other hash of the same key an
// operator might publish, such as a fingerprint in a runbook.
const idLabel = "ioproxy sealed key id\x00"

// Keys is a keyring: the first key seals, every key opens. It holds no
// mutable state, so one *Keys is safe for concurrent use. Make one with
// ParseKeys: a Keys literal has no key to seal with.
type Keys struct {
	ring []key
}

type key struct {
	id   [idSize]byte
	aead cipher.AEAD
	// shared is true when another key of the ring has the same identifier,
	// one chance in 2^32 per pair, which Open and NeedsReseal allow for.
	shared bool
}

// ParseKeys reads the keyring from configuration: each entry is 32 bytes in
// standard or URL-safe base64, padded or not. Errors name an entry by its
// position (from 1) and never contain its text, because they end up in logs.
func ParseKeys(encoded []string) (*Keys, error) {
	if len(encoded) == 0 {
		return nil, errors.New("no encryption key; " + advice)
	}
	raws := make([][]byte, len(encoded))
	for i, e := range encoded {
		raw, err := decodeKey(e)
		if err != nil {
			return nil, fmt.Errorf("encryption key %d %w", i+1, err)
		}
		for j := range i {
			if bytes.Equal(raws[j], raw) {
				return nil, fmt.Errorf("encryption keys %d and %d are the same key; list each key once, the newest first", j+1, i+1)
			}
		}
		raws[i] = raw
	}
	k := &Keys{ring: make([]key, len(raws))}
	for i, raw := range raws {
		block, err := aes.NewCipher(raw)
		if err != nil {
			return nil, fmt.Errorf("encryption key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("encryption key %d: %w", i+1, err)
		}
		k.ring[i] = key{id: keyID(raw), aead: aead}
	}
	for i := range k.ring {
		for j := range k.ring {
			if i != j && k.ring[i].id == k.ring[j].id {
				k.ring[i].shared = true
			}
		}
	}
	return k, nil
}

// decodeKey returns an error that completes the sentence "encryption key N
// ...", without the key's text.
func decodeKey(e string) ([]byte, error) {
	// A key pasted from `openssl rand` or a file often keeps its newline.
	e = strings.TrimSpace(e)
	if e == "" {
		return nil, errors.New("is empty; " + advice)
	}
	enc, extra := base64.RawStdEncoding, "+/"
	if strings.ContainsAny(e, "-_") {
		enc, extra = base64.RawURLEncoding, "-_"
	}
	// Padding is optional, so it is dropped rather than checked.
	e = strings.TrimRight(e, "=")
	raw, err := enc.DecodeString(e)
	if err != nil {
		return nil, base64Problem(e, extra, err)
	}
	if len(raw) != KeySize {
		// Hex digits are base64 characters too, so the output of `openssl
		// rand -hex 32` decodes, to 48 bytes; say what it is instead.
		if h, err := hex.DecodeString(e); err == nil && len(h) == KeySize {
			return nil, fmt.Errorf("is %d hex digits, not base64; %s", len(e), advice)
		}
		return nil, fmt.Errorf("is %d bytes; %s", len(raw), advice)
	}
	return raw, nil
}

// base64Problem says what is wrong with e by position and kind of
// character, never by quoting it.
func base64Problem(e, extra string, err error) error {
	var bad base64.CorruptInputError
	if !errors.As(err, &bad) || int(bad) >= len(e) {
		return fmt.Errorf("is not base64; %s", advice)
	}
	c := e[bad]
	switch {
	case isAlnum(c) || strings.IndexByte(extra, c) >= 0:
		// The decoder stops at the last character when the length is one
		// that no byte string encodes to.
		return fmt.Errorf("is not base64: %d characters cannot encode whole bytes; %s", len(e), advice)
	case strings.IndexByte("+/-_", c) >= 0:
		return fmt.Errorf("is not base64: character %d mixes the standard (+ /) and URL-safe (- _) alphabets; %s", int(bad)+1, advice)
	default:
		return fmt.Errorf("is not base64: character %d is not a base64 character; %s", int(bad)+1, advice)
	}
}

func isAlnum(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}

func keyID(raw []byte) [idSize]byte {
	h := sha256.New()
	h.Write([]byte(idLabel))
	h.Write(raw)
	var id [idSize]byte
	copy(id[:], h.Sum(nil))
	return id
}

// Generate returns a fresh key in standard base64, as `openssl rand -base64
// 32` writes it.
func Generate() string {
	raw := make([]byte, KeySize)
	// crypto/rand.Read never fails: since Go 1.24 it crashes the program
	// rather than return predictable bytes.
	_, _ = rand.Read(raw)
	return base64.StdEncoding.EncodeToString(raw)
}

// Len returns the number of keys in the ring; 0 for a nil ring (no
// encryption_key).
func (k *Keys) Len() int {
	if k == nil {
		return 0
	}
	return len(k.ring)
}

// String describes the ring by its key identifiers, so that printing a *Keys
// by mistake (%v in a log line) shows which keys are loaded and never the
// expanded AES keys inside cipher.AEAD.
func (k *Keys) String() string {
	ids := make([]string, len(k.ring))
	for i, r := range k.ring {
		ids[i] = hex.EncodeToString(r.id[:])
	}
	return "sealed.Keys[" + strings.Join(ids, " ") + "]"
}

// GoString keeps %#v from printing the key schedule.
func (k *Keys) GoString() string { return k.String() }
