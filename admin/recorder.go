// Package admin is ioproxy's operations surface: the Recorder that ingress,
// calling and sign-in report to (access logs, Prometheus metrics and a ring
// of recent traffic), and the handler of the admin listener that serves
// /metrics, /healthz, /readyz and the live traffic view.
package admin

import (
	"context"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/internal/textutil"
)

// DefaultTrafficSize is how many recent requests the traffic view keeps
// when RecorderConfig.TrafficSize is zero.
const DefaultTrafficSize = 500

// maxFieldLen bounds the strings kept per request, so that one client
// sending huge paths cannot make the ring (or a log line) large.
const maxFieldLen = 1024

// durationBuckets reach past the default call timeout (30s), so that slow
// upstreams land in a bucket rather than only in +Inf.
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// RecorderConfig configures a Recorder.
type RecorderConfig struct {
	// Logger receives one access-log line per request; none are written
	// when it is nil.
	Logger *slog.Logger
	// TrafficSize is how many recent requests the traffic view keeps
	// (DefaultTrafficSize when zero or less).
	TrafficSize int
	// Hosts are extra Host names (such as "admin.internal") under which
	// the admin listener answers. IP addresses and localhost are always
	// allowed; anything else is refused so that a web page cannot read
	// the metrics or the traffic view through DNS rebinding.
	Hosts []string
	// Pprof serves Go's profiles at /debug/pprof/, behind the same host
	// guard: for measuring, off unless asked for (admin { pprof = true }),
	// as a profile shows what a process is doing.
	Pprof bool
	// LogDropped, when set, counts the log lines dropped because the log
	// output fell behind (LogWriter.Dropped), for the metrics.
	LogDropped func() uint64
}

// Recorder turns reports from the rest of ioproxy into access logs,
// Prometheus metrics and the traffic ring. It is safe for concurrent use,
// and every method is a no-op on a nil *Recorder.
type Recorder struct {
	log      *slog.Logger
	registry *prometheus.Registry
	hosts    map[string]bool
	pprof    bool

	metrics

	// listeners are the collectors of each listener, by role, so that a
	// listener bound again on a reload replaces its series.
	listenersMu sync.Mutex
	listeners   map[string][]prometheus.Collector

	sessions atomic.Pointer[func() int]
	traffic  *ring
}

var _ observe.Recorder = (*Recorder)(nil)

// metrics are the Recorder's own series.
type metrics struct {
	ingressTotal     *prometheus.CounterVec
	ingressDuration  *prometheus.HistogramVec
	callTotal        *prometheus.CounterVec
	callDuration     *prometheus.HistogramVec
	nonceRetries     *prometheus.CounterVec
	upstreamDuration *prometheus.HistogramVec
	tokenRefreshes   *prometheus.CounterVec
	signIns          *prometheus.CounterVec
	reloads          *prometheus.CounterVec
	lastReload       prometheus.Gauge
}

func newMetrics() metrics {
	counter := func(subsystem, name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "ioproxy", Subsystem: subsystem, Name: name, Help: help}, labels)
	}
	histogram := func(subsystem, name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "ioproxy", Subsystem: subsystem, Name: name, Help: help, Buckets: durationBuckets}, labels)
	}
	return metrics{
		ingressTotal: counter("ingress", "requests_total", "Ingress requests by host and response status.", "host", "status"),
		ingressDuration: histogram("ingress", "request_duration_seconds",
			"Time to answer ingress requests, backend included, by host.", "host"),
		callTotal: counter("calls", "total",
			"Requests through calling ports by call block, operation and response status.", "call", "operation", "status"),
		callDuration: histogram("call", "duration_seconds",
			"Time to answer calls, upstream retries included, by call block and operation.", "call", "operation"),
		nonceRetries: counter("dpop", "nonce_retries_total",
			"Requests sent again because a server asked for a new DPoP nonce, by kind of server (pds or auth_server).", "server"),
		upstreamDuration: histogram("", "upstream_response_seconds",
			"Time from sending a request upstream to its response headers, by kind (ingress or call) and host or call block.", "kind", "source"),
		tokenRefreshes: counter("oauth", "token_refreshes_total", "OAuth token refreshes by result (ok or failed).", "result"),
		signIns: counter("oauth", "signins_total",
			"Sign-ins by stage: started, completed, failed, or store_full (refused: the session store is full).", "stage"),
		reloads: counter("config", "reloads_total",
			"Configuration reloads (SIGHUP, ioproxy reload) by result: ok, or failed (the running configuration stayed).", "result"),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ioproxy", Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "When the configuration in use was applied (the start, or the last reload that succeeded), in Unix seconds.",
		}),
	}
}

