package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/e2e/caddy"
)

// exampleCaddyfile is examples/Caddyfile.forward-auth with this test's
// addresses: the file the README points at is the one tested. The site
// answers any Host on front's port, so that a client naming another Host
// reaches it and the test can show that ioproxy is asked about the
// written-out Host all the same.
func exampleCaddyfile(t *testing.T, front, ioproxyAddr, toolAddr string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "examples", "Caddyfile.forward-auth"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(src)
	// Caddy 2.6.2 overwrites a client's User-Did itself (see
	// e2e/caddy.TestForwardAuth), so a request cannot show that one of
	// these is missing; Caddy 2.10.0 to 2.11.1 would pass the client's on.
	fa := strings.Index(conf, "\t\t\tforward_auth ")
	for _, name := range []string{"User-Did", "User_Did", "User-Handle", "User_Handle", "Proxy-Session", "Proxy_Session", "Apikey-User", "Apikey_User"} {
		if i := strings.Index(conf, "\t\t\trequest_header -"+name+"\n"); i < 0 || fa < 0 || i > fa {
			t.Fatalf("examples/Caddyfile.forward-auth does not remove the client's %s before forward_auth", name)
		}
	}
	_, port, _ := strings.Cut(front, ":")
	for _, r := range []struct {
		old, new string
		n        int // times it must appear
	}{
		{"\nadmin.example.com {\n", "\nhttp://:" + port + " {\n", 1},
		{"header_up Host admin.example.com\n", "header_up Host " + front + "\n", 2},
		{"reverse_proxy 127.0.0.1:8080 {", "reverse_proxy " + ioproxyAddr + " {", 1},
		{"forward_auth 127.0.0.1:8080 {", "forward_auth " + ioproxyAddr + " {", 1},
		{"reverse_proxy 127.0.0.1:3000\n", "reverse_proxy " + toolAddr + "\n", 1},
	} {
		if got := strings.Count(conf, r.old); got != r.n {
			t.Fatalf("examples/Caddyfile.forward-auth has %q %d times, want %d", r.old, got, r.n)
		}
		conf = strings.ReplaceAll(conf, r.old, r.new)
	}
	return conf
}

// identityHeaders are the headers only ioproxy may set, in the spellings a
// backend may read as the same.
var identityHeaders = []string{
	"User-Did", "User_Did", "user-did",
	"User-Handle", "User_Handle",
	"Proxy-Session", "Proxy_Session",
	"Apikey-User", "Apikey_User", "apikey_user",
}

