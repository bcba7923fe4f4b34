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
)

// forwardAuthStack is an internal tool behind a reverse proxy that asks
// ioproxy's /@/auth about each request, as the forward-auth examples set it
// up. TestForwardAuthBehindNginx and TestForwardAuthBehindCaddy build it
// alike and share its checks, so that what one proves of its proxy the
// other proves of its own; each adds what only its proxy does.
type forwardAuthStack struct {
	t *testing.T
	// proxy names the reverse proxy in messages, "nginx" or "Caddy".
	proxy string
	alice atmo.Account
	// tool is the internal tool, for the proxy to serve; toolAddr its
	// host:port and ioproxyAddr ioproxy's HTTP listener, for the proxy's
	// config.
	tool                  *whoBackend
	toolAddr, ioproxyAddr string
	// base is the proxy's URL, where everything is asked.
	base string
	// logs, if set, returns what the proxy logged, for the messages of
	// failures it may explain.
	logs func() string
}

// newForwardAuthStack starts the atmosphere with alice.test and bob.test,
// the tool, and ioproxy with two forward-auth hosts: front's (the proxy's
// address) for alice.test or the API key "ci", and "other.example.com"
// with a key of its own, "other", which must not open the tool. The hosts
// name no backend: the proxy serves the tool, ioproxy only answers
// /@/auth and the sign-in routes the proxy passes on, and the browser's
// redirect back from sign-in goes to the proxy's port. The caller starts
// the proxy on front.
func newForwardAuthStack(t *testing.T, proxy, front string) *forwardAuthStack {
	t.Helper()
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{
		{Handle: "alice.test", Password: alicePassword},
		{Handle: "bob.test", Password: bobPassword},
	}})
	_, frontPort, _ := strings.Cut(front, ":")
	ps := freePorts(t, 2)
	httpPort := ps[0]
	tool := newWhoBackend(t, 0)
	startProxy(t, strings.Replace(localSettings(t, a, httpPort, ps[1], ""), "ingress {", `ingress {
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
	return &forwardAuthStack{
		t:           t,
		proxy:       proxy,
		alice:       a.Accounts[0],
		tool:        tool,
		toolAddr:    strings.TrimPrefix(tool.URL, "http://"),
		ioproxyAddr: fmt.Sprintf("127.0.0.1:%d", httpPort),
		base:        "http://" + front,
	}
}

// diag is the proxy's logs, to end a message with, or nothing.
func (s *forwardAuthStack) diag() string {
	if s.logs == nil {
		return ""
	}
	return "\n" + s.logs()
}

// do asks the proxy, as a script would: without following redirects, and
// with hdr's Host, if it has one, as the request's.
func (s *forwardAuthStack) do(method, path string, hdr http.Header) (*http.Response, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.base+path, nil)
	if err != nil {
		s.t.Fatal(err)
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
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// basicAuth is a request's Authorization with an API key.
func basicAuth(name, key string) http.Header {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(name, key)
	return http.Header{"Authorization": r.Header["Authorization"]}
}

// scriptChecks are where the proxies differ in what a script meets.
type scriptChecks struct {
	// forge adds forged identity headers to a request's.
	forge func(http.Header) http.Header
	// checkKeyed checks what the tool saw of the script's request with
	// its key and forged headers.
	checkKeyed func()
	// challenge: the 401 for a wrong key must carry WWW-Authenticate.
	challenge bool
}

// checkScripts checks what a script (no browser, an API key) meets: 401
// without a key (a forged identity does not help), in with its key, and
// the tool sees the name but neither the key nor the forged headers (see
// c.checkKeyed); ioproxy's session cookie is kept from the tool, other
// cookies are not; a wrong key is refused, and so is another host's key
// with that host named as the Host, since the client cannot pick the
// ioproxy host that the proxy asks about.
func (s *forwardAuthStack) checkScripts(c scriptChecks) {
	t := s.t
	if resp, body := s.do("GET", "/report", c.forge(http.Header{})); resp.StatusCode != http.StatusUnauthorized || s.tool.requests() != 0 {
		t.Fatalf("a script without a key: %d (tool reached %d times)\n%s%s", resp.StatusCode, s.tool.requests(), body, s.diag())
	}
	if resp, body := s.do("GET", "/report", c.forge(basicAuth("ci", "ci-key"))); resp.StatusCode != 200 {
		t.Fatalf("a script with its key: %d\n%s%s", resp.StatusCode, body, s.diag())
	}
	c.checkKeyed()
	cookies := basicAuth("ci", "ci-key")
	cookies.Set("Cookie", "theme=dark; __Host-ioproxy-session=SECRET; ioproxy-session=SECRET; lang=en")
	if resp, _ := s.do("GET", "/report", cookies); resp.StatusCode != 200 {
		t.Fatalf("a script with its key and cookies: %d", resp.StatusCode)
	}
	if got := s.tool.lastSeen().Get("Cookie"); strings.Contains(got, "SECRET") || !strings.Contains(got, "theme=dark") || !strings.Contains(got, "lang=en") {
		t.Errorf("the tool got Cookie %q", got)
	}
	if resp, _ := s.do("GET", "/report", basicAuth("ci", "wrong")); resp.StatusCode != http.StatusUnauthorized || c.challenge && resp.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("a wrong key: %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	hdr := basicAuth("other", "other-key")
	hdr.Set("Host", "other.example.com")
	if resp, _ := s.do("GET", "/report", hdr); resp.StatusCode != http.StatusUnauthorized || s.tool.requests() != 2 {
		t.Fatalf("a script with another host's key, naming that Host: %d (tool reached %d times)", resp.StatusCode, s.tool.requests())
	}
}

// checkAlice checks the tool's page as alice's browser, signed in through
// the proxy, shows it: her identity headers arrived, ioproxy's session
// cookie did not.
func (s *forwardAuthStack) checkAlice(ctx context.Context) {
	t := s.t
	if got := text(ctx, t, "#did"); got != s.alice.DID {
		t.Fatalf("alice through %s: the tool saw User-Did %q, want %s%s", s.proxy, got, s.alice.DID, s.diag())
	}
	if got := text(ctx, t, "#handle"); got != "alice.test" {
		t.Errorf("User-Handle through %s = %q", s.proxy, got)
	}
	if got := text(ctx, t, "#session"); got != "true" {
		t.Errorf("Proxy-Session did not arrive through %s", s.proxy)
	}
	if got := text(ctx, t, "#cookie"); strings.Contains(got, "ioproxy-session") {
		t.Errorf("the tool got ioproxy's session cookie through %s: %q", s.proxy, got)
	}
}

// checkBobRefused signs bob.test in through the proxy in a tab of his own
// in b: he gets ioproxy's 403 page naming him, served through the proxy,
// none of his requests reach the tool, and the page leads him back to
// sign-in (he has no session to sign out of). His tab is returned, open
// until the test ends.
func (s *forwardAuthStack) checkBobRefused(b *browser.Browser) context.Context {
	t := s.t
	bctx, cancel, err := b.NewIsolatedTab()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	before := s.tool.requests()
	signInThroughProxy(bctx, t, b, s.base, "bob.test", bobPassword, "/report")
	if got := text(bctx, t, "#account-handle"); got != "@bob.test" {
		t.Fatalf("bob's 403 page through %s names %q", s.proxy, got)
	}
	if s.tool.requests() != before {
		t.Fatal("bob's requests reached the tool")
	}
	if _, err := b.Screenshot(bctx, strings.ToLower(s.proxy)+"-denied"); err != nil {
		t.Log(err)
	}
	sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
	err = chromedp.Do(sctx, chromedp.Click(chromedp.CSS(`#signin-again`)), chromedp.WaitVisible(chromedp.CSS(`#handle`)))
	scancel()
	if err != nil {
		t.Fatalf("bob goes back to sign-in through %s: %v", s.proxy, err)
	}
	return bctx
}

// exampleEdit replaces old in an example config with new; old must be
// there n times, or at least once if n is 0.
type exampleEdit struct {
	old, new string
	n        int
}

// example is examples/name, the file the README points at, with the edits
// made, so that the example itself runs with the test's addresses. An
// edit whose text is no longer there fails the test: the example changed
// under it.
func example(t *testing.T, name string, edits ...exampleEdit) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	src, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(src)
	for _, e := range edits {
		switch got := strings.Count(conf, e.old); {
		case e.n == 0 && got == 0:
			t.Fatalf("examples/%s no longer has %q", name, e.old)
		case e.n != 0 && got != e.n:
			t.Fatalf("examples/%s has %q %d times, want %d", name, e.old, got, e.n)
		}
		conf = strings.ReplaceAll(conf, e.old, e.new)
	}
	return conf
}
