package boltstore

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// ErrSealed: the file holds sealed records and the store was opened
// without Keys (encryption_key was removed from the configuration).
var ErrSealed = errors.New("the session store is sealed")

// A kind of record: its bucket, its name in errors, and the prefix of the
// record id its seal is bound to, the same as redisstore's ("session:<id>",
// "pending:<state>", "secret:<name>"), so that a value copied into another
// record, or into a record of another kind, does not open.
type kind struct {
	name   string
	bucket []byte
	prefix string
}

var (
	sessionKind = kind{name: "session", bucket: bucketSessions, prefix: "session:"}
	pendingKind = kind{name: "pending sign-in", bucket: bucketPending, prefix: "pending:"}
	secretKind  = kind{name: "secret", bucket: bucketKeys, prefix: "secret:"}
)

// record is the id the seal of the record stored under key binds to.
func (k kind) record(key []byte) string { return k.prefix + string(key) }

// seal returns plain as it is stored under key: sealed with the first key,
// or as is without Keys.
func (s *Store) seal(k kind, key string, plain []byte) []byte {
	if s.keys == nil {
		return plain
	}
	return s.keys.Seal(plain, k.prefix+key)
}

// open returns the plaintext of a value stored under key. Open checked
// every record, so without Keys every value is plaintext, and with Keys
// every value is sealed with the first key. Errors name the kind of record,
// never its key: a session id or a state is a credential.
func (s *Store) open(k kind, key, v []byte) ([]byte, error) {
	if s.keys == nil {
		return v, nil
	}
	plain, err := s.keys.Open(v, k.record(key))
	if err != nil {
		return nil, fmt.Errorf("open a sealed %s: %w", k.name, err)
	}
	return plain, nil
}

// loader reads every record at Open, in the one write transaction that
// also seals the plaintext records (from an ioproxy without encryption_key)
// and reseals those of a key other than the first (a rotation).
type loader struct {
	keys *sealed.Keys // nil: the store keeps plain JSON
	// probe, without keys, finds the values in the sealed format: a key
	// that sealed no record, to which every one of them is ErrUnknownKey.
	probe    *sealed.Keys
	resealed int
	// dirty: a record was plaintext or of an older key, rewritten or
	// deleted, so its old bytes are in the file's free pages.
	dirty bool
}

func newLoader(keys *sealed.Keys) (*loader, error) {
	if keys != nil {
		return &loader{keys: keys}, nil
	}
	probe, err := sealed.ParseKeys([]string{sealed.Generate()})
	if err != nil {
		return nil, fmt.Errorf("make a key to tell sealed records from plaintext: %w", err)
	}
	return &loader{probe: probe}, nil
}

// open returns the plaintext of the value v stored under key, and whether
// to write it back sealed with the first key. A value that does not open
// fails Open: dropping it would lose a user's sign-in or, for the secret,
// change the OAuth client key that every authorization server knows.
//
// With keys, plaintext is what Keys.Open calls ErrNotSealed: JSON, as
// ioproxy writes every record (its one secret is a JWK). Without keys,
// only a value in the sealed format is refused, as the store's secrets
// may be any bytes (and a damaged session fails its decoding as before).
func (l *loader) open(k kind, key, v []byte) (plain []byte, reseal bool, err error) {
	if l.keys == nil {
		if _, err := l.probe.Open(v, k.record(key)); errors.Is(err, sealed.ErrUnknownKey) {
			return nil, false, fmt.Errorf("%w (a stored %s is encrypted): set encryption_key to the key or keys that sealed it", ErrSealed, k.name)
		}
		return v, false, nil
	}
	plain, err = l.keys.Open(v, k.record(key))
	switch {
	case errors.Is(err, sealed.ErrNotSealed):
		return v, true, nil
	case err != nil:
		return nil, false, fmt.Errorf("a stored %s does not open: %w", k.name, err)
	}
	return plain, l.keys.NeedsReseal(v), nil
}

// walk opens every record of kind k and hands its plaintext to fn, which
// says whether to keep it; then it deletes those fn dropped and writes
// back sealed those that need it (bbolt forbids changing a bucket while
// ForEach walks it).
func (l *loader) walk(tx *bolt.Tx, k kind, fn func(plain []byte) (keep bool, err error)) error {
	type change struct{ key, value []byte } // value nil: delete
	var changes []change
	b := tx.Bucket(k.bucket)
	err := b.ForEach(func(key, v []byte) error {
		plain, reseal, err := l.open(k, key, v)
		if err != nil {
			return err
		}
		l.dirty = l.dirty || reseal
		keep, err := fn(plain)
		switch {
		case err != nil:
			return err
		case !keep:
			changes = append(changes, change{key: bytes.Clone(key)})
		case reseal:
			// Sealed now: plain may be bbolt's memory, valid only until
			// the bucket changes.
			changes = append(changes, change{key: bytes.Clone(key), value: l.keys.Seal(plain, k.record(key))})
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, c := range changes {
		if c.value == nil {
			err = b.Delete(c.key)
		} else {
			err = b.Put(c.key, c.value)
			l.resealed++
		}
		if err != nil {
			return fmt.Errorf("rewrite a %s: %w", k.name, err)
		}
	}
	return nil
}
