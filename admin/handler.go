package admin

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/pprof"
	"path"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/httpguard"
)

//go:embed static
var staticFiles embed.FS

// checkTimeout bounds a health check, so that a stuck dependency turns
// into a 503 rather than a hung probe.
const checkTimeout = 5 * time.Second

// Traffic streams end after streamLifetime (the browser reconnects at once,
// resuming from the last entry it saw) so that a forgotten tab does not
// hold a connection open forever or block a graceful shutdown for long.
const (
	streamLifetime  = 5 * time.Minute
	streamKeepalive = 15 * time.Second
)

// contentType is set by hand so that the answer does not depend on the
// host's mime tables.
func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	return "application/octet-stream"
}

// HealthFuncs are the checks behind /healthz and /readyz. A check returns
// nil when all is well, or an error whose message says what is wrong; it
// should honour the context's deadline.
type HealthFuncs struct {
	// Live backs /healthz. When nil, the process is alive as long as it
	// answers.
	Live func(ctx context.Context) error
	// Ready backs /readyz: nil when ioproxy can serve traffic (listeners
	// bound, session store open). When Ready is nil, /readyz answers 503:
	// a process that was not told how to judge readiness is not ready.
	Ready func(ctx context.Context) error
}

// Handler returns the admin listener's handler:
//
//	/metrics          Prometheus text exposition of the Recorder's registry
//	/healthz          200 while the process is alive
//	/readyz           200 when ready, 503 with the reason otherwise
//	/traffic          the live traffic view (HTML)
//	/traffic.json     recent requests as JSON; ?after=<id> for newer ones
//	/traffic/events   the same as Server-Sent Events, live
//	/debug/pprof/     Go's profiles, with RecorderConfig.Pprof only
//
// On a nil Recorder only the health endpoints are served.
func (r *Recorder) Handler(health HealthFuncs) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, req *http.Request) {
		runCheck(w, req, health.Live, "ok", "not alive")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		ready := health.Ready
		if ready == nil {
			ready = func(context.Context) error { return fmt.Errorf("no readiness check is configured") }
		}
		runCheck(w, req, ready, "ready", "not ready")
	})
	if r == nil {
		mux.HandleFunc("/", func(w http.ResponseWriter, req *http.Request) {
			http.Error(w, "metrics and the traffic view are turned off in this process", http.StatusNotFound)
		})
		return securityHeaders(mux)
	}

	serveFile := func(name string) http.HandlerFunc {
		content, err := staticFiles.ReadFile("static/" + name)
		if err != nil {
			// The embedded files are fixed at build time, and every
			// test that builds a Handler would fail here.
			panic(fmt.Sprintf("admin: embedded file %s: %v", name, err))
		}
		ctype := contentType(name)
		return func(w http.ResponseWriter, req *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.Header().Set("Cache-Control", "no-cache")
			http.ServeContent(w, req, name, time.Time{}, bytes.NewReader(content))
		}
	}

	mux.Handle("GET /metrics", promhttp.HandlerFor(r.registry, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.Handle("GET /{$}", serveFile("index.html"))
	mux.Handle("GET /traffic", serveFile("traffic.html"))
	mux.Handle("GET /traffic.js", serveFile("traffic.js"))
	mux.Handle("GET /traffic.css", serveFile("traffic.css"))
	mux.Handle("GET /traffic.json", http.HandlerFunc(r.serveTrafficJSON))
	mux.Handle("GET /traffic/events", http.HandlerFunc(r.serveTrafficEvents))
	if r.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return securityHeaders(r.guardHost(mux))
}

// runCheck answers a health probe in plain text.
func runCheck(w http.ResponseWriter, req *http.Request, check func(context.Context) error, okText, failText string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if check != nil {
		ctx, cancel := context.WithTimeout(req.Context(), checkTimeout)
		defer cancel()
		if err := check(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "%s: %v\n", failText, err)
			return
		}
	}
	fmt.Fprintln(w, okText)
}

// securityHeaders keeps the admin pages from running anything but their
// own script, from being framed, and from leaking their URL.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, req)
	})
}

// guardHost refuses requests whose Host is a name we were not told
// about: the admin listener is usually on loopback, and a web page on an
// attacker's name that resolves to 127.0.0.1 (DNS rebinding) would
// otherwise be able to read who is signed in and what they do, from the
// traffic view or the metrics.
func (r *Recorder) guardHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !httpguard.HostAllowed(req.Host, r.hosts) {
			http.Error(w, fmt.Sprintf("The admin listener does not answer under the name %q; open it by IP address (such as http://127.0.0.1:9901/traffic) or as localhost, or add the name to admin { hosts = [...] }.", config.NormalizeHost(req.Host)), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, req)
	})
}

