package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the writer and the test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDevstack runs what ./scripts/local runs, with examples/local.hcl and
// its fixed ports: the app answers on http://127.0.0.1:9000 through
// ioproxy, and a sign-in reaches the local PDS's authorization page. Then
// the context ends and everything stops.
func TestDevstack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole local stack")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), options{
			state:      t.TempDir(),
			configPath: filepath.Join(root, "examples", "local.hcl"),
			plcPort:    2582, pdsPort: 2583,
			ready: ready,
		}, out)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("devstack stopped: %v\n%s", err, out.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("devstack did not start:\n%s", out.String())
	}
	for _, want := range []string{"http://127.0.0.1:9000", "alice.test", "bob.test"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, out.String())
		}
	}

	resp, err := http.Get("http://127.0.0.1:9000/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Statusphere") {
		t.Fatalf("home page: %d %.200q", resp.StatusCode, body)
	}

	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = noRedirect.PostForm("http://127.0.0.1:9000/@/signin", url.Values{"handle": {"alice.test"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "http://localhost:2583/oauth/authorize?") {
		t.Fatalf("sign-in start: %d %q", resp.StatusCode, loc)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("devstack: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("devstack did not stop")
	}
	if _, err := http.Get("http://127.0.0.1:9000/"); err == nil {
		t.Error("ioproxy still answers after stop")
	}
}
