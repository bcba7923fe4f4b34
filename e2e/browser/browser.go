// Package browser runs headless Chromium through chromedp for end-to-end
// tests, and drives the sign-in and consent pages of the local PDS.
//
// chromedp v0.23 has a generic API: chromedp.Do(ctx, steps...) runs actions
// that return nothing, v, err := chromedp.Run(ctx, action) runs one that
// returns a value. The first Run on a context starts the browser and ties
// its life to that context, so Start makes that first call itself, without
// a timeout; callers derive per-step timeouts from Ctx().
package browser

import (
	"context"
	"errors"
	"fmt"
	"github.com/ioproxy/ioproxy/internal/tail"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// DefaultExecPath is the Chromium of the development image. CHROMIUM
// overrides it.
const DefaultExecPath = "/usr/bin/chromium"

// DefaultStepTimeout bounds one step of SignInAtPDS (a page to appear, a
// click to take effect). The PDS pages render in well under a second
// locally; the margin is for loaded CI machines.
const DefaultStepTimeout = 30 * time.Second

// closeTimeout bounds the graceful close of the browser before it is killed.
const closeTimeout = 10 * time.Second

// Options configures the browser.
type Options struct {
	// HostResolverRules maps host names to IP addresses inside Chromium
	// (--host-resolver-rules), e.g. "statusphere.ioproxy.dev" →
	// "127.0.0.1", so pages can be loaded under names that do not exist in
	// DNS. Ports are kept. Chromium has all of .dev on its HSTS preload
	// list, so a .dev name is only reachable over https://.
	HostResolverRules map[string]string
	// IgnoreCertErrors accepts any TLS certificate, e.g. one from the test
	// CA, which Chromium has no flag to trust.
	IgnoreCertErrors bool
	// ExecPath is the browser binary; default $CHROMIUM, then
	// DefaultExecPath.
	ExecPath string
	// ArtifactsDir receives screenshots; default e2e/artifacts in the
	// repository.
	ArtifactsDir string
	// StepTimeout defaults to DefaultStepTimeout.
	StepTimeout time.Duration
}

// Browser is a running headless Chromium with one open tab.
type Browser struct {
	ctx         context.Context
	cancel      context.CancelFunc
	allocCancel context.CancelFunc
	artifacts   string
	prefix      string // prepended to screenshot names, e.g. the test name
	stepTimeout time.Duration
	output      *tail.Buffer
	closeOnce   sync.Once
	closeErr    error
	// logf reports what SignInAtPDS went through; Start sets it to t.Logf.
	logf func(format string, args ...any)
}

// Start launches Chromium for the test, with a fresh profile in
// t.TempDir(), and closes it when the test ends. It fails the test if
// Chromium does not start.
func Start(t testing.TB, opts Options) *Browser {
	t.Helper()
	// t.TempDir before the browser cleanup, so that the profile is removed
	// only after Chromium has exited (cleanups run last-in first-out).
	profile := t.TempDir()
	b, err := New(context.Background(), profile, opts)
	if err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	b.prefix = t.Name()
	b.logf = t.Logf
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Logf("close Chromium: %v", err)
		}
	})
	return b
}

// New launches Chromium with profile as its user data directory (it should
// be empty: every run starts without cookies). parent must have no
// deadline; canceling it kills the browser. Call Close when done.
func New(parent context.Context, profile string, opts Options) (*Browser, error) {
	execPath := opts.ExecPath
	if execPath == "" {
		execPath = os.Getenv("CHROMIUM")
	}
	if execPath == "" {
		execPath = DefaultExecPath
	}
	if _, err := os.Stat(execPath); err != nil {
		return nil, fmt.Errorf("browser: Chromium: %w", err)
	}
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = DefaultStepTimeout
	}
	artifacts := opts.ArtifactsDir
	if artifacts == "" {
		artifacts = defaultArtifactsDir()
	}

	output := tail.New(32 << 10)
	// Exactly the flags that work for Chromium as root in a container (see
	// DEVELOPERS.md), not chromedp.DefaultExecAllocatorOptions: the defaults
	// add --enable-automation, feature toggles and the like, which make the
	// browser behave less like the one a user has.
	allocOpts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(execPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(output),
	}
	if rules := resolverRules(opts.HostResolverRules); rules != "" {
		allocOpts = append(allocOpts, chromedp.Flag("host-resolver-rules", rules))
	}
	if opts.IgnoreCertErrors {
		allocOpts = append(allocOpts, chromedp.Flag("ignore-certificate-errors", true))
	}

	allocCtx, allocCancel := chromedp.NewExecAllocator(parent, allocOpts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// The first Run starts the browser and binds it to ctx: no timeout here.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		allocCancel()
		return nil, fmt.Errorf("browser: start %s: %w\nChromium output (tail):\n%s", execPath, err, output.String())
	}
	return &Browser{
		ctx:         ctx,
		cancel:      cancel,
		allocCancel: allocCancel,
		artifacts:   artifacts,
		stepTimeout: opts.StepTimeout,
		output:      output,
		logf:        func(string, ...any) {},
	}, nil
}

