package sealed

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// Errors from Open. Each is wrapped with what went wrong; test with
// errors.Is. No error contains the record's id (a session id is a
// credential) or any key material.
var (
	// ErrNotSealed: the value begins the way a JSON text may, as the
	// plaintext an ioproxy without encryption_key wrote. The caller may
	// read it as plaintext and write it back sealed.
	ErrNotSealed = errors.New("value is not sealed")
	// ErrUnknownKey: the value was sealed with a key that is not in the
	// ring, most likely one an operator removed before every record had
	// been rewritten.
	ErrUnknownKey = errors.New("value was sealed with a key that is not in encryption_key")
	// ErrTampered: the value is in the sealed format (or claims a format
	// version this ioproxy does not know) but does not authenticate under
	// this record's id: it was modified, truncated, or copied from another
	// record.
	ErrTampered = errors.New("sealed value failed authentication")
)

const (
	// version1 is the format byte of version 1; see the package
	// documentation for why this byte.
	version1 = 0x81

	nonceSize  = 12
	tagSize    = 16
	headerSize = 1 + idSize
	// Overhead is how many bytes longer a sealed value is than its
	// plaintext.
	Overhead = headerSize + nonceSize + tagSize
)

// Seal encrypts plaintext with the first key of the ring for the record
// named id. Sealing the same plaintext twice gives different values.
func (k *Keys) Seal(plaintext []byte, id string) []byte {
	first := &k.ring[0]
	out := make([]byte, headerSize, Overhead+len(plaintext))
	out[0] = version1
	copy(out[1:headerSize], first.id[:])
	// With NewGCMWithRandomNonce, Seal draws the nonce from crypto/rand and
	// appends nonce || ciphertext || tag: exactly the rest of the format.
	return first.aead.Seal(out, nil, plaintext, additionalData(id))
}

// Open verifies and decrypts a value that Seal made for the record named id.
// It never modifies sealed, which may be read-only memory (bbolt's mmap).
func (k *Keys) Open(sealed []byte, id string) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, fmt.Errorf("%w: the value is empty", ErrTampered)
	}
	if jsonStart(sealed[0]) {
		return nil, ErrNotSealed
	}
	if sealed[0] != version1 {
		return nil, fmt.Errorf("%w: unknown format byte 0x%02x (a damaged value, or one written by a newer ioproxy)", ErrTampered, sealed[0])
	}
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("%w: %d bytes is shorter than any sealed value", ErrTampered, len(sealed))
	}
	var id4 [idSize]byte
	copy(id4[:], sealed[1:headerSize])
	aad := additionalData(id)
	body := sealed[headerSize:]
	known := false
	for i := range k.ring {
		r := &k.ring[i]
		if r.id != id4 {
			continue
		}
		known = true
		if pt, err := r.aead.Open(nil, nil, body, aad); err == nil {
			return nonNil(pt), nil
		}
	}
	if known {
		return nil, fmt.Errorf("%w: it was modified or belongs to another record", ErrTampered)
	}
	// No key has this identifier. Either the key is gone, or the identifier
	// itself was altered: a key that authenticates the rest tells them
	// apart, and costs a few failed decryptions only on this error path.
	for i := range k.ring {
		if _, err := k.ring[i].aead.Open(nil, nil, body, aad); err == nil {
			return nil, fmt.Errorf("%w: its key identifier was modified", ErrTampered)
		}
	}
	return nil, fmt.Errorf("%w (key %s): put the old key back in encryption_key, after the current one, until every record has been rewritten", ErrUnknownKey, hex.EncodeToString(id4[:]))
}

// NeedsReseal reports whether sealed was sealed with a key other than the
// first, so a store can rewrite it with the current key during rotation.
// It reads only the key identifier; Open is what authenticates, so a
// caller opens the value first. Plaintext and values too short to be
// sealed report false; other damage may report either, and Open's error
// says what it is.
func (k *Keys) NeedsReseal(sealed []byte) bool {
	if len(sealed) < Overhead || sealed[0] != version1 {
		return false
	}
	first := &k.ring[0]
	// When another key shares the first key's identifier, the identifier
	// cannot say which sealed the value; rewriting it is harmless.
	return first.shared || [idSize]byte(sealed[1:headerSize]) != first.id
}

// additionalData binds a value to its record and to the format version.
func additionalData(id string) []byte {
	aad := make([]byte, 0, 1+len(id))
	aad = append(aad, version1)
	return append(aad, id...)
}

// jsonStart reports whether a JSON text (RFC 8259) can begin with b.
func jsonStart(b byte) bool {
	switch b {
	case ' ', '\t', '\n', '\r', '{', '[', '"', '-', 't', 'f', 'n':
		return true
	}
	return '0' <= b && b <= '9'
}

// nonNil keeps an empty plaintext distinguishable from a failed Open for
// callers that test for nil.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
