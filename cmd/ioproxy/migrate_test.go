package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/server"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
	"github.com/ioproxy/ioproxy/sessions/redisstore"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// A bbolt file's sessions and client key move into Redis; a second run
// copies nothing twice; a Redis that has a client key of its own already
// is not overwritten.
func TestSessionsMigrate(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.Options{})
	key := sealed.Generate()
	keys, err := sealed.ParseKeys([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(t.TempDir(), "data", "ioproxy.db")
	bolt, err := boltstore.Open(boltstore.Config{Path: dbPath})
	if err != nil {
		t.Fatal(err)
	}
	var want []sessions.Session
	for i := range 2 {
		now := time.Now().UTC()
		sess := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "app.example.com",
			DID: fmt.Sprintf("did:plc:user%d", i), AccessToken: "at", RefreshToken: "rt", CreatedAt: now, Expiry: now.Add(time.Hour)}
		if _, err := bolt.Create(ctx, sess); err != nil {
			t.Fatal(err)
		}
		want = append(want, sess)
	}
	if _, err := bolt.Secret(ctx, server.ClientKeySecret, func() ([]byte, error) { return []byte("the client key"), nil }); err != nil {
		t.Fatal(err)
	}
	bolt.Close()

	cfgPath := filepath.Join(t.TempDir(), "io.hcl")
	cfg := fmt.Sprintf("sessions {\n  store = \"redis\"\n  url = %q\n  key_prefix = \"m:\"\n  encryption_key = %q\n}\n", srv.URL(), key)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	migrate := func() (int, string, string) {
		var out, errOut bytes.Buffer
		code := run([]string{"sessions", "migrate", "-config", cfgPath, "-from", dbPath}, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, out, errOut := migrate(); code != 0 || !strings.Contains(out, "copied 2 sessions (0 were there already) and 1 secrets") {
		t.Fatalf("migrate = %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := migrate(); code != 0 || !strings.Contains(out, "copied 0 sessions (2 were there already) and 1 secrets") {
		t.Fatalf("second migrate = %d\n%s%s", code, out, errOut)
	}
	rs, err := redisstore.Open(ctx, redisstore.Config{URL: srv.URL(), Prefix: "m:", Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for _, w := range want {
		got, err := rs.Get(ctx, w.ID)
		if err != nil || got.DID != w.DID || got.ProxyKey != w.ProxyKey || got.RefreshToken != w.RefreshToken {
			t.Errorf("session of %s in Redis: %+v, %v", w.DID, got, err)
		}
	}
	if v, err := rs.Secret(ctx, server.ClientKeySecret, nil); err != nil || string(v) != "the client key" {
		t.Errorf("client key in Redis = %q, %v", v, err)
	}

	// Replicas that started on another prefix before the move made a
	// key of their own: the move says so and changes nothing.
	other, err := redisstore.Open(ctx, redisstore.Config{URL: srv.URL(), Prefix: "n:", Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Secret(ctx, server.ClientKeySecret, func() ([]byte, error) { return []byte("made by a replica"), nil }); err != nil {
		t.Fatal(err)
	}
	other.Close()
	if err := os.WriteFile(cfgPath, []byte(strings.Replace(cfg, `"m:"`, `"n:"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := migrate(); code != 1 || !strings.Contains(errOut, "the target holds another value already") {
		t.Errorf("migrate onto another client key = %d: %s", code, errOut)
	}
}

// migrate needs a Redis store in the configuration and a file to copy.
func TestSessionsMigrateUsage(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "io.hcl")
	if err := os.WriteFile(cfgPath, []byte("sessions {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sessions"}, 2, "ioproxy sessions migrate -config FILE -from"},
		{[]string{"sessions", "migrate", "-config", cfgPath}, 2, "-from is required"},
		{[]string{"sessions", "migrate", "-config", cfgPath, "-from", "x.db"}, 1, `does not configure a Redis store; write sessions { store = "redis"`},
	} {
		var out, errOut bytes.Buffer
		if code := run(tc.args, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v = %d %q, want %d and %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
