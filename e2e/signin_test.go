// Package e2e holds ioproxy's end-to-end tests: the real @atproto/pds as
// authorization server and PDS, headless Chromium for the browser steps,
// and ioproxy assembled in-process exactly as `ioproxy serve` does.
package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/server"
	"github.com/ioproxy/ioproxy/sessions"
)

const (
	alicePassword = "alice-password-1"
	confHost      = "statusphere.ioproxy.dev"
)

// text reads the text of the element sel, waiting for it to appear.
func text(ctx context.Context, t *testing.T, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("read %s on %s: %v", sel, loc, err)
	}
	return strings.TrimSpace(s)
}

func navigate(ctx context.Context, t *testing.T, u string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		t.Fatalf("navigate %s: %v", u, err)
	}
}

// signInThroughProxy fills ioproxy's own sign-in form, then signs in on
// the PDS's pages and waits to land back on the app.
func signInThroughProxy(ctx context.Context, t *testing.T, b *browser.Browser, base, handle, password, redirect string) {
	t.Helper()
	navigate(ctx, t, base+"/@/signin?redirect="+url.QueryEscape(redirect))
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := chromedp.Do(sctx,
		chromedp.SetValue(chromedp.CSS(`#handle`), handle),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
	)
	cancel()
	if err != nil {
		t.Fatalf("submit ioproxy sign-in form: %v", err)
	}
	if err := b.SignInAtPDS(ctx, password); err != nil {
		t.Fatalf("sign in at the PDS: %v", err)
	}
}

// TestLocalhostClientSignInAndCall signs in with the OAuth localhost
// client (local = N, as in examples/local.hcl), checks the backend sees
// the user, writes a record through the calling port, and signs out.
func TestLocalhostClientSignInAndCall(t *testing.T) {
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{{Handle: "alice.test", Password: alicePassword}}})
	alice := a.Accounts[0]
	ps := freePorts(t, 4)
	local, callPort, httpPort := ps[0], ps[1], ps[2]
	backend := newWhoBackend(t, callPort)
	srv := startProxy(t, localSettings(t, a, httpPort, ps[3], "")+fmt.Sprintf(`
host "localhost" {
  name    = "who"
  backend = %q
  atproto {
    name   = "Who"
    scopes = ["atproto", "transition:generic"]
    local  = %d
  }
  tls { mode = "off" }
}
call "web" {
  port     = %d
  endpoint = "localhost"
}
call "atproto" {
  port     = %d
  endpoint = "@"
}
`, backend.URL, local, local, callPort))

	b := browser.Start(t, browser.Options{})
	ctx := b.Ctx()
	base := fmt.Sprintf("http://127.0.0.1:%d", local)

	navigate(ctx, t, base+"/")
	if got := text(ctx, t, "#did"); got != "" {
		t.Fatalf("before sign-in the backend saw User-Did %q", got)
	}

	signInThroughProxy(ctx, t, b, base, "alice.test", alicePassword, "/welcome?from=test")
	if got := text(ctx, t, "#did"); got != alice.DID {
		t.Fatalf("after sign-in the backend saw User-Did %q, want %q", got, alice.DID)
	}
	loc, _ := chromedp.Run(ctx, chromedp.Location())
	if loc != base+"/welcome?from=test" {
		t.Errorf("landed on %s, want the redirect target", loc)
	}
	if got := text(ctx, t, "#handle"); got != "alice.test" {
		t.Errorf("User-Handle = %q, want alice.test", got)
	}
	if got := text(ctx, t, "#scope"); got != "atproto transition:generic" {
		t.Errorf("User-Scope = %q, want the scope the PDS granted, atproto transition:generic", got)
	}
	if got := text(ctx, t, "#session"); got != "true" {
		t.Errorf("Proxy-Session missing")
	}
	if got := text(ctx, t, "#cookie"); strings.Contains(got, "ioproxy-session") {
		t.Errorf("the backend received the session cookie: %q", got)
	}
	if _, err := b.Screenshot(ctx, "localhost-signed-in"); err != nil {
		t.Log(err)
	}

	// The backend writes a record through the calling port; it must be in
	// the repo when read from the PDS directly.
	navigate(ctx, t, base+"/post")
	if got := text(ctx, t, "#status"); got != "200" {
		t.Fatalf("createRecord through the calling port: status %s: %s", got, text(ctx, t, "#result"))
	}
	var created struct{ URI, CID string }
	if err := json.Unmarshal([]byte(text(ctx, t, "#result")), &created); err != nil || !strings.HasPrefix(created.URI, "at://"+alice.DID+"/xyz.statusphere.status/") {
		t.Fatalf("createRecord answer %+v (%v)", created, err)
	}
	rkey := created.URI[strings.LastIndex(created.URI, "/")+1:]
	var rec struct {
		Value struct{ Status string } `json:"value"`
	}
	q := url.Values{"repo": {alice.DID}, "collection": {"xyz.statusphere.status"}, "rkey": {rkey}}
	if code := getJSON(t, a.PDSURL+"/xrpc/com.atproto.repo.getRecord?"+q.Encode(), &rec); code != 200 || rec.Value.Status != "🦋" {
		t.Fatalf("getRecord from the PDS: %d %+v", code, rec)
	}

	// A second call reuses the remembered nonce and the same token.
	navigate(ctx, t, base+"/post")
	if got := text(ctx, t, "#status"); got != "200" {
		t.Fatalf("second createRecord: status %s", got)
	}

	// An expired access token is refreshed at the real PDS (public client).
	expireAndCall(ctx, t, srv, base)

	// Sign out with the confirmation page; the backend then sees nobody.
	navigate(ctx, t, base+"/@/signout")
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := chromedp.Do(sctx, chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`#did`)))
	cancel()
	if err != nil {
		t.Fatalf("sign out: %v", err)
	}
	if got := text(ctx, t, "#did"); got != "" {
		t.Fatalf("after sign-out the backend saw User-Did %q", got)
	}
}

