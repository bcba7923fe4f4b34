package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/internal/oidctest"
	"github.com/ioproxy/ioproxy/sessions"
)

// oauthAPI is a loopback API that accepts only access tokens the
// provider issued and still honours: it asks the provider's userinfo
// endpoint about each, as a resource server would.
func oauthAPI(t *testing.T, issuer string) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Session") != "" || r.Header.Get("User-Email") != "" {
			http.Error(w, "ioproxy passed its own headers upstream", http.StatusBadRequest)
			return
		}
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, issuer+"/userinfo", nil)
		req.Header.Set("Authorization", r.Header.Get("Authorization"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			http.Error(w, "token refused by the provider", http.StatusUnauthorized)
			return
		}
		var info struct {
			Email string `json:"email"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&info)
		fmt.Fprintf(w, "calendar of %s", info.Email)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// oauthTool is the app behind ioproxy: it shows what ioproxy told it and
// calls the API through the calling port with the Proxy-Session it got.
func oauthTool(t *testing.T, callPort *int) (*httptest.Server, *sync.Map) {
	keys := &sync.Map{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		keys.Store("last", r.Header.Get("Proxy-Session"))
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>tool</title><p id=provider>%s</p><p id=email>%s</p><p id=subject>%s</p><p id=cookie>%s</p>",
			html.EscapeString(r.Header.Get("Proxy-Provider")), html.EscapeString(r.Header.Get("User-Email")),
			html.EscapeString(r.Header.Get("User-Subject")), html.EscapeString(r.Header.Get("Cookie")))
	}))
	t.Cleanup(srv.Close)
	return srv, keys
}

// callAPI calls the API through the calling port as the tool does.
func callAPI(t *testing.T, callPort int, proxySession string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/calendar/v3/events", callPort), nil)
	req.Header.Set("Proxy-Session", proxySession)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("call: %v", err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestOAuthProviderSignIn signs in through a real OpenID Connect
// provider's own pages in Chromium: the tool sees the verified identity,
// calls through session:<provider> reach an API that checks the token
// with the provider, an expired token is refreshed once under concurrent
// calls, an account the rules do not name gets no session, a forged
// callback is refused with a readable page, and sign-out ends the
// session (and its calls).
func TestOAuthProviderSignIn(t *testing.T) {
	ps := freePorts(t, 2)
	httpPort, callPort := ps[0], ps[1]
	base := fmt.Sprintf("http://localhost:%d", httpPort)
	p := oidctest.Start(t, oidctest.Config{
		ClientID: "ioproxy", ClientSecret: "provider-secret",
		RedirectURIs: []string{base + "/@corp/callback"},
		Users: []oidctest.User{
			{Username: "alice", Password: "alice-pw", Email: "alice@example.com", EmailVerified: true},
			{Username: "mallory", Password: "mallory-pw", Email: "mallory@evil.example", EmailVerified: true},
		},
		RefreshWithoutOfflineAccess: true,
	})
	api := oauthAPI(t, p.Issuer)
	tool, keys := oauthTool(t, &callPort)
	srv := startProxy(t, fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "" }
host "localhost" {
  backend = %q
  oauth "corp" {
    client_id     = "ioproxy"
    client_secret = "provider-secret"
    issuer        = %q
  }
  require_oauth "corp" { domains = ["example.com"] }
  tls { mode = "off" }
}
call "calendar" {
  port     = %d
  endpoint = %q
  auth {
    name       = "authorization"
    credential = "session:corp"
  }
}
`, t.TempDir()+"/data", httpPort, tool.URL, p.Issuer, callPort, api.URL))

	b := browser.Start(t, browser.Options{})
	ctx := b.Ctx()
	signInAtProvider := func(ctx context.Context, user, password string) {
		t.Helper()
		navigate(ctx, t, base+"/report")
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx,
			chromedp.WaitVisible(chromedp.CSS(`#username`)),
			chromedp.SendKeys(chromedp.CSS(`#username`), user),
			chromedp.SendKeys(chromedp.CSS(`#password`), password),
			chromedp.Click(chromedp.CSS(`#submit`)),
			chromedp.WaitVisible(chromedp.CSS(`main, #email`)),
		); err != nil {
			t.Fatalf("sign in at the provider as %s: %v (at %s)", user, err, location(ctx, t))
		}
	}
	signInAtProvider(ctx, "alice", "alice-pw")
	if loc := location(ctx, t); loc != base+"/report" {
		t.Fatalf("after sign-in the browser is at %s", loc)
	}
	if got := text(ctx, t, "#email"); got != "alice@example.com" {
		t.Fatalf("the tool saw User-Email %q", got)
	}
	if got, sub := text(ctx, t, "#provider"), text(ctx, t, "#subject"); got != "corp" || !strings.HasPrefix(sub, "corp:") {
		t.Fatalf("the tool saw Proxy-Provider %q, User-Subject %q", got, sub)
	}
	if got := text(ctx, t, "#cookie"); strings.Contains(got, "ioproxy") {
		t.Fatalf("the tool saw ioproxy's cookie: %q", got)
	}
	key, _ := keys.Load("last")
	proxyKey := key.(string)
	if code, body := callAPI(t, callPort, proxyKey); code != 200 || body != "calendar of alice@example.com" {
		t.Fatalf("call with alice's token: %d %q", code, body)
	}

	// The access token expires (as ioproxy sees it: tokens that live a
	// few seconds would be refreshed at once, and then not again within
	// a minute); calls at once share one refresh.
	for _, sess := range listSessions(srv.Store()) {
		if _, err := srv.Store().Update(context.Background(), sess.ID, func(s *sessions.Session) error {
			s.TokenExpiry = time.Now().Add(-time.Second)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	before := p.TokenRequests("refresh_token")
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if code, body := callAPI(t, callPort, proxyKey); code != 200 {
				t.Errorf("a call after expiry: %d %q", code, body)
			}
		})
	}
	wg.Wait()
	if n := p.TokenRequests("refresh_token") - before; n != 1 {
		t.Fatalf("%d refreshes for 6 calls at once on an expired token, want 1", n)
	}

	// Mallory, in a window of her own, is refused and gets no session.
	mctx, cancel, err := b.NewIsolatedTab()
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	signInAtProvider(mctx, "mallory", "mallory-pw")
	if got := text(mctx, t, "main"); !strings.Contains(got, "mallory@evil.example may not use this site") {
		t.Fatalf("mallory's page: %q", got)
	}
	if _, err := b.Screenshot(mctx, "oauth-refused"); err != nil {
		t.Log(err)
	}

	// A callback of a sign-in no one started: a page that says so.
	navigate(mctx, t, base+"/@corp/callback?state=forged&code=forged")
	if got := text(mctx, t, "main"); !strings.Contains(got, "already used or is unknown") {
		t.Fatalf("a forged callback: %q", got)
	}

	// Alice signs out; her calls stop.
	navigate(ctx, t, base+"/@corp/signout")
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	err = chromedp.Do(sctx, chromedp.Click(chromedp.CSS(`button[type=submit]`)))
	if err == nil {
		deadline := time.Now().Add(10 * time.Second)
		for strings.Contains(location(ctx, t), "/@corp/signout") && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	scancel()
	if err != nil {
		t.Fatalf("sign out: %v", err)
	}
	if code, _ := callAPI(t, callPort, proxyKey); code != http.StatusUnauthorized {
		t.Fatalf("a call after sign-out: %d", code)
	}
	navigate(ctx, t, base+"/report")
	if loc := location(ctx, t); !strings.HasPrefix(loc, p.Issuer) {
		t.Fatalf("after sign-out /report is at %s, want the provider's sign-in", loc)
	}
}
