package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/server"
)

// startReloadableProxy is startProxy whose configuration file the test
// rewrites; write replaces it and Reload (the server's) reads it again.
func startReloadableProxy(t *testing.T, src string) (*server.Server, func(string)) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "io.hcl")
	write := func(src string) {
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(src)
	load := func() (*config.Config, hcl.Diagnostics) { return config.LoadAll([]string{path}, config.Options{}) }
	cfg, diags := load()
	if diags.HasErrors() {
		var b bytes.Buffer
		_ = config.WriteDiagnostics(&b, diags)
		t.Fatalf("config:\n%s\n%s", src, b.String())
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := server.Start(context.Background(), cfg, server.Options{Logger: log, ShutdownTimeout: 5 * time.Second, Load: load})
	if err != nil {
		t.Fatalf("start ioproxy: %v", err)
	}
	t.Cleanup(srv.Close)
	return srv, write
}

// TestReloadKeepsSessions guards a tool with a serve block that a
// localhost host fronts, signs alice in against the real PDS, and then
// reloads new rules and a new backend: her session outlives every reload
// (no sign-in again, and her calls to her PDS still work), the new rules
// take effect at once (bob, refused first, gets in after a reload names
// him), and a configuration with an error changes nothing.
func TestReloadKeepsSessions(t *testing.T) {
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{
		{Handle: "alice.test", Password: alicePassword},
		{Handle: "bob.test", Password: bobPassword},
	}})
	alice, bob := a.Accounts[0], a.Accounts[1]
	ps := freePorts(t, 5)
	local, pdsPort, servePort := ps[0], ps[1], ps[2]
	toolA, toolB := newWhoBackend(t, pdsPort), newWhoBackend(t, pdsPort)
	settings := localSettings(t, a, ps[3], ps[4], "")
	cfgWith := func(backend, handles string) string {
		return settings + fmt.Sprintf(`
serve "tool" {
  port    = %d
  backend = %q
  require_atproto { handles = [%s] }
}
host "localhost" {
  backend = "serving:tool"
  atproto {
    local  = %d
    scopes = ["atproto", "repo:xyz.statusphere.status"]
  }
  tls { mode = "off" }
}
call "web" {
  port     = %d
  endpoint = "localhost"
}
call "pds" {
  port     = %d
  endpoint = "@"
}
`, servePort, backend, handles, local, local, pdsPort)
	}
	srv, write := startReloadableProxy(t, cfgWith(toolA.URL, `"alice.test"`))
	reload := func(src string) {
		t.Helper()
		write(src)
		if _, err := srv.Reload(context.Background()); err != nil {
			t.Fatalf("reload: %v", err)
		}
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", local)
	b := browser.Start(t, browser.Options{})
	ctx := b.Ctx()
	signInThroughProxy(ctx, t, b, base, "alice.test", alicePassword, "/")
	if got := text(ctx, t, "#did"); got != alice.DID {
		t.Fatalf("alice: the tool saw User-Did %q", got)
	}
	sessionsBefore := len(listSessions(srv.Store()))

	// A new backend: alice is still signed in there, and writes to her
	// PDS through the calling port with the session she had.
	reload(cfgWith(toolB.URL, `"alice.test"`))
	navigate(ctx, t, base+"/post")
	if got := text(ctx, t, "#status"); got != "200" {
		t.Fatalf("alice's call after a reload: %s %s", got, text(ctx, t, "#result"))
	}
	if seen := toolB.lastSeen(); seen.Get("User-Did") != alice.DID {
		t.Fatalf("the new backend saw User-Did %q", seen.Get("User-Did"))
	}
	if n := len(listStatuses(t, a.PDSURL, alice.DID)); n != 1 {
		t.Fatalf("alice has %d statuses, want 1", n)
	}

	// Bob is refused, until a reload names him.
	bctx, cancel, err := b.NewIsolatedTab()
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	signInThroughProxy(bctx, t, b, base, "bob.test", bobPassword, "/")
	if got := text(bctx, t, "#account-handle"); got != "@bob.test" {
		t.Fatalf("bob's 403 page names %q", got)
	}
	reload(cfgWith(toolB.URL, `"alice.test", "bob.test"`))
	signInThroughProxy(bctx, t, b, base, "bob.test", bobPassword, "/")
	if got := text(bctx, t, "#did"); got != bob.DID {
		t.Fatalf("bob after the reload that names him: User-Did %q", got)
	}

	// A configuration with an error: nothing changes.
	write(cfgWith(toolA.URL, `"alice.test"`) + "host \"broken.localhost\" {\n  backend = \"nowhere\"\n}\n")
	if _, err := srv.Reload(context.Background()); err == nil {
		t.Fatal("a configuration with an error was applied")
	}
	navigate(ctx, t, base+"/")
	if got := text(ctx, t, "#did"); got != alice.DID || toolB.lastSeen().Get("User-Did") != alice.DID {
		t.Fatalf("after a refused reload alice reached %q on the wrong backend", got)
	}
	if n := len(listSessions(srv.Store())); n != sessionsBefore+1 {
		t.Fatalf("%d sessions after the reloads, want alice's and bob's (%d)", n, sessionsBefore+1)
	}

	// A reload that names bob alone: alice's pages are refused, and so
	// are her calls to her PDS, though her session lives on.
	reload(cfgWith(toolB.URL, `"bob.test"`))
	navigate(ctx, t, base+"/post")
	if got := text(ctx, t, "#account-handle"); got != "@alice.test" {
		t.Fatalf("alice after the reload that drops her: %q", got)
	}
	key := toolB.lastSeen().Get("Proxy-Session")
	resp, body := callPDS(ctx, t, http.DefaultClient, pdsPort, alice.DID, key, "com.atproto.repo.createRecord", "application/json",
		[]byte(`{"repo":"`+alice.DID+`","collection":"xyz.statusphere.status","record":{"$type":"xyz.statusphere.status","status":"x","createdAt":"2026-12-01T00:00:00Z"}}`))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "may no longer use this site") {
		t.Fatalf("alice's call after the reload that drops her: %d %s", resp.StatusCode, body)
	}
	if n := len(listStatuses(t, a.PDSURL, alice.DID)); n != 1 {
		t.Fatalf("alice has %d statuses, want still 1", n)
	}
}
