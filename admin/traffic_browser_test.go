package admin

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ioproxy/ioproxy/internal/observe"
)

// chromiumPath is where the development image keeps Chromium; CHROMIUM
// overrides it.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return "/usr/bin/chromium"
}

// newBrowser starts a headless Chromium for one test. The returned context
// has already run once, so callers may derive timeouts from it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	exe := chromiumPath()
	if _, err := os.Stat(exe); err != nil {
		t.Skipf("no Chromium at %s (set CHROMIUM): %v", exe, err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox, // the test may run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1500, 700),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first Run starts the browser and binds it to ctx: no timeout here.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// artifactDir is e2e/artifacts at the module root (it is gitignored).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	out := filepath.Join(dir, "e2e", "artifacts")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatalf("create %s: %v", out, err)
	}
	return out
}

func TestTrafficPageInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	r := NewRecorder(RecorderConfig{})
	srv := httptest.NewServer(r.Handler(HealthFuncs{Ready: ready}))
	// Registered before the browser, so it runs after the browser has
	// closed its event stream; otherwise Close would wait for the stream.
	t.Cleanup(srv.Close)

	const xssPath = `/<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>`
	now := time.Now()
	r.Request(observe.Request{Time: now.Add(-3 * time.Second), Kind: observe.KindIngress, Source: "statusphere", Method: "GET", Path: "/", Status: 200, Duration: 18 * time.Millisecond, Upstream: "10.0.0.5:24817", DID: "did:plc:ragtjsm2j2vknwkz3zp4oxrd"})
	r.Request(observe.Request{Time: now.Add(-2 * time.Second), Kind: observe.KindIngress, Source: "statusphere", Operation: "signin", Method: "POST", Path: "/@/signin", Status: 303, Duration: 412 * time.Millisecond, Upstream: "https://bsky.social"})
	r.Request(observe.Request{Time: now.Add(-1 * time.Second), Kind: observe.KindIngress, Source: "statusphere", Method: "GET", Path: xssPath + "?token=SECRET", Status: 404, Duration: 900 * time.Microsecond, Upstream: "10.0.0.5:24817"})

	ctx := newBrowser(t)

	step, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(step,
		chromedp.Navigate(srv.URL+"/traffic"),
		chromedp.WaitVisible(chromedp.CSS(`#rows tr[data-id="3"]`)),
	); err != nil {
		t.Fatalf("open traffic view: %v", err)
	}
	state, err := chromedp.Run(step, chromedp.Poll[string](`document.getElementById('state').textContent === 'live' && 'live'`, chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil || state != "live" {
		t.Fatalf("event stream not live: %q %v", state, err)
	}

	// Rows that arrive after the page loaded appear at the top.
	r.Request(observe.Request{Kind: observe.KindCall, Source: "atproto", Operation: "CreateRecord", Method: "POST", Path: "/xrpc/com.atproto.repo.createRecord", Status: 200, Duration: 96 * time.Millisecond, Upstream: "https://morel.us-east.host.bsky.network", DID: "did:plc:ragtjsm2j2vknwkz3zp4oxrd"})
	r.Request(observe.Request{Kind: observe.KindCall, Source: "atproto", Operation: "ListRecords", Method: "GET", Path: "/xrpc/com.atproto.repo.listRecords", Status: 502, Duration: 2300 * time.Millisecond, Upstream: "https://pds.example.com", DID: "did:plc:ewvi7nxzyoun6zhxrhs64oiz"})
	if err := chromedp.Do(step, chromedp.WaitVisible(chromedp.CSS(`#rows tr[data-id="5"]`))); err != nil {
		t.Fatalf("live rows did not appear: %v", err)
	}
	type rowText struct {
		ID     string `json:"id"`
		Kind   string `json:"kind"`
		Source string `json:"source"`
		Op     string `json:"op"`
		Path   string `json:"path"`
		Status string `json:"status"`
	}
	rows, err := chromedp.Run(step, chromedp.Evaluate[[]rowText](`[...document.querySelectorAll('#rows tr')].map(tr => ({
		id: tr.dataset.id,
		kind: tr.querySelector('.kind').textContent,
		source: tr.querySelector('.source').textContent,
		op: tr.querySelector('.op').textContent,
		path: tr.querySelector('.path').textContent,
		status: tr.querySelector('.status').textContent,
	}))`))
	if err != nil {
		t.Fatalf("read rows: %v", err)
	}
	if len(rows) != 5 {
		t.Fatalf("got %d rows, want 5: %+v", len(rows), rows)
	}
	if top := rows[0]; top.ID != "5" || top.Kind != "call" || top.Source != "atproto" || top.Op != "ListRecords" || top.Status != "502" {
		t.Errorf("newest row = %+v", top)
	}
	if rows[2].Path != xssPath {
		t.Errorf("attacker's path shown as %q, want it as literal text %q", rows[2].Path, xssPath)
	}

	// The path was text, not markup: no element was made from it and no
	// script of it ran.
	probe, err := chromedp.Run(step, chromedp.Evaluate[string](`JSON.stringify({
		imgs: document.querySelectorAll('#rows img').length,
		scripts: document.querySelectorAll('#rows script').length,
		xss: window.__xss === undefined ? 0 : window.__xss,
		secret: document.body.textContent.includes('SECRET'),
	})`))
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if want := `{"imgs":0,"scripts":0,"xss":0,"secret":false}`; probe != want {
		t.Errorf("XSS probe = %s, want %s", probe, want)
	}

	// The filter hides rows that do not match.
	if err := chromedp.Do(step, chromedp.SendKeys(chromedp.CSS("#filter"), "ListRecords")); err != nil {
		t.Fatalf("filter: %v", err)
	}
	shown, err := chromedp.Run(step, chromedp.Evaluate[int](`[...document.querySelectorAll('#rows tr')].filter(tr => !tr.hidden).length`))
	if err != nil || shown != 1 {
		t.Errorf("filter shows %d rows (%v), want 1", shown, err)
	}
	shown, err = chromedp.Run(step, chromedp.Evaluate[int](`(() => {
		const f = document.getElementById('filter');
		f.value = '';
		f.dispatchEvent(new Event('input'));
		return [...document.querySelectorAll('#rows tr')].filter(tr => !tr.hidden).length;
	})()`))
	if err != nil || shown != 5 {
		t.Errorf("cleared filter shows %d rows (%v), want 5", shown, err)
	}

	png, err := chromedp.Run(step, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	out := filepath.Join(artifactDir(t), "traffic.png")
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatalf("save screenshot: %v", err)
	}
	t.Logf("screenshot: %s", out)
	if len(png) < 1000 {
		t.Errorf("screenshot is only %d bytes", len(png))
	}
}
