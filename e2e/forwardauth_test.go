package e2e

import (
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/e2e/nginx"
)

// exampleNginx is examples/nginx-forward-auth.conf with this test's
// addresses: the file the README points at is the one tested.
func exampleNginx(t *testing.T, listen, ioproxyAddr, toolAddr string) string {
	t.Helper()
	return example(t, "nginx-forward-auth.conf",
		exampleEdit{old: "listen 80;", new: "listen " + listen + ";"},
		exampleEdit{old: "server 127.0.0.1:8080;", new: "server " + ioproxyAddr + ";"},
		exampleEdit{old: "server 127.0.0.1:3000;", new: "server " + toolAddr + ";"},
		exampleEdit{old: "server_name admin.example.com;", new: "server_name 127.0.0.1;"},
		exampleEdit{old: "Host admin.example.com;", new: "Host " + listen + ";"},
	)
}

// TestForwardAuthBehindNginx keeps a real nginx in front of an internal
// tool, with examples/nginx-forward-auth.conf: nginx asks ioproxy's
// /@/auth about each request. alice.test (signed in through nginx, at the
// real PDS, in Chromium) reaches the tool with her identity headers set by
// nginx; bob.test gets ioproxy's 403 page naming him; a script gets 401
// without a key and in with one; forged identity headers never arrive.
func TestForwardAuthBehindNginx(t *testing.T) {
	front := nginx.FreeAddr(t)
	st := newForwardAuthStack(t, "nginx", front)
	ngx := nginx.Start(t, exampleNginx(t, front, st.ioproxyAddr, st.toolAddr))
	st.logs = ngx.ErrorLog

	forged := http.Header{"User-Did": {"did:plc:forgedforgedforgedforged"}, "User_Did": {"did:plc:forged"}, "Apikey-User": {"admin"},
		"User-Email": {"ceo@example.com"}, "User-Subject": {"google:1"}, "Proxy-Provider": {"google"}}
	st.checkScripts(scriptChecks{
		forge: func(hdr http.Header) http.Header {
			maps.Copy(hdr, forged)
			return hdr
		},
		checkKeyed: func() {
			seen := st.tool.lastSeen()
			if seen.Get("Apikey-User") != "ci" || seen.Get("Authorization") != "" || seen.Get("User-Did") != "" || len(seen.Values("User_Did")) != 0 ||
				seen.Get("User-Email") != "" || seen.Get("User-Subject") != "" || seen.Get("Proxy-Provider") != "" {
				t.Fatalf("the tool saw Apikey-User %q, Authorization %q, User-Did %q", seen.Get("Apikey-User"), seen.Get("Authorization"), seen.Get("User-Did"))
			}
		},
	})
	// A browser without a session is sent to ioproxy's sign-in by way of
	// nginx's error_page, with the page it wanted, escaped.
	resp, _ := st.do("GET", "/report?week=48&team=ops", http.Header{"Accept": {"text/html"}, "Sec-Fetch-Mode": {"navigate"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/@/signin?redirect=%2Freport%3Fweek%3D48%26team%3Dops" {
		t.Fatalf("a signed-out browser: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Alice signs in through nginx and reaches the tool.
	b := browser.Start(t, browser.Options{})
	ctx := b.Ctx()
	navigate(ctx, t, st.base+"/report")
	if loc := location(ctx, t); !strings.HasPrefix(loc, st.base+"/@/signin?redirect=%2Freport") {
		t.Fatalf("a signed-out browser landed on %s", loc)
	}
	signInThroughProxy(ctx, t, b, st.base, "alice.test", alicePassword, "/report")
	st.checkAlice(ctx)

	// Bob is refused with ioproxy's page naming him, served through nginx.
	st.checkBobRefused(b)
	// The visitor cannot ask /@/auth itself through nginx.
	if resp, _ := st.do("GET", "/@/auth", basicAuth("ci", "ci-key")); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /@/auth through nginx: %d, want 404", resp.StatusCode)
	}
	// nginx never answered 500: ioproxy's /@/auth said only 200, 401 or 403.
	if strings.Contains(ngx.AccessLog(), `" 500 `) {
		t.Errorf("nginx answered 500:\n%s", ngx.AccessLog())
	}
}
