package e2e

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

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
	_, port, _ := strings.Cut(front, ":")
	conf := example(t, "Caddyfile.forward-auth",
		exampleEdit{"\nadmin.example.com {\n", "\nhttp://:" + port + " {\n", 1},
		exampleEdit{"header_up Host admin.example.com\n", "header_up Host " + front + "\n", 2},
		exampleEdit{"reverse_proxy 127.0.0.1:8080 {", "reverse_proxy " + ioproxyAddr + " {", 1},
		exampleEdit{"forward_auth 127.0.0.1:8080 {", "forward_auth " + ioproxyAddr + " {", 1},
		exampleEdit{"reverse_proxy 127.0.0.1:3000\n", "reverse_proxy " + toolAddr + "\n", 1},
	)
	// Caddy 2.6.2 overwrites a client's User-Did itself (see
	// e2e/caddy.TestForwardAuth), so a request cannot show that one of
	// these is missing; Caddy 2.10.0 to 2.11.1 would pass the client's on.
	fa := strings.Index(conf, "\t\t\tforward_auth ")
	for _, name := range []string{"User-Did", "User_Did", "User-Handle", "User_Handle", "User-Scope", "User_Scope", "Proxy-Session", "Proxy_Session", "Apikey-User", "Apikey_User",
		"Proxy-Provider", "Proxy_Provider", "User-Email", "User_Email", "User-Subject", "User_Subject"} {
		if i := strings.Index(conf, "\t\t\trequest_header -"+name+"\n"); i < 0 || fa < 0 || i > fa {
			t.Fatalf("examples/Caddyfile.forward-auth does not remove the client's %s before forward_auth", name)
		}
	}
	return conf
}

// identityHeaders are the headers only ioproxy may set, in the spellings a
// backend may read as the same.
var identityHeaders = []string{
	"User-Did", "User_Did", "user-did",
	"User-Handle", "User_Handle",
	"User-Scope", "User_Scope",
	"Proxy-Session", "Proxy_Session",
	"Apikey-User", "Apikey_User", "apikey_user",
	"Proxy-Provider", "Proxy_Provider", "User-Email", "User_Email", "User-Subject", "User_Subject",
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
	front := caddy.FreeAddr(t)
	st := newForwardAuthStack(t, "Caddy", front)
	cdy := caddy.Start(t, exampleCaddyfile(t, front, st.ioproxyAddr, st.toolAddr))
	tool, alice, base := st.tool, st.alice, st.base

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

	// The site answers any Host, and Caddy would pass the client's on: the
	// check of another host's key shows that the example writes it out.
	st.checkScripts(scriptChecks{
		forge: forged,
		checkKeyed: func() {
			noForgery("a script with its key", map[string]string{"Apikey-User": "ci"})
			if got := tool.lastSeen().Get("Authorization"); got != "" {
				t.Errorf("the tool got the API key: Authorization %q", got)
			}
		},
		challenge: true,
	})
	// A browser without a session gets ioproxy's 401 page, with a Refresh
	// to sign-in naming the page it wanted, escaped.
	resp, _ := st.do("GET", "/report?week=48&team=ops", http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}})
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
	st.checkAlice(ctx)
	noForgery("alice", map[string]string{"User-Did": alice.DID, "User-Handle": "alice.test", "User-Scope": "atproto", "Proxy-Session": tool.lastSeen().Get("Proxy-Session")})
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
	noForgery("alice's fetch", map[string]string{"User-Did": alice.DID, "User-Handle": "alice.test", "User-Scope": "atproto", "Proxy-Session": tool.lastSeen().Get("Proxy-Session")})

	// Bob is refused with ioproxy's page naming him, served through Caddy.
	bctx := st.checkBobRefused(b)
	if loc := location(bctx, t); !strings.HasPrefix(loc, base+"/@/signin") {
		t.Errorf("bob went back to sign-in, landed on %s", loc)
	}

	// The visitor cannot ask /@/auth itself through Caddy, in any
	// spelling: its answer holds the Proxy-Session meant for the tool.
	// ("//@/auth" and the like reach ioproxy, which redirects them to
	// /@/auth without answering.)
	for _, p := range []string{"/@/auth", "/@/auth?x=1", "/%40/auth", "/@%2Fauth", "/@/%61uth", "//@/auth", "/@//auth", "/@/./auth", "/x/../@/auth", "/@/auth/", "/@/AUTH"} {
		resp, body := st.do("GET", p, basicAuth("ci", "ci-key"))
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
