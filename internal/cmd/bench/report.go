package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// versionTimeout bounds each "--version" run of a tool.
const versionTimeout = 5 * time.Second

// writeReport prints the table of results and the line that says where
// they were measured, as a Markdown table that reads as plain text too:
// the same columns in the same order every run, so that runs can be
// compared and pasted into the README.
func writeReport(w io.Writer, results []result, environment string) error {
	base := map[string]wrkResult{}
	for _, r := range results {
		base[r.subject.name] = r.wrk
	}
	for _, name := range []string{nameDirect, nameNginx, nameCaddy} {
		if _, ok := base[name]; !ok {
			return fmt.Errorf("report: no result for %s to compare with", name)
		}
	}
	rows := [][]string{{"subject", "req/s", "p50", "p99", "vs nginx", "vs Caddy", "p99 over direct"}}
	for _, r := range results {
		rows = append(rows, []string{
			r.subject.name,
			fmt.Sprintf("%.0f", r.wrk.requestsPerSec),
			millis(r.wrk.p50),
			millis(r.wrk.p99),
			ratio(r.wrk.requestsPerSec, base[nameNginx].requestsPerSec),
			ratio(r.wrk.requestsPerSec, base[nameCaddy].requestsPerSec),
			added(r.wrk.p99 - base[nameDirect].p99),
		})
	}
	bw := bufio.NewWriter(w)
	writeTable(bw, rows)
	fmt.Fprintf(bw, "\n%s\n", environment)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write the report: %w", err)
	}
	return nil
}

// writeTable writes rows, the first being the header, as a Markdown table
// with padded columns: the first left-aligned, the numbers right-aligned.
func writeTable(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len([]rune(cell)), 3)
		}
	}
	line := func(cells []string) {
		for i, cell := range cells {
			pad := strings.Repeat(" ", widths[i]-len([]rune(cell)))
			if i == 0 {
				fmt.Fprintf(w, "| %s%s ", cell, pad)
			} else {
				fmt.Fprintf(w, "| %s%s ", pad, cell)
			}
		}
		fmt.Fprintln(w, "|")
	}
	line(rows[0])
	for i, wd := range widths {
		if i == 0 {
			fmt.Fprintf(w, "|:%s", strings.Repeat("-", wd+1))
		} else {
			fmt.Fprintf(w, "|%s:", strings.Repeat("-", wd+1))
		}
	}
	fmt.Fprintln(w, "|")
	for _, row := range rows[1:] {
		line(row)
	}
}

// millis is a latency in milliseconds, to the hundredth: one unit in
// every row (wrk switches between us and ms) keeps a column comparable at
// a glance.
func millis(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// added is a latency difference with its sign, which is negative when a
// subject's p99 came out below the backend's own: the noise of a run.
func added(d time.Duration) string {
	if d < 0 {
		return millis(d)
	}
	return "+" + millis(d)
}

// ratio is a's requests per second against b's.
func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// describe is the line under the table: when, on what machine, with which
// builds, and how wrk loaded each subject. Throughput on another machine
// or another version is another number, so a pasted table carries it.
func describe(ctx context.Context, t tools, o options, now time.Time) string {
	warm := "no warm-up"
	if o.warmup > 0 {
		warm = fmt.Sprintf("after a %s warm-up", o.warmup)
	}
	return fmt.Sprintf("%s, nproc %d, %s, %s, nginx %s, Caddy %s, wrk %s: 1 thread, %d connections, %s per subject, %s, one loopback backend.",
		now.Format("2006-01-02"), runtime.NumCPU(), cpuModel(), runtime.Version(),
		version(ctx, t.nginx, "-v"), version(ctx, t.caddy, "version"), version(ctx, t.wrk, "-v"),
		o.connections, o.duration, warm)
}

// cpuModel is the first "model name" of /proc/cpuinfo, or "unknown CPU"
// where there is none (some ARM kernels).
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "unknown CPU"
}

// version runs bin with arg and returns its version number: from
// "nginx version: nginx/1.22.1", "v2.7.6 h1:…" or "2.6.2", and
// "wrk debian/4.1.0-3+b2 [epoll] …". wrk -v exits 1 after its usage, so
// only the output counts.
func version(ctx context.Context, bin, arg string) string {
	ctx, cancel := context.WithTimeout(ctx, versionTimeout)
	defer cancel()
	out, _ := exec.CommandContext(ctx, bin, arg).CombinedOutput()
	return parseVersion(string(out))
}

// parseVersion finds the first word of out that reads as a version (it
// starts with a digit after any "name/", "debian/" or "v"), and keeps its
// numbers: "4.1.0-3+b2" is wrk 4.1.0.
func parseVersion(out string) string {
	firstLine, _, _ := strings.Cut(out, "\n")
	for _, word := range strings.Fields(firstLine) {
		if i := strings.LastIndex(word, "/"); i >= 0 {
			word = word[i+1:]
		}
		word = strings.TrimPrefix(word, "v")
		if word == "" || word[0] < '0' || word[0] > '9' {
			continue
		}
		end := strings.IndexFunc(word, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
		if end >= 0 {
			word = word[:end]
		}
		return word
	}
	return "unknown"
}
