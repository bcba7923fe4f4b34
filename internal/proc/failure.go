package proc

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// FakeTB catches what a harness reports, so that its failures can be
// tested: Fatalf and Skipf end the goroutine, as they do in a test (run
// the harness with [OnFake]), and keep their message; what it logs is
// kept too; its cleanups wait for [FakeTB.RunCleanups].
type FakeTB struct {
	testing.TB
	mu       sync.Mutex
	fatal    string
	failed   bool
	logged   []string
	cleanups []func()
}

func (f *FakeTB) Helper() {}

func (f *FakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *FakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

// Skipf ends the goroutine as Fatalf does, with a message that starts
// "skipped: ".
func (f *FakeTB) Skipf(format string, args ...any) { f.Fatalf("skipped: "+format, args...) }

// Errorf is only logged, as "error: ...": it does not make the fake
// fail.
func (f *FakeTB) Errorf(format string, args ...any) { f.Logf("error: "+format, args...) }

func (f *FakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	f.logged = append(f.logged, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	f.TB.Logf("(fake) "+format, args...)
}

// Fail makes Failed true, as if the test had failed, so that a test can
// see what a harness's cleanup does then.
func (f *FakeTB) Fail() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
}

func (f *FakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed || f.fatal != ""
}

func (f *FakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// Message is what Fatalf or Skipf ended the run with, "" if neither did.
func (f *FakeTB) Message() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal
}

// Logged is what was logged, Errorf included, in order.
func (f *FakeTB) Logged() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.logged...)
}

// RunCleanups runs the cleanups as a test's end would, last first.
func (f *FakeTB) RunCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

// OnFake runs fn on a new [FakeTB] of t, in a goroutine of its own, which
// a Fatalf may end, and returns the fake and what fn returned (the zero
// value if it was ended). The cleanups are not run.
func OnFake[S any](t testing.TB, fn func(testing.TB) S) (*FakeTB, S) {
	f := &FakeTB{TB: t}
	var s S
	done := make(chan struct{})
	go func() {
		defer close(done)
		s = fn(f)
	}()
	<-done
	return f, s
}

// StartFailure runs start (a harness's Start) with config, which must not
// come up, on a testing.TB that catches its Fatal, runs its cleanups as a
// test would, and returns the fatal message: a harness that fails must say
// why, and stop what it started. t is skipped if start skipped (no server
// binary), and fails if start did not fail.
func StartFailure[S any](t *testing.T, start func(testing.TB, string) S, config string) string {
	t.Helper()
	f, _ := OnFake(t, func(tb testing.TB) S { return start(tb, config) })
	f.RunCleanups()
	msg := f.Message()
	if strings.HasPrefix(msg, "skipped: ") {
		t.Skip(msg)
	}
	if msg == "" {
		t.Fatal("Start did not fail")
	}
	return msg
}
