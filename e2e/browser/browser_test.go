package browser_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ioproxy/ioproxy/e2e/browser"
)

// TestMappedHostAndScreenshot loads pages from local servers under names
// that exist only in the browser's resolver rules, over HTTPS with an
// untrusted certificate and over HTTP, and saves screenshots. The HTTP name
// is not a .dev one: Chromium has all of .dev on its HSTS preload list and
// turns http:// into https:// there.
func TestMappedHostAndScreenshot(t *testing.T) {
	const tlsHost, plainHost = "statusphere.ioproxy.dev", "app.ioproxy.test"
	var mu sync.Mutex
	var hosts []string
	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hosts = append(hosts, r.Host)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><title>hello from %s</title><h1>Hello from %s (TLS: %t)</h1>`, r.Host, r.Host, r.TLS != nil)
	})
	plain := httptest.NewServer(page)
	defer plain.Close()
	tls := httptest.NewTLSServer(page)
	defer tls.Close()

	b := browser.Start(t, browser.Options{
		HostResolverRules: map[string]string{tlsHost: "127.0.0.1", plainHost: "127.0.0.1"},
		IgnoreCertErrors:  true,
	})

	for host, srv := range map[string]*httptest.Server{tlsHost: tls, plainHost: plain} {
		u, err := url.Parse(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		target := fmt.Sprintf("%s://%s:%s/", u.Scheme, host, u.Port())

		ctx, cancel := context.WithTimeout(b.Ctx(), 30*time.Second)
		err = chromedp.Do(ctx, chromedp.Navigate(target))
		var title string
		if err == nil {
			title, err = chromedp.Run(ctx, chromedp.Title())
		}
		cancel()
		if err != nil {
			t.Fatalf("load %s: %v; %s", target, err, browser.Describe(b.Ctx()))
		}
		if want := "hello from " + host + ":" + u.Port(); title != want {
			t.Errorf("%s: title %q, want %q", target, title, want)
		}

		path, err := b.Screenshot(b.Ctx(), "mapped-"+u.Scheme)
		if err != nil {
			t.Fatal(err)
		}
		png, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
			t.Errorf("%s is not a PNG", path)
		}
		t.Logf("screenshot: %s (%d bytes)", path, len(png))
	}

	mu.Lock()
	defer mu.Unlock()
	for _, h := range hosts {
		if !strings.HasPrefix(h, tlsHost+":") && !strings.HasPrefix(h, plainHost+":") {
			t.Errorf("a server saw Host %q, want one of the mapped names", h)
		}
	}
}

func TestNewTabs(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("who"); err == nil {
			fmt.Fprintf(w, "<title>%s</title>", c.Value)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: "who", Value: "first", Path: "/"})
		fmt.Fprint(w, "<title>none</title>")
	}))
	defer srv.Close()

	b := browser.Start(t, browser.Options{})
	title := func(ctx context.Context) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
			t.Fatal(err)
		}
		v, err := chromedp.Run(ctx, chromedp.Title())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := title(b.Ctx()); got != "none" {
		t.Fatalf("first visit: %q", got)
	}

	shared, closeShared, err := b.NewTab()
	if err != nil {
		t.Fatal(err)
	}
	defer closeShared()
	if got := title(shared); got != "first" {
		t.Errorf("a new tab does not share cookies: title %q", got)
	}

	isolated, closeIsolated, err := b.NewIsolatedTab()
	if err != nil {
		t.Fatal(err)
	}
	defer closeIsolated()
	if got := title(isolated); got != "none" {
		t.Errorf("an isolated tab shares cookies: title %q", got)
	}
}