// trafficEntry is one request as the traffic view shows it: no remote
// address, no query string, no headers.
type trafficEntry struct {
	ID         uint64    `json:"id"`
	Time       time.Time `json:"time"`
	Kind       string    `json:"kind"`
	Source     string    `json:"source"`
	Operation  string    `json:"operation,omitempty"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Status     int       `json:"status"`
	DurationMS float64   `json:"duration_ms"`
	Upstream   string    `json:"upstream,omitempty"`
	DID        string    `json:"did,omitempty"`
}

func toTrafficEntry(e entry) trafficEntry {
	return trafficEntry{
		ID:         e.seq,
		Time:       e.req.Time.UTC(),
		Kind:       e.req.Kind,
		Source:     e.req.Source,
		Operation:  e.req.Operation,
		Method:     e.req.Method,
		Path:       e.req.Path,
		Status:     e.req.Status,
		DurationMS: float64(e.req.Duration.Microseconds()) / 1000,
		Upstream:   e.req.Upstream,
		DID:        e.req.DID,
	}
}

// trafficPage is the body of /traffic.json.
type trafficPage struct {
	// Last is the id of the newest request recorded so far; pass it as
	// ?after= to get only what comes next.
	Last     uint64 `json:"last"`
	Capacity int    `json:"capacity"`
	// Entries are oldest first.
	Entries []trafficEntry `json:"entries"`
}

// parseAfter reads the id a client already has: the Last-Event-ID header
// of a reconnecting EventSource (newer than the URL it was opened with),
// else ?after=.
func parseAfter(req *http.Request) (uint64, error) {
	s := req.Header.Get("Last-Event-ID")
	if s == "" {
		s = req.URL.Query().Get("after")
	}
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("after=%q is not a request id; pass the \"last\" value of a previous answer, or leave it out", s)
	}
	return n, nil
}

func (r *Recorder) serveTrafficJSON(w http.ResponseWriter, req *http.Request) {
	after, err := parseAfter(req)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	after = r.traffic.resume(after)
	entries, _ := r.traffic.since(after)
	page := trafficPage{Last: r.traffic.last(), Capacity: r.traffic.size, Entries: make([]trafficEntry, 0, len(entries))}
	for _, e := range entries {
		page.Entries = append(page.Entries, toTrafficEntry(e))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	// The encoder escapes <, > and & in strings, so even a page that
	// wrongly used this as HTML would not run an attacker's path.
	_ = json.NewEncoder(w).Encode(page)
}

func writeJSONError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

func (r *Recorder) serveTrafficEvents(w http.ResponseWriter, req *http.Request) {
	after, err := parseAfter(req)
	if err != nil {
		writeJSONError(w, http.StatusBadRequest, err)
		return
	}
	resumed := r.traffic.resume(after)
	rc := http.NewResponseController(w)
	// A stream outlives any write timeout set for the admin server's
	// ordinary requests; servers without deadlines report an error we can
	// ignore.
	_ = rc.SetWriteDeadline(time.Time{})

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 2000\n\n"); err != nil {
		return
	}
	if resumed != after {
		// The client saw ids from before a restart; they are reused now,
		// so it must drop what it shows before taking new entries.
		if _, err := fmt.Fprint(w, "event: reset\ndata: {}\n\n"); err != nil {
			return
		}
		after = resumed
	}
	if err := rc.Flush(); err != nil {
		return
	}

	end := time.NewTimer(streamLifetime)
	defer end.Stop()
	keepalive := time.NewTicker(streamKeepalive)
	defer keepalive.Stop()
	for {
		entries, changed := r.traffic.since(after)
		for _, e := range entries {
			data, err := json.Marshal(toTrafficEntry(e))
			if err != nil {
				return
			}
			// JSON has no raw newlines, so one data line carries it all.
			if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", e.seq, data); err != nil {
				return
			}
			after = e.seq
		}
		if len(entries) > 0 {
			if err := rc.Flush(); err != nil {
				return
			}
		}
		select {
		case <-req.Context().Done():
			return
		case <-end.C:
			return
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		case <-changed:
		}
	}
}