// TestForwardAuthBehindCaddy keeps a real Caddy in front of an internal
// tool, with examples/Caddyfile.forward-auth: Caddy's forward_auth asks
// ioproxy's /@/auth about each request. alice.test (signed in through
// Caddy, at the real PDS, in Chromium) reaches the tool with her identity
// headers; bob.test gets ioproxy's 403 page naming him; a script gets 401
// without a key and in with one; forged identity headers never arrive,
// in any spelling, and neither does Caddy's own placeholder for a header
// ioproxy's answer lacks (Caddy 2.6.2 writes one).
func TestForwardAuthBehindCaddy(t *testing.T) {
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{
		{Handle: "alice.test", Password: alicePassword},
		{Handle: "bob.test", Password: bobPassword},
	}})
	alice := a.Accounts[0]
	front := caddy.FreeAddr(t)
	_, frontPort, _ := strings.Cut(front, ":")
	httpPort := freePort(t)
	tool := newWhoBackend(t, 0)
	// The host block names no backend: Caddy serves the tool, ioproxy
	// only answers /@/auth and the sign-in routes Caddy passes on. The
	// browser's redirect back from sign-in goes to Caddy's port.
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
	cdy := caddy.Start(t, exampleCaddyfile(t, front, fmt.Sprintf("127.0.0.1:%d", httpPort), toolAddr))
	base := "http://" + front

	do := func(method, path string, hdr http.Header) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if h := hdr.Get("Host"); h != "" {
			req.Host = h
		}
		client := &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
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
	// forged sets every identity header, verbatim (not canonicalized).
	forged := func(hdr http.Header) http.Header {
		for _, k := range identityHeaders {
			hdr[k] = []string{"did:plc:forgedforgedforgedforged"}
		}
		return hdr
	}
	// noForgery fails if the tool's last request carries an identity
	// header other than want, a forged value, or Caddy's placeholder.
	identity := map[string]bool{}
	for _, k := range identityHeaders {
		identity[http.CanonicalHeaderKey(k)] = true // "User_Did" is "User_did"
	}
	noForgery := func(who string, want map[string]string) {
		t.Helper()
		seen := tool.lastSeen()
		for k, vs := range seen {
			_, wanted := want[k]
			bad := slices.ContainsFunc(vs, func(v string) bool {
				return strings.Contains(v, "forged") || strings.Contains(v, "{http.")
			})
			if identity[k] && !wanted || bad {
				t.Errorf("%s: the tool got %s: %q", who, k, vs)
			}
		}
		for k, v := range want {
			if got := seen.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("%s: the tool got %s %q, want %q", who, k, got, v)
			}
		}
	}

	// A script: 401 without a key (a forged identity does not help), in
	// with its key, and the tool sees the name but neither the key nor
	// the forged headers.
	if resp, body := do("GET", "/report", forged(http.Header{})); resp.StatusCode != http.StatusUnauthorized || tool.requests() != 0 {
		t.Fatalf("a script without a key: %d (tool reached %d times)\n%s", resp.StatusCode, tool.requests(), body)
	}
	if resp, body := do("GET", "/report", forged(basic("ci", "ci-key"))); resp.StatusCode != 200 {
		t.Fatalf("a script with its key: %d\n%s", resp.StatusCode, body)
	}
	noForgery("a script with its key", map[string]string{"Apikey-User": "ci"})
	if got := tool.lastSeen().Get("Authorization"); got != "" {
		t.Errorf("the tool got the API key: Authorization %q", got)
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
	if resp, _ := do("GET", "/report", basic("ci", "wrong")); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("a wrong key: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// The client cannot pick the ioproxy host that Caddy asks about: the
	// site answers any Host, and Caddy would pass the client's on.
	hdr := basic("other", "other-key")
	hdr.Set("Host", "other.example.com")
	if resp, _ := do("GET", "/report", hdr); resp.StatusCode != http.StatusUnauthorized || tool.requests() != 2 {
		t.Fatalf("a script with another host's key, naming that Host: %d (tool reached %d times)", resp.StatusCode, tool.requests())
	}
	// A browser without a session gets ioproxy's 401 page, with a Refresh
	// to sign-in naming the page it wanted, escaped.
	resp, _ := do("GET", "/report?week=48&team=ops", http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}})
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Refresh") != "0; url=/@/signin?redirect=%2Freport%3Fweek%3D48%26team%3Dops" {
		t.Fatalf("a signed-out browser: %d, Refresh %q", resp.StatusCode, resp.Header.Get("Refresh"))
	}

	// Alice's browser follows the Refresh to ioproxy's sign-in form,
	// signs in through Caddy and reaches the tool.
	b := browser.Start(t, browser.Options{})
	ctx := b.Ctx()
	navigate(ctx, t, base+"/report")
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	err := chromedp.Do(wctx, chromedp.WaitVisible(chromedp.CSS(`#handle`)))
	wcancel()
	if loc := location(ctx, t); err != nil || !strings.HasPrefix(loc, base+"/@/signin?redirect=%2Freport") {
		t.Fatalf("a signed-out browser landed on %s (sign-in form: %v)", loc, err)
	}
	signInThroughProxy(ctx, t, b, base, "alice.test", alicePassword, "/report")
	if got := text(ctx, t, "#did"); got != alice.DID {
		t.Fatalf("alice through Caddy: the tool saw User-Did %q, want %s", got, alice.DID)
	}
	if got := text(ctx, t, "#handle"); got != "alice.test" {
		t.Errorf("User-Handle through Caddy = %q", got)
	}
	if got := text(ctx, t, "#session"); got != "true" {
		t.Errorf("Proxy-Session did not arrive through Caddy")
	}
	if got := text(ctx, t, "#cookie"); strings.Contains(got, "ioproxy-session") {
		t.Errorf("the tool got ioproxy's session cookie through %s: %q", "Caddy", got)
	}
	noForgery("alice", map[string]string{"User-Did": alice.DID, "User-Handle": "alice.test", "Proxy-Session": tool.lastSeen().Get("Proxy-Session")})
	// A page of the tool calling it with a token of its own: the
	// Authorization header is not an API key, so it passes.
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	status, err := chromedp.Run(fctx, chromedp.Evaluate[int](`fetch("/api", {headers: {"Authorization": "Bearer tool-token"}}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	fcancel()
	if err != nil || status != 200 {
		t.Fatalf("alice's page fetching the tool: %d, %v", status, err)
	}
	if got := tool.lastSeen().Get("Authorization"); got != "Bearer tool-token" {
		t.Errorf("alice's page sent Authorization: Bearer tool-token, the tool got %q", got)
	}
	noForgery("alice's fetch", map[string]string{"User-Did": alice.DID, "User-Handle": "alice.test", "Proxy-Session": tool.lastSeen().Get("Proxy-Session")})

	// Bob is refused with ioproxy's page naming him, served through Caddy.
	bctx, cancel, err := b.NewIsolatedTab()
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	before := tool.requests()
	signInThroughProxy(bctx, t, b, base, "bob.test", bobPassword, "/report")
	if got := text(bctx, t, "#account-handle"); got != "@bob.test" {
		t.Fatalf("bob's 403 page through Caddy names %q", got)
	}
	if tool.requests() != before {
		t.Fatal("bob's requests reached the tool")
	}
	if _, err := b.Screenshot(bctx, "caddy-denied"); err != nil {
		t.Log(err)
	}
	sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
	err = chromedp.Do(sctx, chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`#handle`)))
	scancel()
	if err != nil {
		t.Fatalf("bob signs out through Caddy: %v", err)
	}
	if loc := location(bctx, t); !strings.HasPrefix(loc, base+"/@/signin") {
		t.Errorf("bob signed out, landed on %s", loc)
	}

	// The visitor cannot ask /@/auth itself through Caddy, in any
	// spelling: its answer holds the Proxy-Session meant for the tool.
	// ("//@/auth" and the like reach ioproxy, which redirects them to
	// /@/auth without answering.)
	for _, p := range []string{"/@/auth", "/@/auth?x=1", "/%40/auth", "/@%2Fauth", "/@/%61uth", "//@/auth", "/@//auth", "/@/./auth", "/x/../@/auth", "/@/auth/", "/@/AUTH"} {
		resp, body := do("GET", p, basic("ci", "ci-key"))
		if resp.StatusCode == http.StatusOK || resp.Header.Get("Apikey-User") != "" || strings.Contains(body, "apikey_user") {
			t.Errorf("GET %s through Caddy: %d, Apikey-User %q\n%s", p, resp.StatusCode, resp.Header.Get("Apikey-User"), body)
		}
		if p == "/@/auth" && resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /@/auth through Caddy: %d, want 404", resp.StatusCode)
		}
	}
	// Caddy never failed a request itself.
	if out := cdy.Output(); strings.Contains(out, `"level":"error"`) {
		t.Errorf("Caddy logged an error:\n%s", out)
	}
}
