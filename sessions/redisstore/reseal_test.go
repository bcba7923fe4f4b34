package redisstore

import (
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// After a rotation ([new, old]) and a Reseal, the old key can go:
// sessions and the secret open with the new key alone.
func TestResealAfterRotation(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	oldKey, newKey := sealed.Generate(), sealed.Generate()
	keys := func(enc ...string) *sealed.Keys {
		k, err := sealed.ParseKeys(enc)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ctx := t.Context()
	before := openOn(t, srv, "rot:", keys(oldKey), sessions.Options{})
	var ids []string
	for range 3 {
		now := time.Now()
		sess := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "a.example.com", DID: "did:plc:alice",
			AccessToken: "at", RefreshToken: "rt", CreatedAt: now, Expiry: now.Add(time.Hour)}
		if _, err := before.Create(ctx, sess); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, sess.ID)
	}
	if _, err := before.Secret(ctx, "client", func() ([]byte, error) { return []byte("client-key"), nil }); err != nil {
		t.Fatal(err)
	}
	before.Close()

	rotated := openOn(t, srv, "rot:", keys(newKey, oldKey), sessions.Options{})
	n, err := rotated.Reseal(ctx)
	if err != nil || n != len(ids) {
		t.Fatalf("Reseal = %d, %v; want %d", n, err, len(ids))
	}
	if n, err := rotated.Reseal(ctx); err != nil || n != 0 {
		t.Errorf("second Reseal = %d, %v; want 0", n, err)
	}
	if v, err := rotated.Secret(ctx, "client", nil); err != nil || string(v) != "client-key" {
		t.Fatalf("Secret with [new, old] = %q, %v", v, err)
	}
	rotated.Close()

	after := openOn(t, srv, "rot:", keys(newKey), sessions.Options{})
	defer after.Close()
	for _, id := range ids {
		if _, err := after.Get(ctx, id); err != nil {
			t.Errorf("a session with the new key alone after Reseal: %v", err)
		}
	}
	if v, err := after.Secret(ctx, "client", nil); err != nil || string(v) != "client-key" {
		t.Errorf("the secret with the new key alone after it was read with [new, old]: %q, %v", v, err)
	}
}
