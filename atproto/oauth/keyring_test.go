package oauth

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestKey(t *testing.T) *ClientKey {
	t.Helper()
	raw, err := GenerateClientKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := ParseClientKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// publishedKIDs returns the kids of the ring's key set at now.
func publishedKIDs(t *testing.T, r *KeyRing, now time.Time) []string {
	t.Helper()
	b, err := r.JWKS(now)
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, k := range set.Keys {
		if k.D != "" {
			t.Fatalf("the key set publishes a private key: %s", b)
		}
		out = append(out, k.KID)
	}
	return out
}

// TestKeyRingRotation: the next key is published at once, signs after
// the first delay, and the old one leaves the key set after the second.
func TestKeyRingRotation(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	k1 := newTestKey(t)
	r := NewKeyRing(k1)
	r2, err := r.Rotate(t0, 24*time.Hour, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	k2 := r2.Keys()[1].Key
	for _, step := range []struct {
		at        time.Duration
		signer    *ClientKey
		published []*ClientKey
	}{
		{0, k1, []*ClientKey{k1, k2}},
		{23 * time.Hour, k1, []*ClientKey{k1, k2}},
		{24 * time.Hour, k2, []*ClientKey{k1, k2}},
		{48*time.Hour - time.Second, k2, []*ClientKey{k1, k2}},
		{48 * time.Hour, k2, []*ClientKey{k2}},
	} {
		now := t0.Add(step.at)
		if got := r2.Signer(now); got != step.signer {
			t.Errorf("+%v: signs with %s, want %s", step.at, got.KeyID(), step.signer.KeyID())
		}
		var want []string
		for _, k := range step.published {
			want = append(want, k.KeyID())
		}
		if got := publishedKIDs(t, r2, now); !slices.Equal(got, want) {
			t.Errorf("+%v: publishes %v, want %v", step.at, got, want)
		}
	}
	if got := r.Signer(t0.Add(100 * time.Hour)); got != k1 {
		t.Error("Rotate changed the ring it was called on")
	}

	for _, at := range []time.Duration{time.Hour, 30 * time.Hour} {
		if _, err := r2.Rotate(t0.Add(at), time.Hour, time.Hour); !errors.Is(err, ErrRotationUnderWay) {
			t.Errorf("a second rotation at +%v: %v, want ErrRotationUnderWay", at, err)
		}
	}
	r3, err := r2.Rotate(t0.Add(48*time.Hour), time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if keys := r3.Keys(); len(keys) != 2 || keys[0].Key != k2 {
		t.Errorf("after the next rotation the ring holds %d keys, first %s; want the dropped one forgotten", len(keys), keys[0].Key.KeyID())
	}
}

// TestKeyRingRotateNow: with no delays (a key that leaked), the new key
// signs at once and the old one is gone from the key set.
func TestKeyRingRotateNow(t *testing.T) {
	now := time.Now()
	k1 := newTestKey(t)
	r, err := NewKeyRing(k1).Rotate(now, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	k2 := r.Keys()[1].Key
	if r.Signer(now) != k2 || !slices.Equal(publishedKIDs(t, r, now), []string{k2.KeyID()}) {
		t.Errorf("signs with %s, publishes %v; want only the new key", r.Signer(now).KeyID(), publishedKIDs(t, r, now))
	}
	if _, err := NewKeyRing(k1).Rotate(now, -time.Second, 0); err == nil {
		t.Error("a negative delay was accepted")
	}
}

func TestKeyRingStored(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	r, err := NewKeyRing(newTestKey(t)).Rotate(t0, time.Hour, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalKeyRing(r)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKeyRing(b)
	if err != nil {
		t.Fatal(err)
	}
	want, got := r.Keys(), back.Keys()
	if len(got) != len(want) {
		t.Fatalf("%d keys back, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Key.KeyID() != want[i].Key.KeyID() || !got[i].SignFrom.Equal(want[i].SignFrom) || !got[i].DropAt.Equal(want[i].DropAt) {
			t.Errorf("key %d: %s %v %v, want %s %v %v", i, got[i].Key.KeyID(), got[i].SignFrom, got[i].DropAt, want[i].Key.KeyID(), want[i].SignFrom, want[i].DropAt)
		}
	}
	// The parsed keys sign: the private halves came back.
	if _, err := back.Signer(t0.Add(time.Hour)).Assertion("https://app.example/c", "https://as.example", t0); err != nil {
		t.Errorf("a parsed key does not sign: %v", err)
	}

	k, _ := json.Marshal(json.RawMessage(`{"kty":"EC"}`))
	for _, bad := range []string{``, `{}`, `{"keys":[]}`, `{"keys":[{"jwk":` + string(k) + `}]}`, `[1]`,
		`{"keys":[` + strings.Repeat(`{"jwk":{}},`, maxRingKeys) + `{"jwk":{}}]}`} {
		if _, err := ParseKeyRing([]byte(bad)); err == nil {
			t.Errorf("ParseKeyRing(%.60q) accepted it", bad)
		}
	}
}
