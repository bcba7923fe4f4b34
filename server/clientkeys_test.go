package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// TestClientKeysLoadAndRotate: the first key is made once; a rotation is
// stored as a ring, which loads from then on; a second rotation waits
// for the first to be over; a server's watch picks the ring up and says
// so, and says when the signing key changes.
func TestClientKeysLoadAndRotate(t *testing.T) {
	ctx := t.Context()
	store, err := boltstore.Open(boltstore.Config{Path: filepath.Join(t.TempDir(), "data", "ioproxy.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	first, err := LoadClientKeys(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadClientKeys(ctx, store)
	if err != nil || again.Signer(time.Now()).KeyID() != first.Signer(time.Now()).KeyID() {
		t.Fatalf("the client key changed between loads: %v", err)
	}
	var logs bytes.Buffer
	held := oauth.NewClientKeys(first)
	w := newKeyWatch(store, held, slog.New(slog.NewTextHandler(&logs, nil)))

	now := time.Now()
	rotated, err := RotateClientKey(ctx, store, now, time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	oldKID, nextKID := first.Signer(now).KeyID(), rotated.Keys()[1].Key.KeyID()
	loaded, err := LoadClientKeys(ctx, store)
	if err != nil || len(loaded.Keys()) != 2 || loaded.Keys()[1].Key.KeyID() != nextKID {
		t.Fatalf("after a rotation LoadClientKeys = %v, %v; want the stored ring", loaded, err)
	}
	if _, err := RotateClientKey(ctx, store, now.Add(time.Minute), time.Hour, time.Hour); !errors.Is(err, oauth.ErrRotationUnderWay) {
		t.Errorf("a second rotation during the first: %v, want ErrRotationUnderWay", err)
	}

	w.check(ctx)
	if got := len(held.Ring().Keys()); got != 2 {
		t.Errorf("the watch holds %d keys after the rotation, want 2", got)
	}
	if !strings.Contains(logs.String(), "OAuth client key set changed") || !strings.Contains(logs.String(), nextKID) {
		t.Errorf("the change is not logged with the next kid:\n%s", logs.String())
	}
	logs.Reset()
	w.check(ctx)
	if logs.Len() != 0 {
		t.Errorf("a look that found nothing new logged:\n%s", logs.String())
	}
	w.now = func() time.Time { return now.Add(time.Hour) }
	w.check(ctx)
	if want := fmt.Sprintf("from=%s to=%s", oldKID, nextKID); !strings.Contains(logs.String(), want) {
		t.Errorf("the switch to the next key is not logged (%s):\n%s", want, logs.String())
	}
}

// TestRotationReachesRunningReplicas: two servers on one Redis publish
// one key; a rotation stored meanwhile (as ioproxy key rotate does) shows
// on both within their key refresh, and a replica started later
// publishes it at once.
func TestRotationReachesRunningReplicas(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	key := sealed.Generate()
	replica := func() *Server {
		ps := freePorts(t, 2)
		src := fmt.Sprintf(`
data_dir = %q
ingress {
  http  = "127.0.0.1:%d"
  https = "127.0.0.1:%d"
}
admin { listen = "" }
sessions {
  store          = "redis"
  url            = %q
  encryption_key = %q
}
host "app.example.com" {
  backend = "localhost:1"
  atproto {}
  tls { mode = "self_signed" }
}`, filepath.Join(t.TempDir(), "data"), ps[0], ps[1], srv.URL(), key)
		cfg, diags := config.Parse([]byte(src), "test.hcl", config.Options{LookupEnv: func(string) (string, bool) { return "", false }})
		if diags.HasErrors() {
			t.Fatalf("config: %v", diags)
		}
		s, err := Start(t.Context(), cfg, Options{Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: 2 * time.Second, KeyRefresh: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	a, b := replica(), replica()
	kidsA, kidsB := publishedKIDs(t, a), publishedKIDs(t, b)
	if len(kidsA) != 1 || !slices.Equal(kidsA, kidsB) {
		t.Fatalf("replicas publish %v and %v, want one key, the same", kidsA, kidsB)
	}
	rotated, err := RotateClientKey(t.Context(), a.Store(), time.Now(), time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{kidsA[0], rotated.Keys()[1].Key.KeyID()}
	for name, s := range map[string]*Server{"a": a, "b": b} {
		deadline := time.Now().Add(5 * time.Second)
		for got := publishedKIDs(t, s); !slices.Equal(got, want); got = publishedKIDs(t, s) {
			if time.Now().After(deadline) {
				t.Fatalf("replica %s publishes %v 5 s after the rotation, want %v", name, got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got := publishedKIDs(t, replica()); !slices.Equal(got, want) {
		t.Errorf("a replica started after the rotation publishes %v, want %v", got, want)
	}
}

// publishedKIDs fetches the kids of s's /@/jwks.json.
func publishedKIDs(t *testing.T, s *Server) []string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+s.Addrs()["https"]+"/@/jwks.json", nil)
	req.Host = "app.example.com"
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.LocalCAPEM())
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.example.com"}}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("jwks.json %s: %v", body, err)
	}
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.KID)
	}
	return out
}

// TestKeyWatchKeepsItsKeys: a store that lost every client key gets the
// held ones back (never a new key, which no server has seen), and a ring
// that does not hold the newest held key (a backup restored) is refused.
func TestKeyWatchKeepsItsKeys(t *testing.T) {
	ctx := t.Context()
	store, err := boltstore.Open(boltstore.Config{Path: filepath.Join(t.TempDir(), "data", "ioproxy.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	ring, err := LoadClientKeys(ctx, store)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	held := oauth.NewClientKeys(ring)
	w := newKeyWatch(store, held, slog.New(slog.NewTextHandler(&logs, nil)))
	kid := ring.Signer(time.Now()).KeyID()

	if err := store.DeleteSecret(ctx, ClientKeySecret); err != nil {
		t.Fatal(err)
	}
	w.check(ctx)
	if got := held.Ring().Signer(time.Now()).KeyID(); got != kid {
		t.Errorf("after the store lost the key the replica signs with %s, want %s", got, kid)
	}
	back, err := LoadClientKeys(ctx, store)
	if err != nil || back.Signer(time.Now()).KeyID() != kid {
		t.Errorf("the store holds %v, %v; want the held key written back", back, err)
	}
	if !strings.Contains(logs.String(), "wrote back") {
		t.Errorf("the write-back is not logged:\n%s", logs.String())
	}

	// A ring of other keys (restored from another time) is refused.
	other, err := oauth.NewKeyRing(newKey(t)).Rotate(time.Now(), time.Hour, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := oauth.MarshalKeyRing(other)
	if err := store.StoreSecret(ctx, ClientKeyRingSecret, raw); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	w.check(ctx)
	if got := held.Ring().Signer(time.Now()).KeyID(); got != kid || !strings.Contains(logs.String(), "do not hold this replica's newest key") {
		t.Errorf("after a foreign ring was stored: signs with %s (want %s)\n%s", got, kid, logs.String())
	}

	// A damaged ring names itself and what to do.
	if err := store.StoreSecret(ctx, ClientKeyRingSecret, []byte("{")); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadClientKeys(ctx, store); err == nil || !strings.Contains(err.Error(), ClientKeyRingSecret) || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("a damaged ring at start: %v; want an error naming the secret and what to do", err)
	}
}

func newKey(t *testing.T) *oauth.ClientKey {
	t.Helper()
	raw, err := oauth.GenerateClientKey()
	if err != nil {
		t.Fatal(err)
	}
	k, err := oauth.ParseClientKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
