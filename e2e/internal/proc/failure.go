package proc

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// fakeTB catches what a harness's Start reports, so that its failures can
// be tested. Fatalf and Skipf end the goroutine, as they do in a test.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	fatal    string
	cleanups []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) Skipf(format string, args ...any) { f.Fatalf("skipped: "+format, args...) }

func (f *fakeTB) Errorf(format string, args ...any) { f.TB.Logf("(fake) error: "+format, args...) }

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal != ""
}

func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// StartFailure runs start (a harness's Start) with config, which must not
// come up, on a testing.TB that catches its Fatal, runs its cleanups as a
// test would, and returns the fatal message: a harness that fails must say
// why, and stop what it started. t is skipped if start skipped (no server
// binary), and fails if start did not fail.
func StartFailure[S any](t *testing.T, start func(testing.TB, string) S, config string) string {
	t.Helper()
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		start(f, config)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	if strings.HasPrefix(f.fatal, "skipped: ") {
		t.Skip(f.fatal)
	}
	if f.fatal == "" {
		t.Fatal("Start did not fail")
	}
	return f.fatal
}