func (m metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.ingressTotal, m.ingressDuration, m.callTotal, m.callDuration,
		m.nonceRetries, m.upstreamDuration, m.tokenRefreshes, m.signIns, m.reloads, m.lastReload}
}

// NewRecorder returns a Recorder with its own Prometheus registry.
func NewRecorder(cfg RecorderConfig) *Recorder {
	size := cfg.TrafficSize
	if size <= 0 {
		size = DefaultTrafficSize
	}
	r := &Recorder{
		log:       cfg.Logger,
		registry:  prometheus.NewRegistry(),
		hosts:     map[string]bool{},
		pprof:     cfg.Pprof,
		listeners: map[string][]prometheus.Collector{},
		traffic:   newRing(size),
		metrics:   newMetrics(),
	}
	for _, h := range cfg.Hosts {
		r.hosts[strings.TrimSuffix(strings.ToLower(h), ".")] = true
	}
	// Series that dashboards divide by exist from the start, at zero.
	for _, s := range []string{observe.SignInStarted, observe.SignInCompleted, observe.SignInFailed, observe.SignInStoreFull} {
		r.signIns.WithLabelValues(s)
	}
	r.tokenRefreshes.WithLabelValues("ok")
	r.tokenRefreshes.WithLabelValues("failed")
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("failed")
	r.lastReload.SetToCurrentTime()

	r.registry.MustRegister(r.metrics.collectors()...)
	r.registry.MustRegister(
		sessionCollector{r: r, desc: prometheus.NewDesc(
			"ioproxy_sessions_active", "Signed-in sessions in the store.", nil, nil)},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if dropped := cfg.LogDropped; dropped != nil {
		r.registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "ioproxy", Subsystem: "log", Name: "lines_dropped_total",
			Help: "Log lines dropped because the log output fell behind.",
		}, func() float64 { return float64(dropped()) }))
	}
	return r
}

// Registry is the Recorder's own Prometheus registry, for packages that
// want to register collectors of their own; nil on a nil Recorder.
func (r *Recorder) Registry() *prometheus.Registry {
	if r == nil {
		return nil
	}
	return r.registry
}

// Request records one finished ingress request or call: an access-log
// line, its metrics and an entry in the traffic view.
func (r *Recorder) Request(req observe.Request) {
	if r == nil {
		return
	}
	if req.Time.IsZero() {
		req.Time = time.Now()
	}
	req.Path = cleanPath(req.Path)
	req.Upstream = cleanUpstream(req.Upstream)
	req.Method = textutil.Clip(req.Method, 32)
	req.Remote = textutil.Clip(req.Remote, 128)
	req.DID = textutil.Clip(req.DID, 256)

	status := strconv.Itoa(req.Status)
	secs := req.Duration.Seconds()
	switch req.Kind {
	case observe.KindIngress:
		r.ingressTotal.WithLabelValues(req.Source, status).Inc()
		r.ingressDuration.WithLabelValues(req.Source).Observe(secs)
	case observe.KindCall:
		r.callTotal.WithLabelValues(req.Source, req.Operation, status).Inc()
		r.callDuration.WithLabelValues(req.Source, req.Operation).Observe(secs)
	}
	r.accessLog(req)
	r.traffic.add(req)
}