// TestConfidentialClientSignIn signs in with the confidential web client:
// ioproxy serves HTTPS for statusphere.ioproxy.dev with a test certificate
// that the PDS trusts, the PDS fetches /@/client-metadata.json and
// /@/jwks.json from it, and the token requests carry private_key_jwt
// client assertions.
func TestConfidentialClientSignIn(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := testCA(t, dir, confHost)
	a := atmo.Start(t, atmo.Options{
		Accounts:    []atmo.Account{{Handle: "alice.test", Password: alicePassword}},
		HostAliases: []string{confHost},
		ExtraCAFile: caFile,
	})
	alice := a.Accounts[0]
	ps := freePorts(t, 4)
	httpsPort, callPort, adminPort := ps[0], ps[1], ps[2]
	backend := newWhoBackend(t, callPort)
	cfg := localSettings(t, a, ps[3], httpsPort, fmt.Sprintf("127.0.0.1:%d", adminPort)) + fmt.Sprintf(`
host %q {
  backend = %q
  atproto {
    name   = "Statusphere (e2e)"
    scopes = ["atproto", "transition:generic"]
  }
  tls {
    cert_file = %q
    key_file  = %q
  }
}
call "atproto" {
  port     = %d
  endpoint = "@"
}
`, confHost, backend.URL, certFile, keyFile, callPort)
	srv := startProxy(t, cfg)

	b := browser.Start(t, browser.Options{HostResolverRules: map[string]string{confHost: "127.0.0.1"}, IgnoreCertErrors: true})
	ctx := b.Ctx()
	base := fmt.Sprintf("https://%s:%d", confHost, httpsPort)
	signInThroughProxy(ctx, t, b, base, "alice.test", alicePassword, "/")
	if got := text(ctx, t, "#did"); got != alice.DID {
		t.Fatalf("after sign-in the backend saw User-Did %q, want %q", got, alice.DID)
	}
	navigate(ctx, t, base+"/post")
	if got := text(ctx, t, "#status"); got != "200" {
		t.Fatalf("createRecord through the calling port: status %s: %s", got, text(ctx, t, "#result"))
	}
	if _, err := b.Screenshot(ctx, "confidential-signed-in"); err != nil {
		t.Log(err)
	}

	// A restart keeps the session, the client key and the tokens: the
	// browser is still signed in and calls still work.
	srv.Close()
	srv = startProxy(t, cfg)
	navigate(ctx, t, base+"/")
	if got := text(ctx, t, "#did"); got != alice.DID {
		t.Fatalf("after a restart the backend saw User-Did %q, want %q", got, alice.DID)
	}

	// Expire the access token: the next call refreshes it at the real
	// PDS (token endpoint nonce, DPoP, client assertion) and goes through.
	expireAndCall(ctx, t, srv, base)

	// The admin listener's metrics saw all of it. (Counters restarted with
	// the proxy, so they count since the restart.)
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`ioproxy_oauth_token_refreshes_total{result="ok"} 1`,
		`ioproxy_sessions_active 1`,
		`ioproxy_calls_total{call="atproto",operation="",status="200"} 1`,
		`ioproxy_upstream_response_seconds_count{kind="call",source="atproto"}`,
		`ioproxy_upstream_response_seconds_count{kind="ingress",source="` + confHost + `"}`,
		`ioproxy_ingress_requests_total{host="` + confHost + `",status="200"}`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The restarted ioproxy refreshed with the authorization server's
	// nonce kept with the session (since sign-in): no refused request.
	if strings.Contains(string(metrics), `ioproxy_dpop_nonce_retries_total{server="auth_server"}`) {
		t.Error("the refresh after the restart was refused once for its DPoP nonce; the session's nonce should have served")
	}
}

// expireAndCall expires the one session's access token, makes a call
// through the backend, and checks that the tokens were refreshed.
func expireAndCall(ctx context.Context, t *testing.T, srv *server.Server, base string) {
	t.Helper()
	list := listSessions(srv.Store())
	if len(list) != 1 {
		t.Fatalf("%d sessions, want 1", len(list))
	}
	before := list[0]
	if _, err := srv.Store().Update(context.Background(), before.ID, func(s *sessions.Session) error {
		s.TokenExpiry = time.Now().Add(-time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	navigate(ctx, t, base+"/post")
	if got := text(ctx, t, "#status"); got != "200" {
		t.Fatalf("createRecord after expiry: status %s: %s", got, text(ctx, t, "#result"))
	}
	after, ok := getSession(srv.Store(), before.ID)
	if !ok || after.AccessToken == before.AccessToken || after.RefreshToken == before.RefreshToken || after.RefreshedAt.IsZero() || !after.TokenExpiry.After(time.Now().Add(30*time.Minute)) {
		t.Fatalf("session after refresh: ok=%v refreshed=%v expiry=%v new access token=%v new refresh token=%v", ok, after.RefreshedAt, after.TokenExpiry, after.AccessToken != before.AccessToken, after.RefreshToken != before.RefreshToken)
	}
}
