package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/e2e/nginx"
)

// exampleNginx is examples/nginx-forward-auth.conf with this test's
// addresses: the file the README points at is the one tested.
func exampleNginx(t *testing.T, listen, ioproxyAddr, toolAddr string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "examples", "nginx-forward-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(src)
	for old, repl := range map[string]string{
		"listen 80;":                     "listen " + listen + ";",
		"server 127.0.0.1:8080;":         "server " + ioproxyAddr + ";",
		"server 127.0.0.1:3000;":         "server " + toolAddr + ";",
		"server_name admin.example.com;": "server_name 127.0.0.1;",
		"Host admin.example.com;":        "Host " + listen + ";",
	} {
		if !strings.Contains(conf, old) {
			t.Fatalf("examples/nginx-forward-auth.conf no longer has %q", old)
		}
		conf = strings.ReplaceAll(conf, old, repl)
	}
	return conf
}

// TestForwardAuthBehindNginx keeps a real nginx in front of an internal
// tool, with examples/nginx-forward-auth.conf: nginx asks ioproxy's
// /@/auth about each request. alice.test (signed in through nginx, at the
// real PDS, in Chromium) reaches the tool with her identity headers set by
// nginx; bob.test gets ioproxy's 403 page naming him; a script gets 401
// without a key and in with one; forged identity headers never arrive.
func TestForwardAuthBehindNginx(t *testing.T) {
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{
		{Handle: "alice.test", Password: alicePassword},
		{Handle: "bob.test", Password: bobPassword},
	}})
	alice := a.Accounts[0]
	front := nginx.FreeAddr(t)
	_, frontPort, _ := strings.Cut(front, ":")
	httpPort := freePort(t)
	tool := newWhoBackend(t, 0)
	// The host block names no backend: nginx serves the tool, ioproxy
	// only answers /@/auth and the sign-in routes nginx passes on. The
	// browser's redirect back from sign-in goes to nginx's port.
	startProxy(t, strings.Replace(localSettings(t, a, httpPort, freePort(t), ""), "ingress {", `ingress {
  trusted_proxies = ["127.0.0.1"]`, 1)+fmt.Sprintf(`
host "127.0.0.1" {
  name = "Admin"
  atproto { local = %s }
  require_atproto {
    handles = ["alice.test"]
  }
  apikey_auth {
    users = [%q]
  }
}
# Another forward-auth host, with a key of its own: it must not open
# the tool above.
host "other.example.com" {
  apikey_auth {
    users = [%q]
  }
}
`, frontPort, apiKeyEntry(t, "ci", "ci-key"), apiKeyEntry(t, "other", "other-key")))
	toolAddr := strings.TrimPrefix(tool.URL, "http://")
	ngx := nginx.Start(t, exampleNginx(t, front, fmt.Sprintf("127.0.0.1:%d", httpPort), toolAddr))
	base := "http://" + front

	do := func(method, path string, hdr http.Header) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		for k, v := range hdr {
			req.Header[k] = v
		}
		if h := hdr.Get("Host"); h != "" {
			req.Host = h
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}
	basic := func(name, key string) http.Header {
		r, _ := http.NewRequest("GET", "/", nil)
		r.SetBasicAuth(name, key)
		return http.Header{"Authorization": r.Header["Authorization"]}
	}

	// A script: 401 without a key (a forged identity does not help), in
	// with its key, and the tool sees the name but neither the key nor
	// the forged headers.
	forged := http.Header{"User-Did": {"did:plc:forgedforgedforgedforged"}, "User_Did": {"did:plc:forged"}, "Apikey-User": {"admin"}}
	if resp, body := do("GET", "/report", forged); resp.StatusCode != http.StatusUnauthorized || tool.requests() != 0 {
		t.Fatalf("a script without a key: %d (tool reached %d times)\n%s\n%s", resp.StatusCode, tool.requests(), body, ngx.ErrorLog())
	}
	hdr := basic("ci", "ci-key")
	for k, v := range forged {
		hdr[k] = v
	}
	if resp, body := do("GET", "/report", hdr); resp.StatusCode != 200 {
		t.Fatalf("a script with its key: %d\n%s\n%s", resp.StatusCode, body, ngx.ErrorLog())
	}
	seen := tool.lastSeen()
	if seen.Get("Apikey-User") != "ci" || seen.Get("Authorization") != "" || seen.Get("User-Did") != "" || len(seen.Values("User_Did")) != 0 {
		t.Fatalf("the tool saw Apikey-User %q, Authorization %q, User-Did %q", seen.Get("Apikey-User"), seen.Get("Authorization"), seen.Get("User-Did"))
	}
	// ioproxy's session cookie is ioproxy's: other cookies reach the tool.
	cookies := basic("ci", "ci-key")
	cookies.Set("Cookie", "theme=dark; __Host-ioproxy-session=SECRET; ioproxy-session=SECRET; lang=en")
	if resp, _ := do("GET", "/report", cookies); resp.StatusCode != 200 {
		t.Fatalf("a script with its key and cookies: %d", resp.StatusCode)
	}
	if got := tool.lastSeen().Get("Cookie"); strings.Contains(got, "SECRET") || !strings.Contains(got, "theme=dark") || !strings.Contains(got, "lang=en") {
		t.Errorf("the tool got Cookie %q", got)
	}
	if resp, _ := do("GET", "/report", basic("ci", "wrong")); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong key: %d", resp.StatusCode)
	}
	// The client cannot pick the ioproxy host that nginx asks about.
	hdr = basic("other", "other-key")
	hdr.Set("Host", "other.example.com")
	if resp, _ := do("GET", "/report", hdr); resp.StatusCode != http.StatusUnauthorized || tool.requests() != 2 {
		t.Fatalf("a script with another host's key, naming that Host: %d", resp.StatusCode)
	}
	// A browser without a session is sent to ioproxy's sign-in by way of
	// nginx's error_page, with the page it wanted, escaped.
	resp, _ := do("GET", "/report?week=48&team=ops", http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/@/signin?redirect=%2Freport%3Fweek%3D48%26team%3Dops" {
		t.Fatalf("a signed-out browser: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Alice signs in through nginx and reaches the tool.
	b := browser.Start(t, browser.Options{})
	ctx := b.Ctx()
	navigate(ctx, t, base+"/report")
	if loc := location(ctx, t); !strings.HasPrefix(loc, base+"/@/signin?redirect=%2Freport") {
		t.Fatalf("a signed-out browser landed on %s", loc)
	}
	signInThroughProxy(ctx, t, b, base, "alice.test", alicePassword, "/report")
	if got := text(ctx, t, "#did"); got != alice.DID {
		t.Fatalf("alice through nginx: the tool saw User-Did %q, want %s\n%s", got, alice.DID, ngx.ErrorLog())
	}
	if got := text(ctx, t, "#handle"); got != "alice.test" {
		t.Errorf("User-Handle through nginx = %q", got)
	}
	if got := text(ctx, t, "#session"); got != "true" {
		t.Errorf("Proxy-Session did not arrive through nginx")
	}
	if got := text(ctx, t, "#cookie"); strings.Contains(got, "ioproxy-session") {
		t.Errorf("the tool got ioproxy's session cookie through %s: %q", "nginx", got)
	}

	// Bob is refused with ioproxy's page naming him, served through nginx.
	bctx, cancel, err := b.NewIsolatedTab()
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	before := tool.requests()
	signInThroughProxy(bctx, t, b, base, "bob.test", bobPassword, "/report")
	if got := text(bctx, t, "#account-handle"); got != "@bob.test" {
		t.Fatalf("bob's 403 page through nginx names %q", got)
	}
	if tool.requests() != before {
		t.Fatal("bob's requests reached the tool")
	}
	if _, err := b.Screenshot(bctx, "nginx-denied"); err != nil {
		t.Log(err)
	}
	sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
	err = chromedp.Do(sctx, chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`#handle`)))
	scancel()
	if err != nil {
		t.Fatalf("bob signs out through nginx: %v", err)
	}
	// The visitor cannot ask /@/auth itself through nginx.
	if resp, _ := do("GET", "/@/auth", basic("ci", "ci-key")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /@/auth through nginx: %d, want 404", resp.StatusCode)
	}
	// nginx never answered 500: ioproxy's /@/auth said only 200, 401 or 403.
	if strings.Contains(ngx.AccessLog(), `" 500 `) {
		t.Errorf("nginx answered 500:\n%s", ngx.AccessLog())
	}
}
