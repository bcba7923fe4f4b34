package browser_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
)

// loopbackClient is the smallest OAuth client the PDS accepts: the
// localhost client id exception (no metadata to serve, no client
// authentication) and a pushed authorization request without DPoP. It only
// gets as far as the authorization code, which is all SignInAtPDS needs;
// ioproxy's own client is tested elsewhere.
type loopbackClient struct {
	pds      string
	clientID string
	redirect string
	codes    chan url.Values
}

func newLoopbackClient(t *testing.T, pdsURL string) *loopbackClient {
	c := &loopbackClient{pds: pdsURL, codes: make(chan url.Values, 8)}
	// The PDS only accepts 127.0.0.1 or [::1] redirect URIs for the
	// localhost client id, which httptest servers are.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		c.codes <- r.URL.Query()
		fmt.Fprint(w, "<title>callback</title>signed in")
	}))
	t.Cleanup(srv.Close)
	c.redirect = srv.URL + "/callback"
	c.clientID = "http://localhost?" + url.Values{
		"redirect_uri": {c.redirect},
		"scope":        {"atproto"},
	}.Encode()
	return c
}

// authorizeURL makes a pushed authorization request and returns the URL of
// the PDS's authorize page, and the state.
func (c *loopbackClient) authorizeURL(t *testing.T, loginHint string) (string, string) {
	t.Helper()
	verifier := make([]byte, 32)
	state := make([]byte, 16)
	rand.Read(verifier)
	rand.Read(state)
	challenge := sha256.Sum256([]byte(base64.RawURLEncoding.EncodeToString(verifier)))
	form := url.Values{
		"client_id":             {c.clientID},
		"response_type":         {"code"},
		"redirect_uri":          {c.redirect},
		"scope":                 {"atproto"},
		"state":                 {base64.RawURLEncoding.EncodeToString(state)},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
	}
	if loginHint != "" {
		form.Set("login_hint", loginHint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.pds+"/oauth/par", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("PAR: %v", err)
	}
	defer res.Body.Close()
	var par struct {
		RequestURI string `json:"request_uri"`
		Error      string `json:"error"`
		Desc       string `json:"error_description"`
	}
	if err := json.NewDecoder(res.Body).Decode(&par); err != nil || par.RequestURI == "" {
		t.Fatalf("PAR: status %s, %+v, %v", res.Status, par, err)
	}
	return c.pds + "/oauth/authorize?" + url.Values{
		"client_id":   {c.clientID},
		"request_uri": {par.RequestURI},
	}.Encode(), form.Get("state")
}

// expectCode waits for the redirect to the client and checks it.
func (c *loopbackClient) expectCode(t *testing.T, state string) {
	t.Helper()
	select {
	case q := <-c.codes:
		if q.Get("code") == "" || q.Get("state") != state || q.Get("iss") != c.pds {
			t.Errorf("callback query %v, want a code, state %q and iss %q", q, state, c.pds)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the browser never reached the client's redirect_uri")
	}
}

func navigate(t *testing.T, ctx context.Context, target string) {
	t.Helper()
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(target)); err != nil {
		t.Fatalf("open %s: %v; %s", target, err, browser.Describe(ctx))
	}
}

// TestSignInAtPDS drives the real PDS pages: with login_hint (password
// only), without it (welcome page, handle and password), a second sign-in on
// a browser that has a session, and a wrong password.
func TestSignInAtPDS(t *testing.T) {
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{
		{Handle: "alice.test", Password: "alice-password"},
		{Handle: "bob.test", Password: "bob-password"},
	}})
	b := browser.Start(t, browser.Options{StepTimeout: 20 * time.Second})
	client := newLoopbackClient(t, a.PDSURL)

	signIn := func(t *testing.T, ctx context.Context, hint, handle, password, shot string) error {
		t.Helper()
		target, state := client.authorizeURL(t, hint)
		navigate(t, ctx, target)
		if _, err := b.Screenshot(ctx, shot); err != nil {
			t.Error(err)
		}
		start := time.Now()
		var err error
		if handle == "" {
			err = b.SignInAtPDS(ctx, password)
		} else {
			err = b.SignInAtPDSAs(ctx, handle, password)
		}
		if err != nil {
			if _, serr := b.Screenshot(ctx, shot+"-failed"); serr != nil {
				t.Error(serr)
			}
			return err
		}
		t.Logf("signed in in %s", time.Since(start).Round(time.Millisecond))
		client.expectCode(t, state)
		return nil
	}

	t.Run("login_hint", func(t *testing.T) {
		if err := signIn(t, b.Ctx(), "alice.test", "", "alice-password", "login-hint"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("again on the same browser", func(t *testing.T) {
		if err := signIn(t, b.Ctx(), "alice.test", "", "alice-password", "again"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("handle typed", func(t *testing.T) {
		ctx, cancel, err := b.NewIsolatedTab()
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		if err := signIn(t, ctx, "", "bob.test", "bob-password", "handle-typed"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("handle needed", func(t *testing.T) {
		ctx, cancel, err := b.NewIsolatedTab()
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		err = signIn(t, ctx, "", "", "bob-password", "handle-needed")
		if err == nil || !strings.Contains(err.Error(), "SignInAtPDSAs") {
			t.Fatalf("err = %v, want one that says to use SignInAtPDSAs", err)
		}
	})
	t.Run("remembered account picker", func(t *testing.T) {
		ctx, cancel, err := b.NewIsolatedTab()
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		// Sign in once with "Remember this account on this device" ticked,
		// so that the next authorization offers the account picker.
		target, state := client.authorizeURL(t, "bob.test")
		navigate(t, ctx, target)
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		err = chromedp.Do(cctx, chromedp.Click(chromedp.CSS(`input[name="remember"]`)))
		ccancel()
		if err != nil {
			t.Fatalf("tick remember: %v; %s", err, browser.Describe(ctx))
		}
		if err := b.SignInAtPDS(ctx, "bob-password"); err != nil {
			t.Fatal(err)
		}
		client.expectCode(t, state)

		target, _ = client.authorizeURL(t, "")
		navigate(t, ctx, target)
		if _, err := b.Screenshot(ctx, "picker"); err != nil {
			t.Error(err)
		}
		if got := browser.Describe(ctx); !strings.Contains(got, "Another account") {
			t.Errorf("no account picker shown: %s", got)
		}
		if err := signIn(t, ctx, "", "bob.test", "bob-password", "picker-signin"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		ctx, cancel, err := b.NewIsolatedTab()
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		err = signIn(t, ctx, "bob.test", "", "not-the-password", "wrong-password")
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("err = %v, want the PDS's refusal", err)
		}
		t.Logf("error: %v", err)
	})
}
