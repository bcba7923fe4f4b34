package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/chromedp/chromedp"
	"github.com/ioproxy/ioproxy/cmd/statusphere/app"
	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/e2e/localjetstream"
)

// statusNSID is the record type and collection of a Statusphere status. The
// app's Lexicon packages are internal to cmd/statusphere, so this test reads
// the PDS as any other client would.
const statusNSID = "xyz.statusphere.status"

// TestStatusphere runs the Statusphere app behind ioproxy, configured as
// in examples/local.hcl, against the real PDS: sign in through the app's
// own login page, click an emoji, see it on the page as yours, and find
// the record in the PDS.
func TestStatusphere(t *testing.T) {
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{
		{Handle: "alice.test", Password: alicePassword},
		{Handle: "bob.test", Password: "bob-password-1"},
	}})
	alice, bob := a.Accounts[0], a.Accounts[1]
	js := localjetstream.New(localjetstream.Config{PDSURL: a.PDSURL, Collections: []string{statusNSID}, Interval: 100 * time.Millisecond})
	jsSrv := httptest.NewServer(js)
	defer jsSrv.Close()

	appLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ps := freePorts(t, 4)
	local, callPort := ps[0], ps[1]
	startProxy(t, localSettings(t, a, ps[2], ps[3], "")+fmt.Sprintf(`
host "localhost" {
  name    = "statusphere"
  backend = %q
  atproto {
    name   = "Statusphere"
    scopes = ["atproto", "repo:xyz.statusphere.status"]
    local  = %d
  }
}
call "statusphere" {
  name     = "statusphere"
  port     = %d
  endpoint = "localhost"
  insecure = true
}
call "atproto" {
  name     = "ATProto"
  port     = %d
  endpoint = "@"
  operation "CreateRecord" {
    method = "POST"
    path   = "/xrpc/com.atproto.repo.createRecord"
  }
}
`, appLn.Addr().String(), local, local, callPort))

	ctx, cancel := context.WithCancel(context.Background())
	jsDone := make(chan error, 1)
	go func() { jsDone <- js.Run(ctx) }()
	appDone := make(chan error, 1)
	go func() {
		appDone <- app.Run(ctx, app.Config{
			Listener:     appLn,
			ProxyURL:     fmt.Sprintf("http://127.0.0.1:%d", callPort),
			JetstreamURL: "ws" + strings.TrimPrefix(jsSrv.URL, "http") + "/subscribe",
			DBPath:       filepath.Join(t.TempDir(), "statusphere.sqlite"),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-appDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("statusphere: %v", err)
		}
		<-jsDone
	})

	b := browser.Start(t, browser.Options{})
	bctx := b.Ctx()
	base := fmt.Sprintf("http://127.0.0.1:%d", local)

	// The app's own login page posts the handle to /@/signin.
	navigate(bctx, t, base+"/login")
	sctx, scancel := context.WithTimeout(bctx, 30*time.Second)
	err = chromedp.Do(sctx,
		chromedp.SetValue(chromedp.CSS(`input[name=handle]`), "alice.test"),
		chromedp.Click(chromedp.CSS(`form.login-form button[type=submit]`)),
	)
	scancel()
	if err != nil {
		t.Fatalf("submit the app's login form: %v", err)
	}
	if err := b.SignInAtPDS(bctx, alicePassword); err != nil {
		t.Fatalf("sign in at the PDS: %v", err)
	}
	if got := text(bctx, t, "#header"); !strings.Contains(got, "Statusphere") {
		t.Fatalf("did not land on the app: %q", got)
	}

	const emoji = "🦋"
	sctx, scancel = context.WithTimeout(bctx, 30*time.Second)
	err = chromedp.Do(sctx,
		chromedp.Click(chromedp.CSS(`button[name=status][value="`+emoji+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button.status-option.selected`)),
	)
	scancel()
	if err != nil {
		t.Fatalf("click %s: %v\n%s", emoji, err, browser.Describe(bctx))
	}
	if got := text(bctx, t, `button.status-option.selected`); got != emoji {
		t.Errorf("selected status %q, want %s", got, emoji)
	}
	line := text(bctx, t, `.status-line`)
	if !strings.Contains(line, "@alice.test") || !strings.Contains(line, emoji) {
		t.Errorf("the newest status line is %q; want alice's %s", line, emoji)
	}
	// Bob sets a status with another client, straight on the PDS. It
	// reaches the app through Jetstream and the ingester, and shows under
	// his handle, which the app checked through the calling port.
	token, err := a.Login(context.Background(), bob)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Post(context.Background(), token, "com.atproto.repo.createRecord", map[string]any{
		"repo": bob.DID, "collection": statusNSID,
		"record": map[string]any{"$type": statusNSID, "status": "🚀", "createdAt": time.Now().UTC().Format(time.RFC3339Nano)},
	}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		navigate(bctx, t, base+"/")
		if line := text(bctx, t, `.status-line`); strings.Contains(line, "@bob.test") && strings.Contains(line, "🚀") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's status never reached the page through Jetstream:\n%s", browser.Describe(bctx))
		}
		time.Sleep(300 * time.Millisecond)
	}

	if path, err := b.Screenshot(bctx, "statusphere-home"); err != nil {
		t.Errorf("screenshot: %v", err)
	} else {
		t.Logf("screenshot: %s", path)
	}

	// The record is in alice's repository on the PDS: a valid status record
	// (its exact "$type", "status" and a Lexicon datetime "createdAt").
	out := struct{ Records []pdsRecord }{listStatuses(t, a.PDSURL, alice.DID)}
	found := false
	var seen []string
	for _, r := range out.Records {
		seen = append(seen, r.URI+" "+string(r.Value))
		var rec map[string]any
		if err := json.Unmarshal(r.Value, &rec); err != nil {
			continue
		}
		createdAt, _ := rec["createdAt"].(string)
		_, err := syntax.ParseDatetime(createdAt)
		if err == nil && rec["$type"] == statusNSID && rec["status"] == emoji && strings.HasPrefix(r.URI, "at://"+alice.DID+"/") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no %s status in alice's repo: %q", emoji, seen)
	}
}
