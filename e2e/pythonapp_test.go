package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/chromedp/chromedp"
	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/internal/proc"
	"github.com/ioproxy/ioproxy/internal/tail"
)

const (
	// pythonRequireEnv turns a missing python3 from a skip into a failure;
	// ./scripts/test sets it, so that CI cannot pass by skipping.
	pythonRequireEnv = "IOPROXY_REQUIRE_PYTHON"
	// pythonReadyTimeout bounds the wait for the app to print its address
	// and answer; the standard library starts in well under a second.
	pythonReadyTimeout = 15 * time.Second
	// pythonStopGrace is how long SIGTERM (which ends Python at once) may
	// take before the process group is killed.
	pythonStopGrace = 5 * time.Second
)

// pythonListening is the app's first line: the port it was given, or with
// 0 the one the system picked, so that no other process can take it
// between the test's choice and the app's bind.
var pythonListening = regexp.MustCompile(`listening on http://(127\.0\.0\.1:\d+)`)

// startPythonApp runs examples/python-app/app.py with python3 on a free
// 127.0.0.1 port, calling the PDS through callURL, and returns its
// address once it answers with its signed-out page. It stops when the
// test ends.
func startPythonApp(t *testing.T, callURL string) string {
	t.Helper()
	bin := proc.Binary(t, "python3", "/usr/bin/python3", pythonRequireEnv)
	script, err := filepath.Abs(filepath.Join("..", "examples", "python-app", "app.py"))
	if err != nil {
		t.Fatal(err)
	}
	logs := tail.New(256 << 10)
	cmd := exec.Command(bin, script, "0")
	cmd.Env = append(os.Environ(), "IOPROXY_CALL_URL="+callURL, "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1")
	cmd.Dir = t.TempDir() // before the stop's cleanup, so removed after it
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = pythonStopGrace
	p := proc.Start(t, "python app", cmd)
	p.StopOnCleanup(t, syscall.SIGTERM, pythonStopGrace, func() { t.Logf("python app output:\n%s", logs.String()) })

	client := &http.Client{Timeout: 2 * time.Second}
	var addr string
	probe := func() error {
		if addr == "" {
			m := pythonListening.FindStringSubmatch(logs.String())
			if m == nil {
				return fmt.Errorf("no %q line after %s", "listening on http://127.0.0.1:PORT", pythonReadyTimeout)
			}
			addr = m[1]
		}
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return fmt.Errorf("GET / after %s: %w", pythonReadyTimeout, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `href="/@/signin?redirect=/"`) {
			return fmt.Errorf("GET / after %s: %s, not the app's signed-out page: %.200q", pythonReadyTimeout, resp.Status, body)
		}
		return nil
	}
	if err := p.WaitProbe(probe, nil, pythonReadyTimeout); err != nil {
		t.Fatalf("python app: %v\noutput:\n%s", err, logs.String())
	}
	return addr
}