func (r *Recorder) accessLog(req observe.Request) {
	if r.log == nil {
		return
	}
	level := slog.LevelInfo
	if req.Status >= 500 || req.Aborted {
		level = slog.LevelWarn
	}
	if !r.log.Enabled(context.Background(), level) {
		return // log { level = "warn" }: no line to build
	}
	sourceKey := "host"
	if req.Kind == observe.KindCall {
		sourceKey = "call"
	}
	attrs := make([]slog.Attr, 0, 10)
	attrs = append(attrs,
		slog.String("kind", req.Kind),
		slog.String(sourceKey, req.Source),
	)
	if req.Operation != "" {
		attrs = append(attrs, slog.String("operation", req.Operation))
	}
	attrs = append(attrs,
		slog.String("method", req.Method),
		slog.String("path", req.Path),
		slog.Int("status", req.Status),
		slog.Duration("duration", req.Duration),
	)
	if req.Upstream != "" {
		attrs = append(attrs, slog.String("upstream", req.Upstream))
	}
	if req.DID != "" {
		attrs = append(attrs, slog.String("did", req.DID))
	}
	if req.Remote != "" {
		attrs = append(attrs, slog.String("remote", req.Remote))
	}
	if req.Aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	// The request has finished, so there is no request context left to
	// carry; handlers that need one read from their own.
	r.log.LogAttrs(context.Background(), level, "request", attrs...)
}

// NonceRetry counts a request sent again because server (an authorization
// server or PDS origin) answered use_dpop_nonce.
func (r *Recorder) NonceRetry(server string) {
	if r == nil {
		return
	}
	// Servers are chosen by users: the label is the kind of server only,
	// so it cannot grow without bound.
	if server != observe.NonceServerPDS && server != observe.NonceServerAuth {
		server = "other"
	}
	r.nonceRetries.WithLabelValues(server).Inc()
}

// UpstreamDuration observes how long an upstream took to answer with
// headers: a backend for ingress (source: the host), a PDS or other
// upstream for calls (source: the call block). Kind is observe.KindIngress or
// observe.KindCall.
func (r *Recorder) UpstreamDuration(kind, source string, d time.Duration) {
	if r == nil {
		return
	}
	r.upstreamDuration.WithLabelValues(textutil.Clip(kind, 16), textutil.Clip(source, 256)).Observe(d.Seconds())
}

// TokenRefresh counts an OAuth token refresh and whether it succeeded.
func (r *Recorder) TokenRefresh(ok bool) {
	if r == nil {
		return
	}
	result := "failed"
	if ok {
		result = "ok"
	}
	r.tokenRefreshes.WithLabelValues(result).Inc()
}

// SignIn counts a sign-in reaching stage: observe.SignInStarted, observe.SignInCompleted
// or observe.SignInFailed. Other stages are counted as "other", so that a typo
// cannot grow the metric.
func (r *Recorder) SignIn(stage string) {
	if r == nil {
		return
	}
	switch stage {
	case observe.SignInStarted, observe.SignInCompleted, observe.SignInFailed, observe.SignInStoreFull:
	default:
		stage = "other"
	}
	r.signIns.WithLabelValues(stage).Inc()
}

// Listener exports a listener's connection counts: open connections, and
// those refused (answered 503, or closed at once) because the listener
// held max_connections. role names the listener ("http", "https",
// "admin", "call:<label>"), from the configuration only.
func (r *Recorder) Listener(role string, open func() int, refused func() uint64) {
	if r == nil {
		return
	}
	labels := prometheus.Labels{"listener": role}
	cs := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "ioproxy", Name: "connections_open", ConstLabels: labels,
			Help: "Connections open on a listener.",
		}, func() float64 { return float64(open()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: "ioproxy", Name: "connections_refused_total", ConstLabels: labels,
			Help: "Connections refused because the listener held max_connections (answered 503, or closed at once).",
		}, func() float64 { return float64(refused()) }),
	}
	r.listenersMu.Lock()
	defer r.listenersMu.Unlock()
	r.forgetListener(role)
	for _, c := range cs {
		if err := r.registry.Register(c); err != nil {
			r.log.Warn("listener metrics", "listener", role, "err", err)
		}
	}
	r.listeners[role] = cs
}

