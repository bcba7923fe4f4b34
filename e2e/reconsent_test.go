package e2e

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/ingress"
)

// TestGranularScopesAndReconsent runs issue #16 end to end against the real
// PDS in Chromium: a host asks for granular scopes only; the PDS grants
// them on its consent page and the backend sees the grant in User-Scope;
// the calling port writes a status record but the PDS refuses a blob
// upload, and that refusal (403 ScopeMissingError) reaches the app
// unchanged. The operator then adds blob:image/* and restarts ioproxy on
// the same data dir: the old session goes on with its old grant, until
// the app sends the user to /@/signin, which goes straight to the PDS
// (login_hint the account) and back with a new session that may upload.
func TestGranularScopesAndReconsent(t *testing.T) {
	const (
		statusScope = "repo:xyz.statusphere.status"
		blobScope   = "blob:image/*"
	)
	a := atmo.Start(t, atmo.Options{Accounts: []atmo.Account{{Handle: "alice.test", Password: alicePassword}}})
	alice := a.Accounts[0]
	ps := freePorts(t, 4)
	local, callPort, httpPort, httpsPort := ps[0], ps[1], ps[2], ps[3]
	dataDir := filepath.Join(t.TempDir(), "data") // kept across the restart
	backend := newWhoBackend(t, callPort)
	config := func(scopes ...string) string {
		quoted, _ := json.Marshal(scopes) // a JSON list of strings is an HCL list
		return fmt.Sprintf(`
data_dir = %q
ingress {
  http  = "127.0.0.1:%d"
  https = "127.0.0.1:%d"
}
identity {
  plc_url         = %q
  handle_resolver = %q
  allow_insecure  = true
}
host "localhost" {
  name    = "who"
  backend = %q
  atproto {
    name   = "Who"
    scopes = %s
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
`, dataDir, httpPort, httpsPort, a.PLCURL, a.PDSURL, backend.URL, quoted, local, local, callPort)
	}

	// 1. The host asks for the status collection only.
	srv := startProxy(t, config("atproto", statusScope))

	b := browser.Start(t, browser.Options{})
	ctx := b.Ctx()
	base := fmt.Sprintf("http://127.0.0.1:%d", local)
	fail := func(format string, args ...any) {
		t.Helper()
		shot, err := b.Screenshot(ctx, "failed")
		if err != nil {
			shot = err.Error()
		}
		t.Fatalf(format+"\n%s\nscreenshot: %s", append(args, browser.Describe(ctx), shot)...)
	}

	// 2. Sign in through ioproxy's form and the PDS's pages; the PDS must
	// ask for consent to the granular permission.
	w := watchPDSPages(ctx, a.PDSURL)
	signInThroughProxy(ctx, t, b, base, "alice.test", alicePassword, "/")
	views := w.stop()
	t.Logf("first sign-in: pages seen: %s", views)
	if !views.sawConsent() {
		fail("the PDS showed no consent page at the first sign-in; pages seen: %s", views)
	}
	t.Logf("first consent page: %q", views.consentText())
	if got := text(ctx, t, "#did"); got != alice.DID {
		fail("after sign-in the backend saw User-Did %q, want %q", got, alice.DID)
	}
	granted := strings.Fields(text(ctx, t, "#scope"))
	t.Logf("first grant (User-Scope): %q", granted)
	if !slices.Contains(granted, statusScope) || !slices.Contains(granted, "atproto") || slices.Contains(granted, "transition:generic") {
		fail("User-Scope %q: want atproto and %s, granted as asked, and no transition:generic", granted, statusScope)
	}
	if slices.Contains(granted, blobScope) {
		fail("User-Scope %q holds %s, which the host did not ask for", granted, blobScope)
	}
	oldList := listSessions(srv.Store())
	if len(oldList) != 1 {
		t.Fatalf("%d sessions after the sign-in, want 1", len(oldList))
	}
	old := oldList[0]
	oldKey := backend.last(t).Get("Proxy-Session")
	if oldKey != old.ProxyKey {
		t.Fatalf("the backend's Proxy-Session is not the session's proxy key")
	}
	if got := sessionCookie(ctx, t, base); got != old.ID {
		t.Fatalf("the browser's session cookie is not the stored session (%d bytes)", len(got))
	}

	// 3. Through the calling port: the status record is written, the blob
	// is refused by the PDS, and its answer passed on as it was.
	client := &http.Client{Timeout: 30 * time.Second}
	status, body := createStatus(ctx, t, client, callPort, alice.DID, oldKey)
	if status != http.StatusOK {
		t.Fatalf("createRecord with the granular grant: %d %s", status, body)
	}
	blob := tinyPNG(t)
	resp, body := uploadBlob(ctx, t, client, callPort, alice.DID, oldKey, blob)
	t.Logf("uploadBlob without %s: %d %s %s", blobScope, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	var xe struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if resp.StatusCode != http.StatusForbidden || json.Unmarshal(body, &xe) != nil || xe.Error != "ScopeMissingError" {
		t.Fatalf("uploadBlob without %s: %d %s; want the PDS's 403 ScopeMissingError", blobScope, resp.StatusCode, body)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || !strings.Contains(xe.Message, "blob:") {
		t.Errorf("uploadBlob refusal: Content-Type %q, message %q; want the PDS's JSON naming the blob scope", resp.Header.Get("Content-Type"), xe.Message)
	}

	// 4. The operator adds blob:image/* and restarts ioproxy on the same
	// data dir. The session goes on, with the grant it had.
	srv.Close()
	srv = startProxy(t, config("atproto", statusScope, blobScope))
	navigate(ctx, t, base+"/")
	if got := text(ctx, t, "#did"); got != alice.DID {
		fail("after the restart the backend saw User-Did %q, want %q (the old session)", got, alice.DID)
	}
	if got := strings.Fields(text(ctx, t, "#scope")); slices.Contains(got, blobScope) || !slices.Contains(got, statusScope) {
		fail("after the restart User-Scope is %q; want the old grant, without %s", got, blobScope)
	}
	if status, body := createStatus(ctx, t, client, callPort, alice.DID, oldKey); status != http.StatusOK {
		t.Fatalf("createRecord with the old session after the restart: %d %s", status, body)
	}

	// 5. The app sends the user to /@/signin: ioproxy goes straight to the
	// PDS (no form of its own) and comes back with the new grant.
	hist, err := chromedp.Run(withTimeout(ctx, t, 10*time.Second), chromedp.NavigationEntries())
	if err != nil {
		t.Fatal(err)
	}
	start := hist.CurrentIndex
	w = watchPDSPages(ctx, a.PDSURL)
	navigate(ctx, t, base+"/@/signin?redirect=/after")
	err = b.SignInAtPDS(withTimeout(ctx, t, 2*time.Minute), alicePassword)
	views = w.stop()
	t.Logf("re-consent: pages seen: %s", views)
	if err != nil {
		fail("re-consent at the PDS: %v; pages seen: %s", err, views)
	}
	if views.sawConsent() {
		t.Logf("re-consent page: %q", views.consentText())
	}
	for _, v := range views {
		// login_hint named the account: the PDS asks for nothing but the
		// password (or not even that).
		if v.View == "signin" {
			t.Logf("re-consent: the PDS's sign-in form names %q (editable %t)", v.Username, v.UsernameEditable)
		}
		if v.View == "signin" && (v.UsernameEditable || (v.Username != "alice.test" && v.Username != alice.DID)) {
			t.Errorf("re-consent: the PDS's sign-in form asks for the account (username %q, editable %t); want it named by login_hint", v.Username, v.UsernameEditable)
		}
	}
	if got := text(ctx, t, "#did"); got != alice.DID {
		fail("after re-consent the backend saw User-Did %q, want %q", got, alice.DID)
	}
	if loc, _ := chromedp.Run(withTimeout(ctx, t, 10*time.Second), chromedp.Location()); loc != base+"/after" {
		fail("re-consent landed on %s, want %s/after", loc, base)
	}
	regranted := strings.Fields(text(ctx, t, "#scope"))
	t.Logf("grant after re-consent (User-Scope): %q", regranted)
	if !slices.Contains(regranted, blobScope) || !slices.Contains(regranted, statusScope) {
		fail("after re-consent User-Scope is %q; want %s and %s", regranted, statusScope, blobScope)
	}
	// Straight to the PDS: the tab went from the page it was on to the
	// PDS's authorize page, and never showed ioproxy's sign-in form.
	hist, err = chromedp.Run(withTimeout(ctx, t, 10*time.Second), chromedp.NavigationEntries())
	if err != nil {
		t.Fatal(err)
	}
	var trail []string
	for i, e := range hist.Entries {
		if int64(i) > start {
			trail = append(trail, e.URL)
		}
	}
	if len(trail) == 0 || !strings.HasPrefix(trail[0], a.PDSURL+"/oauth/authorize") {
		t.Errorf("after /@/signin the tab went to %q; want the PDS's /oauth/authorize first", trail)
	}
	for _, u := range append(trail, views.urls()...) {
		if p, err := url.Parse(u); err == nil && "http://"+p.Host == base && p.Path == "/@/signin" {
			t.Errorf("the tab showed ioproxy's sign-in page %s during re-consent (pages %q)", u, trail)
		}
	}
	// The new session replaced the old one.
	list := listSessions(srv.Store())
	if len(list) != 1 {
		t.Fatalf("%d sessions after re-consent, want 1 (the new one)", len(list))
	}
	fresh := list[0]
	if fresh.ID == old.ID || fresh.ProxyKey == old.ProxyKey {
		t.Fatalf("the session after re-consent is the old one")
	}
	if _, ok := getSession(srv.Store(), old.ID); ok {
		t.Errorf("the old session is still in the store")
	}
	if got := sessionCookie(ctx, t, base); got != fresh.ID {
		t.Errorf("the browser's session cookie is not the new session (old: %t)", got == old.ID)
	}
	if !slices.Contains(strings.Fields(fresh.Scope), blobScope) || fresh.DID != alice.DID {
		t.Errorf("new session: DID %s, scope %q", fresh.DID, fresh.Scope)
	}
	newKey := backend.last(t).Get("Proxy-Session")
	if newKey != fresh.ProxyKey {
		t.Fatalf("the backend's Proxy-Session is not the new session's proxy key")
	}

	// 6. The new session uploads the blob; the old one is gone.
	resp, body = uploadBlob(ctx, t, client, callPort, alice.DID, newKey, blob)
	var up struct {
		Blob struct {
			Type string `json:"$type"`
			Ref  struct {
				Link string `json:"$link"`
			} `json:"ref"`
			MimeType string `json:"mimeType"`
			Size     int    `json:"size"`
		} `json:"blob"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &up) != nil || up.Blob.Ref.Link == "" || up.Blob.MimeType != "image/png" || up.Blob.Size != len(blob) {
		t.Fatalf("uploadBlob with %s: %d %s; want 200 with a blob ref", blobScope, resp.StatusCode, body)
	}
	t.Logf("uploadBlob with %s: %s", blobScope, body)
	resp, body = uploadBlob(ctx, t, client, callPort, alice.DID, oldKey, blob)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("uploadBlob with the old session's Proxy-Session: %d %s; want 401, the session ended", resp.StatusCode, body)
	}
}

// withTimeout derives a context that the test's end cancels at the latest.
func withTimeout(ctx context.Context, t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(ctx, d)
	t.Cleanup(cancel)
	return ctx
}

// last is the newest request headers the backend saw.
func (b *whoBackend) last(t *testing.T) http.Header {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.seen) == 0 {
		t.Fatal("the backend saw no request")
	}
	return b.seen[len(b.seen)-1]
}

// sessionCookie is the value of ioproxy's session cookie in the browser
// for base, or "".
func sessionCookie(ctx context.Context, t *testing.T, base string) string {
	t.Helper()
	res, err := chromedp.Call(withTimeout(ctx, t, 10*time.Second), network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/"}})
	if err != nil {
		t.Fatalf("read the browser's cookies: %v", err)
	}
	for _, c := range res.Cookies {
		if c.Name == ingress.CookieName {
			return c.Value
		}
	}
	return ""
}

// tinyPNG is a real 1×1 PNG.
func tinyPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	img.Set(0, 0, color.NRGBA{R: 0x1d, G: 0x9b, B: 0xf0, A: 0xff})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// callPDS sends one request through the calling port as the app would,
// with the identity headers ioproxy gave it.
func callPDS(ctx context.Context, t *testing.T, client *http.Client, callPort int, did, proxyKey, nsid, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/xrpc/%s", callPort, nsid), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Did", did)
	req.Header.Set("Proxy-Session", proxyKey)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s through the calling port: %v", nsid, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		t.Fatalf("POST %s through the calling port: read the answer: %v", nsid, err)
	}
	return resp, out
}

func createStatus(ctx context.Context, t *testing.T, client *http.Client, callPort int, did, proxyKey string) (int, []byte) {
	t.Helper()
	rec, _ := json.Marshal(map[string]any{
		"repo":       did,
		"collection": statusNSID,
		"record":     map[string]any{"$type": statusNSID, "status": "🦋", "createdAt": time.Now().UTC().Format(time.RFC3339Nano)},
	})
	resp, body := callPDS(ctx, t, client, callPort, did, proxyKey, "com.atproto.repo.createRecord", "application/json", rec)
	return resp.StatusCode, body
}

func uploadBlob(ctx context.Context, t *testing.T, client *http.Client, callPort int, did, proxyKey string, blob []byte) (*http.Response, []byte) {
	t.Helper()
	return callPDS(ctx, t, client, callPort, did, proxyKey, "com.atproto.repo.uploadBlob", "image/png", blob)
}

// probeJS is SignInAtPDS's own reading of the PDS's OAuth pages.
//
//go:embed browser/probe.js
var probeJS string

// pdsView is what probeJS reports of a page, the part this test reads.
type pdsView struct {
	URL              string `json:"url"`
	View             string `json:"view"`
	Text             string `json:"text"`
	Username         string `json:"username"`
	UsernameEditable bool   `json:"usernameEditable"`
}

// pageWatcher records, beside SignInAtPDS, which pages the tab shows: it
// only reads the page, so that whether the PDS asked for consent can be
// checked without driving the PDS's pages a second way.
type pageWatcher struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	seen pageViews
}

// pageViews are the pages seen, in order, one entry per change.
type pageViews []pdsView

func watchPDSPages(ctx context.Context, pdsURL string) *pageWatcher {
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	w := &pageWatcher{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			pctx, pcancel := context.WithTimeout(wctx, 2*time.Second)
			v, err := chromedp.Run(pctx, chromedp.Evaluate[pdsView](probeJS))
			pcancel()
			if err == nil {
				if !strings.HasPrefix(v.URL, pdsURL) {
					v.View, v.Text = "", "" // not the PDS: the URL is what counts
				}
				w.mu.Lock()
				if n := len(w.seen); n == 0 || w.seen[n-1].URL != v.URL || w.seen[n-1].View != v.View {
					w.seen = append(w.seen, v)
				}
				w.mu.Unlock()
			}
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// stop ends the watch and returns what it saw.
func (w *pageWatcher) stop() pageViews {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

func (vs pageViews) sawConsent() bool { return vs.consentText() != "" }

func (vs pageViews) consentText() string {
	for _, v := range vs {
		if v.View == "consent" {
			return v.Text
		}
	}
	return ""
}

func (vs pageViews) urls() []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.URL)
	}
	return out
}

func (vs pageViews) String() string {
	var parts []string
	for _, v := range vs {
		s := v.URL
		if u, err := url.Parse(v.URL); err == nil {
			s = u.Scheme + "://" + u.Host + u.Path // the query is long and says nothing here
		}
		if v.View != "" {
			s += " (" + v.View + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " → ")
}