// TestPythonApp proves the out-of-process contract with an app that has
// no AT Protocol code: examples/python-app, Python's standard library
// only, behind ioproxy with the real PDS. Sign in through the app's link,
// see the handle from User-Handle, post a status through the app's form
// (createRecord through the calling port with User-Did and
// Proxy-Session), see it listed back and find it in the PDS, then sign
// out through the app's form.
func TestPythonApp(t *testing.T) {
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{{Handle: "alice.test", Password: alicePassword}}})
	alice := a.Accounts[0]
	ps := freePorts(t, 4)
	local, callPort := ps[0], ps[1]
	appAddr := startPythonApp(t, fmt.Sprintf("http://127.0.0.1:%d", callPort))
	// As in examples/python-app/README.md.
	startProxy(t, localSettings(t, a, ps[2], ps[3], "")+fmt.Sprintf(`
host "localhost" {
  name    = "python-app"
  backend = %q
  atproto {
    name   = "Statusphere (Python)"
    scopes = ["atproto", "repo:xyz.statusphere.status"]
    local  = %d
  }
}
call "web" {
  port     = %d
  endpoint = "localhost"
}
call "atproto" {
  port     = %d
  endpoint = "@"
}
`, appAddr, local, local, callPort))

	b := browser.Start(t, browser.Options{})
	ctx := b.Ctx()
	base := fmt.Sprintf("http://127.0.0.1:%d", local)
	at := func() string {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return location(lctx, t)
	}

	// Signed out, the app offers its sign-in link, which is ioproxy's.
	navigate(ctx, t, base+"/")
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := chromedp.Do(sctx,
		chromedp.Click(chromedp.CSS(`a#signin`)),
		chromedp.SetValue(chromedp.CSS(`input#handle`), "alice.test"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
	)
	cancel()
	if err != nil {
		t.Fatalf("follow the app's sign-in link and submit ioproxy's form: %v\n%s", err, browser.Describe(ctx))
	}
	if err := b.SignInAtPDS(ctx, alicePassword); err != nil {
		t.Fatalf("sign in at the PDS: %v", err)
	}
	if got := text(ctx, t, `strong#handle`); got != "alice.test" {
		t.Fatalf("the app shows handle %q, want alice.test\n%s", got, browser.Describe(ctx))
	}
	if got := text(ctx, t, `code#did`); got != alice.DID {
		t.Errorf("the app shows DID %q, want %s", got, alice.DID)
	}
	if got := text(ctx, t, `#empty`); got != "No status yet." {
		t.Errorf("before posting the app lists %q", got)
	}

	const emoji = "🦋"
	sctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	err = chromedp.Do(sctx,
		chromedp.SetValue(chromedp.CSS(`#status-form input[name=status]`), emoji),
		chromedp.Click(chromedp.CSS(`#status-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#statuses li`)),
	)
	cancel()
	if err != nil {
		t.Fatalf("post %s through the app's form: %v\n%s", emoji, err, browser.Describe(ctx))
	}
	if got := text(ctx, t, `#statuses li`); !strings.HasPrefix(got, emoji+" ") {
		t.Errorf("the app lists %q, want %s first", got, emoji)
	}
	if loc := at(); loc != base+"/" {
		t.Errorf("after posting the browser is on %s, want the app's / (post, then redirect)", loc)
	}
	if path, err := b.Screenshot(ctx, "python-app-home"); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		t.Logf("screenshot: %s", path)
	}

	// The record is in alice's repository, read from the PDS itself: the
	// record the app wrote, with a Lexicon datetime.
	out := struct{ Records []pdsRecord }{listStatuses(t, a.PDSURL, alice.DID)}
	if len(out.Records) != 1 {
		t.Fatalf("alice's repo holds %d statuses, want the 1 posted: %+v", len(out.Records), out.Records)
	}
	var rec map[string]any
	if err := json.Unmarshal(out.Records[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	createdAt, _ := rec["createdAt"].(string)
	if _, err := syntax.ParseDatetime(createdAt); err != nil || rec["$type"] != statusNSID || rec["status"] != emoji || len(rec) != 3 ||
		!strings.HasPrefix(out.Records[0].URI, "at://"+alice.DID+"/"+statusNSID+"/") {
		t.Errorf("record %s %s: want exactly $type %s, status %s and a datetime createdAt (%v)", out.Records[0].URI, out.Records[0].Value, statusNSID, emoji, err)
	}

	// A failed call is shown as the calling port's XRPC error. A request
	// straight to the app (which only ioproxy should reach) with a forged
	// Proxy-Session gets ioproxy's AuthRequired on the page.
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+appAddr+"/status", strings.NewReader(url.Values{"status": {emoji}}.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("User-Did", alice.DID)
	req.Header.Set("User-Handle", "alice.test")
	req.Header.Set("Proxy-Session", "forged")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !regexp.MustCompile(`<p id="error"[^>]*>Could not post your status: AuthRequired: .+\(401\)</p>`).Match(page) {
		t.Errorf("a forged Proxy-Session: %s, want 401 with AuthRequired shown:\n%s", resp.Status, page)
	}

	// Sign out with the app's own form, which posts to /@/signout.
	sctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	err = chromedp.Do(sctx,
		chromedp.Click(chromedp.CSS(`#signout button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`a#signin`)),
	)
	cancel()
	if err != nil {
		t.Fatalf("sign out through the app's form: %v\n%s", err, browser.Describe(ctx))
	}
	if got := text(ctx, t, `body`); !strings.Contains(got, "You are not signed in.") || strings.Contains(got, alice.DID) {
		t.Errorf("after sign-out the page reads %q", got)
	}
	if loc := at(); loc != base+"/" {
		t.Errorf("after sign-out the browser is on %s, want the app's /", loc)
	}
}
