package main

import (
	"strings"
	"testing"
	"time"
)

// Real output of wrk 4.1 (Debian 4.1.0-3+b2) with --latency, one sample
// per unit it prints latencies in, and the lines that fail a run.
const (
	wrkFast = `Running 2s test @ http://127.0.0.1:18781/fast
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   155.19us  471.16us  12.14ms   94.77%
    Req/Sec   109.04k    15.25k  121.80k    85.00%
  Latency Distribution
     50%   55.00us
     75%   64.00us
     90%  186.00us
     99%    2.07ms
  216348 requests in 2.00s, 24.14MB read
Requests/sec: 108156.69
Transfer/sec:     12.07MB
`
	wrkMillis = `Running 1s test @ http://127.0.0.1:18777/
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.05ms   17.53ms 123.62ms   90.57%
    Req/Sec   346.70    177.40   670.00     70.00%
  Latency Distribution
     50%    9.57ms
     75%   18.74ms
     90%   29.92ms
     99%   88.66ms
  346 requests in 1.00s, 4.46MB read
Requests/sec:    345.22
Transfer/sec:      4.45MB
`
	// Its latencies end in a space: wrk pads "s" to the width of "ms".
	wrkSeconds = `Running 2s test @ http://127.0.0.1:18781/slow
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20s    14.04us   1.20s    87.50%
    Req/Sec     6.00      0.00     6.00    100.00%
  Latency Distribution
     50%    1.20s 
     75%    1.20s 
     90%    1.20s 
     99%    1.20s 
  8 requests in 2.00s, 0.91KB read
Requests/sec:      3.99
Transfer/sec:     467.23B
`
	wrkNon2xx = `Running 2s test @ http://127.0.0.1:18781/500
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   135.67us  347.40us   5.20ms   94.10%
    Req/Sec   116.54k     5.75k  121.64k    90.48%
  Latency Distribution
     50%   53.00us
     75%   59.00us
     90%  164.00us
     99%    1.88ms
  243585 requests in 2.10s, 21.84MB read
  Non-2xx or 3xx responses: 243585
Requests/sec: 115938.09
Transfer/sec:     10.39MB
`
	wrkSocketErrors = `Running 3s test @ http://127.0.0.1:18781/slower
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     0.00us    0.00us   0.00us    -nan%
    Req/Sec     1.00      0.00     1.00    100.00%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  4 requests in 3.02s, 468.00B read
  Socket errors: connect 0, read 0, write 0, timeout 4
Requests/sec:      1.33
Transfer/sec:     155.03B
`
	wrkRefused = "unable to connect to 127.0.0.1:18799 Connection refused\n"
)

func TestParseWrk(t *testing.T) {
	tests := []struct {
		name    string
		out     string
		want    wrkResult
		wantErr string // a part of the error; "" for none
	}{
		{name: "us and ms", out: wrkFast, want: wrkResult{requests: 216348, requestsPerSec: 108156.69, p50: 55 * time.Microsecond, p99: 2070 * time.Microsecond}},
		{name: "ms", out: wrkMillis, want: wrkResult{requests: 346, requestsPerSec: 345.22, p50: 9570 * time.Microsecond, p99: 88660 * time.Microsecond}},
		{name: "s", out: wrkSeconds, want: wrkResult{requests: 8, requestsPerSec: 3.99, p50: 1200 * time.Millisecond, p99: 1200 * time.Millisecond}},
		{name: "non-2xx", out: wrkNon2xx, wantErr: "Non-2xx or 3xx responses: 243585"},
		{name: "socket errors", out: wrkSocketErrors, wantErr: "Socket errors: connect 0, read 0, write 0, timeout 4"},
		{name: "refused", out: wrkRefused, wantErr: "Requests/sec"},
		{name: "without --latency", out: dropLines(wrkFast, "%"), wantErr: "--latency"},
		{name: "no count", out: dropLines(wrkFast, "requests in"), wantErr: "requests in"},
		{name: "empty", out: "", wantErr: "Requests/sec"},
		{name: "no unit", out: strings.Replace(wrkFast, "2.07ms", "2.07", 1), wantErr: "no unit"},
		{name: "bad number", out: strings.Replace(wrkFast, "55.00us", "5x.00us", 1), wantErr: "not a latency"},
		{name: "negative", out: strings.Replace(wrkFast, "55.00us", "-5.00us", 1), wantErr: "not a latency"},
		{name: "NaN", out: strings.Replace(wrkFast, "2.07ms", "NaNms", 1), wantErr: "not a latency"},
		{name: "days", out: strings.Replace(wrkFast, "2.07ms", "30.00h", 1), wantErr: "not a latency"},
		{name: "bad rate", out: strings.Replace(wrkFast, "108156.69", "Inf", 1), wantErr: "not a rate"},
		{name: "nothing done", out: strings.Replace(strings.Replace(wrkFast, "216348 requests", "0 requests", 1), "108156.69", "0.00", 1), wantErr: "no request completed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseWrk(tt.out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseWrk: error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseWrk: %v", err)
			}
			if got != tt.want {
				t.Errorf("parseWrk = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseLatency(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0.00us":   0,
		"812.00us": 812 * time.Microsecond,
		"1.25ms":   1250 * time.Microsecond,
		"2.00s":    2 * time.Second,
		"1.50m":    90 * time.Second,
		"1.00h":    time.Hour,
	} {
		if got, err := parseLatency(in); err != nil || got != want {
			t.Errorf("parseLatency(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}

// dropLines is out without the lines that contain s.
func dropLines(out, s string) string {
	var b strings.Builder
	for line := range strings.Lines(out) {
		if !strings.Contains(line, s) {
			b.WriteString(line)
		}
	}
	return b.String()
}
