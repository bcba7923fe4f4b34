// Command bench measures what a request through ioproxy costs next to
// nginx and Caddy in front of the same loopback backend, side by side in
// one run with wrk, and prints a table to paste into the README.
// ./scripts/bench builds ioproxy and runs it:
//
//	scripts/bench                                  # 5 s per subject, 32 connections
//	scripts/bench -duration 10s -connections 64
//	BENCH_DURATION=10s BENCH_CONNECTIONS=64 scripts/bench
//
// Every subject is a process of its own (the backend too: it re-executes
// this program), so that none shares a Go runtime, a scheduler or a
// garbage collector with another or with the load generator. Everything
// listens on 127.0.0.1, and everything it starts is stopped when it ends,
// on failure and on Ctrl-C too.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// The environment variables that set the defaults of the flags, so that a
// CI job or a Makefile can change a run without quoting flags through.
const (
	durationEnv    = "BENCH_DURATION"
	connectionsEnv = "BENCH_CONNECTIONS"
)

// options are what one run measures with.
type options struct {
	// duration is how long wrk loads each subject.
	duration time.Duration
	// warmup is a wrk run before each measurement whose numbers are
	// dropped: it opens the keep-alive connections of the proxies to the
	// backend and lets each process grow its heap, so that the first
	// seconds of a subject are not what it is measured by.
	warmup time.Duration
	// connections is wrk's -c: the requests in flight at once.
	connections int
	// ioproxy is the binary to measure, built by scripts/bench from the
	// working tree.
	ioproxy string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == backendArg {
		if err := serveBackend(os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "bench backend: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) > 2 && os.Args[1] == floorArg {
		if err := serveFloor(os.Stdout, os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "bench floor: %v\n", err)
			os.Exit(1)
		}
		return
	}
	opts, err := parseOptions(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, opts, os.Stdout, os.Stderr)
	interrupted := ctx.Err() != nil
	stop()
	switch {
	case interrupted:
		fmt.Fprintln(os.Stderr, "bench: interrupted; every process it started has been stopped")
		os.Exit(130)
	case err != nil:
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// parseOptions reads the flags, whose defaults come from the environment
// (getenv) and then from the values in the issue: 5 s, 32 connections.
func parseOptions(args []string, getenv func(string) string, usage io.Writer) (options, error) {
	duration, err := envDuration(getenv, durationEnv, 5*time.Second)
	if err != nil {
		return options{}, err
	}
	connections, err := envInt(getenv, connectionsEnv, 32)
	if err != nil {
		return options{}, err
	}
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.DurationVar(&o.duration, "duration", duration, "how long wrk loads each subject, in whole seconds (env "+durationEnv+")")
	fs.IntVar(&o.connections, "connections", connections, "wrk's connections, the requests in flight at once (env "+connectionsEnv+")")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "a wrk run before each measurement, not counted (0 for none)")
	fs.StringVar(&o.ioproxy, "ioproxy", "", "the ioproxy binary to measure (scripts/bench builds it)")
	if err := fs.Parse(args); err != nil {
		return options{}, err
	}
	if fs.NArg() > 0 {
		return options{}, fmt.Errorf("unexpected arguments %q (run with -h for the flags)", fs.Args())
	}
	return o, o.check()
}

// check refuses what wrk would refuse or misread, before anything starts.
func (o options) check() error {
	// wrk takes -d in whole units; a fraction would be cut off silently.
	for _, d := range []struct {
		name string
		v    time.Duration
		min  time.Duration
	}{{"duration", o.duration, time.Second}, {"warmup", o.warmup, 0}} {
		if d.v < d.min || d.v%time.Second != 0 {
			return fmt.Errorf("-%s %s: write whole seconds, at least %s, such as -%s 5s", d.name, d.v, d.min, d.name)
		}
	}
	// wrk needs a connection per thread, and this runs one thread.
	if o.connections < 1 || o.connections > 10000 {
		return fmt.Errorf("-connections %d: write a number from 1 to 10000", o.connections)
	}
	if o.ioproxy == "" {
		return errors.New("-ioproxy is required: the binary to measure (scripts/bench builds it and passes it)")
	}
	return nil
}

func envDuration(getenv func(string) string, name string, def time.Duration) (time.Duration, error) {
	s := getenv(name)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: not a duration, write one such as %s=10s", name, s, name)
	}
	return d, nil
}

func envInt(getenv func(string) string, name string, def int) (int, error) {
	s := getenv(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: not a number, write one such as %s=64", name, s, name)
	}
	return n, nil
}