// resolverRules turns name→IP into Chromium's "MAP name ip, MAP name ip",
// sorted so that the command line is stable.
func resolverRules(m map[string]string) string {
	var rules []string
	for _, name := range slices.Sorted(maps.Keys(m)) {
		rules = append(rules, fmt.Sprintf("MAP %s %s", name, m[name]))
	}
	return strings.Join(rules, ", ")
}

// Ctx returns the context of the first tab. Derive timeouts from it; do not
// cancel it (Close does).
func (b *Browser) Ctx() context.Context { return b.ctx }

// StepTimeout is the per-step timeout that SignInAtPDS uses.
func (b *Browser) StepTimeout() time.Duration { return b.stepTimeout }

// NewTab opens another tab that shares cookies with the first one. Cancel
// closes it.
func (b *Browser) NewTab() (context.Context, context.CancelFunc, error) {
	return b.newTab()
}

// NewIsolatedTab opens a tab in a new browser context (like an incognito
// window): its cookies are its own, so a second user can sign in at the
// same time. Cancel closes it.
func (b *Browser) NewIsolatedTab() (context.Context, context.CancelFunc, error) {
	return b.newTab(chromedp.WithNewBrowserContext())
}

func (b *Browser) newTab(opts ...chromedp.ContextOption) (context.Context, context.CancelFunc, error) {
	ctx, cancel := chromedp.NewContext(b.ctx, opts...)
	// As for the browser, the first Run opens the tab for the life of ctx,
	// so it has no timeout.
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		return nil, nil, fmt.Errorf("browser: open a tab: %w", err)
	}
	return ctx, cancel, nil
}

// Close closes the browser gracefully, then kills it if it does not exit.
// It is safe to call more than once.
func (b *Browser) Close() error {
	b.closeOnce.Do(func() {
		done := make(chan error, 1)
		go func() { done <- chromedp.Cancel(b.ctx) }()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				b.closeErr = fmt.Errorf("browser: close: %w", err)
			}
		case <-time.After(closeTimeout):
			b.closeErr = fmt.Errorf("browser: Chromium did not close within %s; killed it", closeTimeout)
		}
		b.cancel()
		b.allocCancel() // waits for the process and its temporary files
	})
	return b.closeErr
}

// Output returns the tail of Chromium's own stdout and stderr.
func (b *Browser) Output() string { return b.output.String() }

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// Screenshot saves a PNG of the whole page of the tab ctx to
// <artifacts>/<test name>-<name>.png and returns its path. CI keeps the
// artifacts folder, so failing runs can be looked at.
func (b *Browser) Screenshot(ctx context.Context, name string) (string, error) {
	if err := os.MkdirAll(b.artifacts, 0o755); err != nil {
		return "", fmt.Errorf("browser: screenshot %q: %w", name, err)
	}
	file := name
	if b.prefix != "" {
		file = b.prefix + "-" + name
	}
	file = strings.Trim(unsafeName.ReplaceAllString(file, "_"), "_") + ".png"
	path := filepath.Join(b.artifacts, file)

	sctx, cancel := context.WithTimeout(ctx, b.stepTimeout)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100)) // 100 means PNG
	if err != nil {
		return "", fmt.Errorf("browser: screenshot %q: %w", name, err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		return "", fmt.Errorf("browser: screenshot %q: %w", name, err)
	}
	return path, nil
}

// defaultArtifactsDir is e2e/artifacts at the root of the module, found by
// walking up from the working directory (go test runs in the package
// directory), else next to this source file.
func defaultArtifactsDir() string {
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				return filepath.Join(d, "e2e", "artifacts")
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		return filepath.Join(filepath.Dir(file), "..", "artifacts")
	}
	return filepath.Join(os.TempDir(), "ioproxy-e2e-artifacts")
}
