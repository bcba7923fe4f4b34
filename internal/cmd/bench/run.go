package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"
)

// tools are the binaries a run needs, found before anything starts so
// that a missing one costs nothing to learn.
type tools struct {
	nginx, caddy, wrk, ioproxy string
}

// findTools looks each binary up on PATH and then where its Debian package
// puts it: /usr/sbin is not on every user's PATH.
func findTools(ioproxy string) (tools, error) {
	t := tools{ioproxy: ioproxy}
	// Each binary is named as its Debian package is.
	for _, b := range []struct {
		dst            *string
		name, fallback string
	}{
		{&t.nginx, "nginx", "/usr/sbin/nginx"},
		{&t.caddy, "caddy", "/usr/bin/caddy"},
		{&t.wrk, "wrk", "/usr/bin/wrk"},
	} {
		p, ok := lookPath(b.name, b.fallback)
		if !ok {
			return tools{}, fmt.Errorf("%s not found (not on PATH, not at %s): apt-get install %s, or ./scripts/deps", b.name, b.fallback, b.name)
		}
		*b.dst = p
	}
	if fi, err := os.Stat(ioproxy); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return tools{}, fmt.Errorf("ioproxy binary %s is not an executable file (scripts/bench builds it from ./cmd/ioproxy)", ioproxy)
	}
	return t, nil
}

func lookPath(name, fallback string) (string, bool) {
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	if fi, err := os.Stat(fallback); err != nil || fi.IsDir() {
		return "", false
	}
	return fallback, true
}

// result is one subject's measurement.
type result struct {
	subject subject
	wrk     wrkResult
}

// run starts every subject, checks that each one proxies, measures them
// one after another and writes the report to out; progress is told what
// happens meanwhile. Whatever it started is stopped before it returns.
// On a failure the temp dir, with every config and log, is kept and named.
func run(ctx context.Context, o options, out, progress io.Writer) (err error) {
	t, err := findTools(o.ioproxy)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "ioproxy-bench-")
	if err != nil {
		return fmt.Errorf("make a temp dir: %w", err)
	}
	defer func() {
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(progress, "bench: the configs and logs are kept in %s\n", dir)
			return
		}
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			fmt.Fprintf(progress, "bench: remove %s: %v\n", dir, rmErr)
		}
	}()
	// Deferred after the removal, so it runs first: the processes write
	// into dir until they are gone.
	procs := &processes{progress: progress}
	defer procs.stopAll()

	subjects, err := startSubjects(ctx, t, dir, procs, progress)
	if err != nil {
		return err
	}
	for _, s := range subjects {
		if err := verify(ctx, s); err != nil {
			return err
		}
	}
	var results []result
	for _, s := range subjects {
		r, err := measure(ctx, t.wrk, s, o, progress)
		if err != nil {
			return err
		}
		results = append(results, result{subject: s, wrk: r})
	}
	return writeReport(out, results, describe(ctx, t, o, time.Now()))
}

// measure loads s with wrk, after a warm-up, and checks s again after
// the load: wrk counts a redirect as a success, so a session that ended
// during the run (a sign-in page in place of the backend's answer) shows
// only here.
func measure(ctx context.Context, wrk string, s subject, o options, progress io.Writer) (wrkResult, error) {
	fmt.Fprintf(progress, "== wrk: %s (%s, %d connections)\n", s.name, o.duration, o.connections)
	if o.warmup > 0 {
		if _, err := runWrk(ctx, wrk, s, o.warmup, o.connections); err != nil {
			return wrkResult{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	r, err := runWrk(ctx, wrk, s, o.duration, o.connections)
	if err != nil {
		return wrkResult{}, err
	}
	if err := verify(ctx, s); err != nil {
		return wrkResult{}, fmt.Errorf("after wrk: %w", err)
	}
	return r, nil
}