// ForgetListener drops the series of a listener that a reload closed.
func (r *Recorder) ForgetListener(role string) {
	if r == nil {
		return
	}
	r.listenersMu.Lock()
	defer r.listenersMu.Unlock()
	r.forgetListener(role)
}

func (r *Recorder) forgetListener(role string) {
	for _, c := range r.listeners[role] {
		r.registry.Unregister(c)
	}
	delete(r.listeners, role)
}

// Reload counts a reload of the configuration; ok says whether it was
// applied.
func (r *Recorder) Reload(ok bool) {
	if r == nil {
		return
	}
	if !ok {
		r.reloads.WithLabelValues("failed").Inc()
		return
	}
	r.reloads.WithLabelValues("ok").Inc()
	r.lastReload.SetToCurrentTime()
}

// SetSessionCounter sets the function that reports the number of active
// sessions for the ioproxy_sessions_active gauge; it is called at every
// scrape. Until it is set (or after it is set to nil) the gauge is absent.
func (r *Recorder) SetSessionCounter(f func() int) {
	if r == nil {
		return
	}
	if f == nil {
		r.sessions.Store(nil)
		return
	}
	r.sessions.Store(&f)
}

// sessionCollector reports the session gauge only when a counter is set,
// so that "no data" is not shown as zero sessions.
type sessionCollector struct {
	r    *Recorder
	desc *prometheus.Desc
}

func (c sessionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c sessionCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.r.sessions.Load()
	if f == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64((*f)()))
}

// cleanPath keeps the path only: query strings and fragments may hold
// authorization codes, state or tokens.
func cleanPath(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	return textutil.Clip(p, maxFieldLen)
}

// cleanUpstream drops user info, query and fragment from an upstream URL.
func cleanUpstream(u string) string {
	if strings.Contains(u, "://") {
		if parsed, err := url.Parse(u); err == nil {
			parsed.User = nil
			parsed.RawQuery, parsed.ForceQuery = "", false
			parsed.Fragment, parsed.RawFragment = "", ""
			u = parsed.String()
		} else {
			u = cleanPath(u)
		}
	}
	return textutil.Clip(u, maxFieldLen)
}

// ring keeps the most recent requests, each with a sequence number so that
// the traffic view can ask for what came after the last one it has.
type ring struct {
	mu      sync.Mutex
	size    int
	entries []entry
	next    int    // index of the slot the next entry goes to
	seq     uint64 // sequence number of the newest entry
	// changed is closed and replaced on every add, waking every stream.
	changed chan struct{}
}

type entry struct {
	seq uint64
	req observe.Request
}

func newRing(size int) *ring {
	return &ring{size: size, entries: make([]entry, 0, size), changed: make(chan struct{})}
}

func (g *ring) add(req observe.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.seq++
	e := entry{seq: g.seq, req: req}
	if len(g.entries) < g.size {
		g.entries = append(g.entries, e)
	} else {
		g.entries[g.next] = e
	}
	g.next = (g.next + 1) % g.size
	close(g.changed)
	g.changed = make(chan struct{})
}

// since returns the entries newer than seq, oldest first, and a channel
// that is closed when another entry arrives.
func (g *ring) since(seq uint64) ([]entry, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []entry
	n := len(g.entries)
	start := 0
	if n == g.size {
		start = g.next // the oldest entry once the ring is full
	}
	for i := range n {
		e := g.entries[(start+i)%n]
		if e.seq > seq {
			out = append(out, e)
		}
	}
	return out, g.changed
}

// last is the id of the newest entry (0 when none).
func (g *ring) last() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seq
}

// resume turns the id a client already has into where to continue from:
// an id from the future means the process restarted since, so the client
// gets everything again.
func (g *ring) resume(after uint64) uint64 {
	if after > g.last() {
		return 0
	}
	return after
}
