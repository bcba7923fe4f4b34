package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/sessions"
)

const bobPassword = "bob-password-1"

// apiKeyEntry makes an htpasswd-style bcrypt entry for apikey_auth.
func apiKeyEntry(t *testing.T, name, key string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(key), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return name + ":" + string(h)
}

// lastSeen is the headers of the backend's last request.
func (b *whoBackend) lastSeen() http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		return nil
	}
	return b.seen[len(b.seen)-1]
}

func (b *whoBackend) requests() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.seen)
}

// location is the browser's current URL.
func location(ctx context.Context, t *testing.T) string {
	t.Helper()
	loc, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// TestInternalToolAdmitsOneAccount puts an internal tool behind ioproxy
// with require_atproto naming alice.test: alice gets in, bob (a real
// account of the same PDS) signs in and is refused with a page naming his
// account, a script gets in with an API key, and when alice's handle
// changes at the PDS, her session is refused after its next refresh.
func TestInternalToolAdmitsOneAccount(t *testing.T) {
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{
		{Handle: "alice.test", Password: alicePassword},
		{Handle: "bob.test", Password: bobPassword},
	}})
	alice, bob := a.Accounts[0], a.Accounts[1]
	ps := freePorts(t, 3)
	local := ps[0]
	tool := newWhoBackend(t, 0)
	srv := startProxy(t, localSettings(t, a, ps[1], ps[2], "")+fmt.Sprintf(`
host "localhost" {
  name    = "Internal tool"
  backend = %q
  atproto { local = %d }
  require_atproto {
    handles      = ["alice.test"]
    public_paths = ["/healthz"]
  }
  apikey_auth {
    users = [%q]
  }
  tls { mode = "off" }
}
call "web" {
  port     = %d
  endpoint = "localhost"
}
`, tool.URL, local, apiKeyEntry(t, "ci", "s3cret:with-colon"), local))
	base := fmt.Sprintf("http://127.0.0.1:%d", local)

	// Programs: 401 without credentials, in with the key, public paths open.
	resp, err := http.Get(base + "/report")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") || tool.requests() != 0 {
		t.Fatalf("a script without credentials: %d %q, backend reached %d times", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tool.requests())
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/report", nil)
	req.SetBasicAuth("ci", "s3cret:with-colon")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if seen := tool.lastSeen(); resp.StatusCode != 200 || seen.Get("Apikey-User") != "ci" || seen.Get("Authorization") != "" {
		t.Fatalf("a script with its key: %d, backend saw Apikey-User %q Authorization %q", resp.StatusCode, seen.Get("Apikey-User"), seen.Get("Authorization"))
	}
	req.SetBasicAuth("ci", "wrong")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a wrong key: %d", resp.StatusCode)
	}
	resp, err = http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("public path: %d", resp.StatusCode)
	}

	// A browser is sent to sign-in, and alice gets in.
	b := browser.Start(t, browser.Options{})
	ctx := b.Ctx()
	navigate(ctx, t, base+"/report?week=48")
	if loc := location(ctx, t); !strings.HasPrefix(loc, base+"/@/signin?redirect=%2Freport%3Fweek%3D48") {
		t.Fatalf("a signed-out browser landed on %s", loc)
	}
	signInThroughProxy(ctx, t, b, base, "alice.test", alicePassword, "/report?week=48")
	if got := text(ctx, t, "#did"); got != alice.DID {
		t.Fatalf("alice: the tool saw User-Did %q, want %s", got, alice.DID)
	}

	// Bob, in a window of his own, signs in and is refused by name.
	bctx, cancel, err := b.NewIsolatedTab()
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	before := tool.requests()
	signInThroughProxy(bctx, t, b, base, "bob.test", bobPassword, "/report")
	if got := text(bctx, t, "#account-handle"); got != "@bob.test" {
		t.Fatalf("bob's 403 page names %q", got)
	}
	if got := text(bctx, t, "#account-did"); got != bob.DID {
		t.Errorf("bob's 403 page shows DID %q, want %s", got, bob.DID)
	}
	if _, err := b.Screenshot(bctx, "access-denied"); err != nil {
		t.Log(err)
	}
	if tool.requests() != before {
		t.Fatalf("bob's requests reached the tool")
	}
	// He got no session (he could do nothing with one), and the page
	// leads back to sign-in, for another account.
	for _, s := range listSessions(srv.Store()) {
		if s.DID == bob.DID {
			t.Fatal("bob, whom the rules refuse, got a session")
		}
	}
	sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
	err = chromedp.Do(sctx, chromedp.Click(chromedp.CSS(`#signin-again`)), chromedp.WaitVisible(chromedp.CSS(`#handle`)))
	scancel()
	if err != nil {
		t.Fatalf("bob goes back to sign-in: %v", err)
	}
	if loc := location(bctx, t); !strings.HasPrefix(loc, base+"/@/signin?redirect=%2Freport") {
		t.Errorf("after the refusal bob is on %s", loc)
	}

	// Alice's handle changes at her PDS. Her session is re-checked at its
	// next refresh (ingress starts one when the access token has expired)
	// and then refused, since the rule names her old handle.
	token, err := a.Login(ctx, alice)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Post(ctx, token, "com.atproto.identity.updateHandle", map[string]string{"handle": "alice2.test"}, nil); err != nil {
		t.Fatal(err)
	}
	var sess sessions.Session
	for _, s := range listSessions(srv.Store()) {
		if s.DID == alice.DID {
			sess = s
		}
	}
	if _, err := srv.Store().Update(context.Background(), sess.ID, func(s *sessions.Session) error {
		s.TokenExpiry = time.Now().Add(-time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		navigate(ctx, t, base+"/report")
		cur, _ := getSession(srv.Store(), sess.ID)
		if cur.Handle == "alice2.test" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's session still has handle %q after the refresh", cur.Handle)
		}
		time.Sleep(200 * time.Millisecond)
	}
	navigate(ctx, t, base+"/report")
	if got := text(ctx, t, "#account-handle"); got != "@alice2.test" {
		t.Fatalf("after her handle changed alice sees %q", got)
	}
}
