package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// runKey runs `ioproxy key ...` and returns its exit code and output.
func runKey(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(append([]string{"key"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func writeConfig(t *testing.T, src string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "io.hcl")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var kidRE = regexp.MustCompile(`(?m)^([A-Za-z0-9_-]{16})  `)

// TestKeyRotate: status shows the one key; rotate publishes the next one
// and says when it signs and when the old one goes; a second rotation
// during the first is refused, saying why; bad delays are refused.
func TestKeyRotate(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	cfg := writeConfig(t, fmt.Sprintf(`
data_dir = %q
sessions {
  store = "redis"
  url = %q
  encryption_key = %q
}
host "app.example.com" {
  backend = "localhost:1"
  atproto {}
}`, filepath.Join(t.TempDir(), "data"), srv.URL(), sealed.Generate()))

	code, out, errOut := runKey(t, "status", "-config", cfg)
	if code != 0 || len(kidRE.FindAllString(out, -1)) != 1 || !strings.Contains(out, "signs, published") {
		t.Fatalf("status of a new store: %d\n%s%s", code, out, errOut)
	}
	first := kidRE.FindStringSubmatch(out)[1]

	code, out, errOut = runKey(t, "rotate", "-config", cfg, "-sign-after", "2h", "-drop-after", "3h")
	if code != 0 || !strings.Contains(out, "is published at /@/jwks.json now") || !strings.Contains(out, "(in 2h0m0s)") ||
		!strings.Contains(out, "The current key "+first+" leaves the key set at") {
		t.Fatalf("rotate: %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = runKey(t, "status", "-config", cfg)
	kids := kidRE.FindAllStringSubmatch(out, -1)
	if code != 0 || len(kids) != 2 || kids[0][1] != first || !strings.Contains(out, "published, signs from") || !strings.Contains(out, "leaves the key set at") {
		t.Fatalf("status during the rotation: %d\n%s%s", code, out, errOut)
	}

	code, _, errOut = runKey(t, "rotate", "-config", cfg)
	if code != 1 || !strings.Contains(errOut, "under way") || !strings.Contains(errOut, kids[1][1]+" signs from") {
		t.Errorf("a second rotation: %d %s; want it refused, naming the next key's time", code, errOut)
	}
	if code, _, errOut = runKey(t, "rotate", "-config", cfg, "-sign-after", "-1h"); code != 2 || !strings.Contains(errOut, "must not be negative") {
		t.Errorf("a negative delay: %d %s", code, errOut)
	}
	if code, _, errOut = runKey(t, "spin"); code != 2 || !strings.Contains(errOut, "ioproxy key rotate") {
		t.Errorf("an unknown subcommand: %d %s; want the usage", code, errOut)
	}
}

// TestKeyRotateBoltInUse: an ioproxy on bbolt holds its file; rotate says
// to stop it first. Stopped, the rotation goes through.
func TestKeyRotateBoltInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := writeConfig(t, fmt.Sprintf(`
data_dir = %q
host "app.example.com" {
  backend = "localhost:1"
  atproto {}
}`, dir))
	held, err := boltstore.Open(boltstore.Config{Path: filepath.Join(dir, "ioproxy.db")})
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runKey(t, "rotate", "-config", cfg)
	if code != 1 || !strings.Contains(errOut, "stop it, run this again, then start it") {
		t.Errorf("rotate while the file is held: %d %s", code, errOut)
	}
	held.Close()
	if code, out, errOut := runKey(t, "rotate", "-config", cfg); code != 0 {
		t.Errorf("rotate once stopped: %d\n%s%s", code, out, errOut)
	}
}

// TestKeyNothingToRotate: hosts that all use the localhost client have
// no key.
func TestKeyNothingToRotate(t *testing.T) {
	cfg := writeConfig(t, fmt.Sprintf(`
data_dir = %q
host "localhost" {
  backend = "localhost:1"
  atproto { local = 9000 }
}
call "localhost" {
  port     = 9000
  endpoint = "localhost"
}`, filepath.Join(t.TempDir(), "data")))
	if code, _, errOut := runKey(t, "rotate", "-config", cfg); code != 1 || !strings.Contains(errOut, "nothing to rotate") {
		t.Errorf("rotate with the localhost client only: %d %s", code, errOut)
	}
}
