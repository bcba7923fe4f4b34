package storetest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/ioproxy/ioproxy/sessions"
)

// testSecretReplacedAndDeleted: a secret can be read without making it,
// replaced (a rotated key set, a renewed certificate) and deleted, and a
// restart keeps what was stored last.
func testSecretReplacedAndDeleted(t *testing.T, e *env) {
	ctx := t.Context()
	s := e.open(sessions.Options{})
	if v, err := s.LoadSecret(ctx, "cert"); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("LoadSecret of a missing secret = %q, %v; want ErrNotFound", v, err)
	}
	if err := s.DeleteSecret(ctx, "cert"); err != nil {
		t.Errorf("DeleteSecret of a missing secret = %v, want nil", err)
	}
	mustStoreSecret(t, s, "cert", "v1")
	mustStoreSecret(t, s, "cert", "v2")
	mustStoreSecret(t, s, "other", "o1")
	wantSecret(t, s, "cert", "v2", "after two writes")
	got, err := s.Secret(ctx, "cert", func() ([]byte, error) { return []byte("made"), nil })
	if err != nil || string(got) != "v2" {
		t.Errorf("Secret of a stored secret = %q, %v; want the stored v2", got, err)
	}
	got[0] = 'X' // the caller's copy
	s = e.reopen(s)
	wantSecret(t, s, "cert", "v2", "after a restart")
	if err := s.DeleteSecret(ctx, "cert"); err != nil {
		t.Fatal(err)
	}
	if v, err := s.LoadSecret(ctx, "cert"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("LoadSecret after DeleteSecret = %q, %v; want ErrNotFound", v, err)
	}
	wantSecret(t, s, "other", "o1", "another secret after a delete")
	s = e.reopen(s)
	if _, err := s.LoadSecret(ctx, "cert"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("a deleted secret after a restart: %v, want ErrNotFound", err)
	}
}

// testSecretTooLarge: a value over MaxSecretBytes is refused and leaves
// the stored one as it was.
func testSecretTooLarge(t *testing.T, e *env) {
	s := e.open(sessions.Options{})
	mustStoreSecret(t, s, "cert", "v1")
	big := bytes.Repeat([]byte("x"), sessions.MaxSecretBytes+1)
	if err := s.StoreSecret(t.Context(), "cert", big); !errors.Is(err, sessions.ErrTooLarge) {
		t.Errorf("StoreSecret of %d bytes = %v, want ErrTooLarge", len(big), err)
	}
	wantSecret(t, s, "cert", "v1", "after a refused write")
	if err := s.StoreSecret(t.Context(), "max", big[:sessions.MaxSecretBytes]); err != nil {
		t.Errorf("StoreSecret of MaxSecretBytes = %v, want it kept", err)
	}
}

// testSharedSecretReplaced: a secret one replica replaces or deletes,
// the other reads at once (secrets are not cached).
func testSharedSecretReplaced(t *testing.T, e *env) {
	a, b := e.openPair(sessions.Options{})
	mustStoreSecret(t, a, "cert", "v1")
	wantSecret(t, b, "cert", "v1", "written by the other replica")
	mustStoreSecret(t, b, "cert", "v2")
	wantSecret(t, a, "cert", "v2", "replaced by the other replica")
	if err := a.DeleteSecret(t.Context(), "cert"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.LoadSecret(t.Context(), "cert"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("deleted by the other replica: %v, want ErrNotFound", err)
	}
}

func mustStoreSecret(t *testing.T, s sessions.Store, name, value string) {
	t.Helper()
	if err := s.StoreSecret(t.Context(), name, []byte(value)); err != nil {
		t.Fatalf("StoreSecret(%q): %v", name, err)
	}
}

func wantSecret(t *testing.T, s sessions.Store, name, want, when string) {
	t.Helper()
	got, err := s.LoadSecret(t.Context(), name)
	if err != nil || string(got) != want {
		t.Errorf("%s: LoadSecret(%q) = %q, %v; want %q", when, name, got, err, want)
	}
}
