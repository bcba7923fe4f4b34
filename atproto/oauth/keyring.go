package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwk"
)

// KeyRing is a confidential client's keys over time, so that its key can
// be replaced without refusals. Authorization servers cache a client's
// key set (/@/jwks.json), and one that holds an older set refuses every
// assertion signed with a key it has not seen; so a rotation publishes
// the next key first, signs with it only once the servers' caches have
// had time to take it in, and keeps the old key published a while longer
// for assertions already signed and for servers that fetched the set in
// between. A KeyRing is immutable: Rotate returns a new one.
type KeyRing struct {
	keys []RingKey
}

// RingKey is one key of a KeyRing and its times.
type RingKey struct {
	Key *ClientKey
	// SignFrom is when the key starts signing; zero for the first key.
	SignFrom time.Time
	// DropAt is when the key leaves the key set; zero while no rotation
	// has replaced it.
	DropAt time.Time
}

// NewKeyRing is a ring of one key, which signs.
func NewKeyRing(k *ClientKey) *KeyRing {
	return &KeyRing{keys: []RingKey{{Key: k}}}
}

// Keys returns the ring's keys, oldest first.
func (r *KeyRing) Keys() []RingKey { return slices.Clone(r.keys) }

// published says whether k is in the key set at now.
func (k RingKey) published(now time.Time) bool { return k.DropAt.IsZero() || now.Before(k.DropAt) }

// Signer returns the key that signs at now: of the published keys whose
// time has come, the newest.
func (r *KeyRing) Signer(now time.Time) *ClientKey {
	var best *RingKey
	for i, k := range r.keys {
		if k.published(now) && !now.Before(k.SignFrom) && (best == nil || !k.SignFrom.Before(best.SignFrom)) {
			best = &r.keys[i]
		}
	}
	if best == nil {
		// Every key is past its drop time (a clock far ahead): the
		// newest still signs, rather than none.
		best = &r.keys[len(r.keys)-1]
	}
	return best.Key
}

// JWKS returns the key set document at now: every published key, the
// next one included before it signs.
func (r *KeyRing) JWKS(now time.Time) ([]byte, error) {
	set := jwk.NewSet()
	for _, k := range r.keys {
		if !k.published(now) {
			continue
		}
		if err := set.AddKey(k.Key.public); err != nil {
			return nil, fmt.Errorf("client JWKS: %w", err)
		}
	}
	return json.Marshal(set)
}

// ErrRotationUnderWay: a key ring is rotated once at a time.
var ErrRotationUnderWay = errors.New("a rotation of the client key is under way")

// Rotate returns the ring with a new key, published from now, signing
// from now+signAfter; the keys that sign until then leave the key set at
// now+signAfter+dropAfter. Keys dropped already are forgotten. It fails
// with ErrRotationUnderWay while the last rotation's next key does not
// sign yet, or its old key is still published.
func (r *KeyRing) Rotate(now time.Time, signAfter, dropAfter time.Duration) (*KeyRing, error) {
	if signAfter < 0 || dropAfter < 0 {
		return nil, errors.New("rotate client key: the delays must not be negative")
	}
	// The next key's time first: it comes before the old one's drop.
	for _, k := range r.keys {
		if now.Before(k.SignFrom) {
			return nil, fmt.Errorf("%w: key %s signs from %s", ErrRotationUnderWay, k.Key.KeyID(), k.SignFrom.UTC().Format(time.RFC3339))
		}
	}
	for _, k := range r.keys {
		if !k.DropAt.IsZero() && now.Before(k.DropAt) {
			return nil, fmt.Errorf("%w: key %s leaves the key set at %s", ErrRotationUnderWay, k.Key.KeyID(), k.DropAt.UTC().Format(time.RFC3339))
		}
	}
	raw, err := GenerateClientKey()
	if err != nil {
		return nil, err
	}
	next, err := ParseClientKey(raw)
	if err != nil {
		return nil, err
	}
	out := &KeyRing{}
	for _, k := range r.keys {
		if k.published(now) {
			k.DropAt = now.Add(signAfter + dropAfter)
			out.keys = append(out.keys, k)
		}
	}
	out.keys = append(out.keys, RingKey{Key: next, SignFrom: now.Add(signAfter)})
	return out, nil
}

// storedRing is a KeyRing as stored: private JWKs and times.
type storedRing struct {
	Keys []storedRingKey `json:"keys"`
}

type storedRingKey struct {
	JWK      json.RawMessage `json:"jwk"`
	SignFrom time.Time       `json:"sign_from,omitzero"`
	DropAt   time.Time       `json:"drop_at,omitzero"`
}

// maxRingKeys bounds a stored ring: a rotation at a time keeps two.
const maxRingKeys = 8

// MarshalKeyRing returns the ring ready to store, private keys included.
func MarshalKeyRing(r *KeyRing) ([]byte, error) {
	var s storedRing
	for _, k := range r.keys {
		b, err := json.Marshal(k.Key.private)
		if err != nil {
			return nil, fmt.Errorf("store client key ring: %w", err)
		}
		s.Keys = append(s.Keys, storedRingKey{JWK: b, SignFrom: k.SignFrom, DropAt: k.DropAt})
	}
	return json.Marshal(s)
}

// ParseKeyRing reads a ring that MarshalKeyRing made.
func ParseKeyRing(data []byte) (*KeyRing, error) {
	var s storedRing
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("parse client key ring: %w", err)
	}
	if len(s.Keys) == 0 || len(s.Keys) > maxRingKeys {
		return nil, fmt.Errorf("parse client key ring: %d keys, want 1 to %d", len(s.Keys), maxRingKeys)
	}
	r := &KeyRing{}
	for i, sk := range s.Keys {
		k, err := ParseClientKey(sk.JWK)
		if err != nil {
			return nil, fmt.Errorf("parse client key ring, key %d: %w", i+1, err)
		}
		r.keys = append(r.keys, RingKey{Key: k, SignFrom: sk.SignFrom, DropAt: sk.DropAt})
	}
	return r, nil
}

// ClientKeys holds a confidential client's current KeyRing, which a
// running server replaces when a rotation is stored (by another replica,
// or by `ioproxy key rotate`). Safe for concurrent use.
type ClientKeys struct {
	ring atomic.Pointer[KeyRing]
}

// NewClientKeys holds r.
func NewClientKeys(r *KeyRing) *ClientKeys {
	k := &ClientKeys{}
	k.ring.Store(r)
	return k
}

// Ring returns the ring held now.
func (k *ClientKeys) Ring() *KeyRing { return k.ring.Load() }

// Set replaces the ring.
func (k *ClientKeys) Set(r *KeyRing) { k.ring.Store(r) }
