package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// wrkSlack is how much longer than its -d a wrk run may take before it is
// killed: it connects first and waits out the requests in flight at the
// end (its timeout is 2 s).
const wrkSlack = 30 * time.Second

// wrkResult is what a report takes from one wrk run.
type wrkResult struct {
	requests       int64 // completed in the run
	requestsPerSec float64
	p50, p99       time.Duration
}

// wrkArgs are the flags of every run: one thread, so that wrk takes one
// core and leaves the rest to the subject; --latency for the percentiles.
func wrkArgs(s subject, d time.Duration, connections int) []string {
	args := []string{
		"-t1", "-c" + strconv.Itoa(connections), "-d" + strconv.Itoa(int(d/time.Second)) + "s", "--latency",
	}
	if s.host != "" {
		args = append(args, "-H", "Host: "+s.host)
	}
	if s.cookie != "" {
		args = append(args, "-H", "Cookie: "+s.cookie)
	}
	return append(args, s.url)
}

// runWrk loads s with wrk for d and returns what it measured. wrk runs in
// a process group of its own, like the servers, and is killed when ctx
// ends (Ctrl-C) or when it overruns d by wrkSlack.
func runWrk(ctx context.Context, bin string, s subject, d time.Duration, connections int) (wrkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+wrkSlack)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, wrkArgs(s, d, connections)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return wrkResult{}, fmt.Errorf("wrk against %s: not done %s after its %s run, killed\n%s", s.name, wrkSlack, d, out.String())
		}
		return wrkResult{}, fmt.Errorf("wrk against %s: %w\n%s", s.name, err, out.String())
	}
	r, err := parseWrk(out.String())
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk against %s: %w; wrk said:\n%s", s.name, err, out.String())
	}
	return r, nil
}

// parseWrk reads the output of wrk 4.1 with --latency: "Requests/sec:",
// the 50% and 99% lines of the latency distribution, and the number of
// requests. An answer that was not 2xx or 3xx (wrk's "Non-2xx or 3xx
// responses") or any socket error fails the run: its numbers would mix
// in errors, which are cheap to serve.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	var haveRate, have50, have99, haveCount bool
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		f := strings.Fields(line)
		var err error
		switch {
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:"):
			return wrkResult{}, fmt.Errorf("%s: answers other than 2xx and 3xx, which are not proxied requests", line)
		case strings.HasPrefix(line, "Socket errors:"):
			return wrkResult{}, fmt.Errorf("%s", line)
		case len(f) == 2 && f[0] == "Requests/sec:":
			r.requestsPerSec, err = parseRate(f[1])
			haveRate = true
		case len(f) == 2 && f[0] == "50%":
			r.p50, err = parseLatency(f[1])
			have50 = true
		case len(f) == 2 && f[0] == "99%":
			r.p99, err = parseLatency(f[1])
			have99 = true
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.requests, err = strconv.ParseInt(f[0], 10, 64)
			haveCount = true
		}
		if err != nil {
			return wrkResult{}, fmt.Errorf("line %q: %w", line, err)
		}
	}
	switch {
	case !haveRate:
		return wrkResult{}, errors.New(`no "Requests/sec:" line`)
	case !have50 || !have99:
		return wrkResult{}, errors.New("no 50% and 99% lines: was it run with --latency?")
	case !haveCount:
		return wrkResult{}, errors.New(`no "N requests in" line`)
	case r.requests == 0 || r.requestsPerSec == 0:
		return wrkResult{}, errors.New("no request completed")
	}
	return r, nil
}

// parseRate reads a number of requests per second, such as "12345.67".
func parseRate(s string) (float64, error) {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a rate", s)
	}
	return v, nil
}

// wrkUnits are the units of wrk's times (its units.c): us up to a
// millisecond, ms up to a second, then s, m and h.
var wrkUnits = []struct {
	suffix string
	unit   time.Duration
}{
	// "ms" and "us" before "s", which they end with.
	{"ms", time.Millisecond},
	{"us", time.Microsecond},
	{"s", time.Second},
	{"m", time.Minute},
	{"h", time.Hour},
}

// parseLatency reads a time as wrk prints it: a number with two decimals
// and a unit, such as "812.00us", "1.25ms" or "2.00s".
func parseLatency(s string) (time.Duration, error) {
	for _, u := range wrkUnits {
		num, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(num, 64)
		// A day is far beyond any run of this program: more is a misread,
		// and would overflow a Duration soon after.
		if err != nil || v < 0 || math.IsNaN(v) || v*float64(u.unit) > float64(24*time.Hour) {
			return 0, fmt.Errorf("%q is not a latency", s)
		}
		return time.Duration(math.Round(v * float64(u.unit))), nil
	}
	return 0, fmt.Errorf("%q is not a latency: no unit (us, ms, s, m, h)", s)
}
