package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/server"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// replicaProxy is one of the ioproxies that share a Redis in
// TestReplicasShareOneRedis: its own address, ports, data dir and
// backend.
type replicaProxy struct {
	srv                 *server.Server
	https               string // its https listener, 127.0.0.N:port
	callPort, adminPort int
}

// startReplicas starts n ioproxies for confHost on one Redis, as n
// processes behind a load balancer would run. They listen on one https
// port, each on its own loopback address (127.0.0.2, .3, …), so that all
// are the same OAuth client: the client id names the port.
func startReplicas(t *testing.T, a *atmo.Atmosphere, redisURL, certFile, keyFile string, httpsPort, n int) []*replicaProxy {
	t.Helper()
	key := sealed.Generate()
	var out []*replicaProxy
	for i := range n {
		ps := freePorts(t, 3)
		r := &replicaProxy{https: fmt.Sprintf("127.0.0.%d:%d", i+2, httpsPort), callPort: ps[0], adminPort: ps[1]}
		backend := newWhoBackend(t, r.callPort)
		local := fmt.Sprintf("https = \"127.0.0.1:%d\"", httpsPort)
		settings := localSettings(t, a, ps[2], httpsPort, fmt.Sprintf("127.0.0.1:%d", r.adminPort))
		if !strings.Contains(settings, local) {
			t.Fatalf("localSettings no longer writes %s", local)
		}
		cfg := strings.Replace(settings, local, fmt.Sprintf("https = %q", r.https), 1) + fmt.Sprintf(`
sessions {
  store          = "redis"
  url            = %q
  encryption_key = %q
}
host %q {
  backend = %q
  atproto {
    name   = "Statusphere (replicas)"
    scopes = ["atproto", "transition:generic"]
  }
  tls {
    cert_file = %q
    key_file  = %q
  }
}
call "atproto" {
  port     = %d
  endpoint = "@"
}
`, redisURL, key, confHost, backend.URL, certFile, keyFile, r.callPort)
		r.srv = startProxy(t, cfg)
		out = append(out, r)
	}
	return out
}

// get fetches path from the replica's https listener under confHost.
func (r *replicaProxy) get(t *testing.T, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: confHost, InsecureSkipVerify: true}, // the test CA's leaf; what matters is the body
	}}
	req, _ := http.NewRequest("GET", "https://"+r.https+path, nil)
	req.Host = confHost
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// admin fetches path from the replica's admin listener, within 10 s.
func (r *replicaProxy) admin(t *testing.T, path string) *http.Response {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", r.adminPort, path))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// metric sums the samples of the admin listener's metrics that start
// with prefix.
func (r *replicaProxy) metric(t *testing.T, prefix string) float64 {
	t.Helper()
	resp := r.admin(t, "/metrics")
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, prefix) {
			v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			sum += v
		}
	}
	return sum
}

// readyz is the status of the replica's /readyz.
func (r *replicaProxy) readyz(t *testing.T) int {
	t.Helper()
	resp := r.admin(t, "/readyz")
	resp.Body.Close()
	return resp.StatusCode
}

// TestReplicasShareOneRedis runs three ioproxies on one Redis against the
// real PDS: a sign-in through one is signed in on all, a write through
// another's calling port lands in the PDS, every replica publishes the
// one client key, concurrent calls on an expired token over all three
// cost one refresh, a Redis restart loses no session, and a sign-out on
// one is refused by the others within a second.
func TestReplicasShareOneRedis(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := testCA(t, dir, confHost)
	opts, asLog := countPDSRequests(t, atmo.Options{
		Accounts:    []atmo.Account{{Handle: "alice.test", Password: alicePassword}},
		HostAliases: []string{confHost},
		ExtraCAFile: caFile,
	})
	a := atmo.Start(t, opts)
	asLog.pds = a.PDSURL
	alice := a.Accounts[0]
	redis := redistest.Start(t, redistest.Options{AOF: true})
	lb := startSwitchboard(t)
	rs := startReplicas(t, a, redis.URL(), certFile, keyFile, lb.port, 3)
	base := fmt.Sprintf("https://%s:%d", confHost, lb.port)

	// One client key: the PDS may fetch /@/jwks.json from any replica.
	_, jwks := rs[0].get(t, "/@/jwks.json")
	for i, r := range rs[1:] {
		if _, got := r.get(t, "/@/jwks.json"); got != jwks {
			t.Fatalf("replica %d publishes another client key:\n%s\nwant\n%s", i+1, got, jwks)
		}
	}

	// The sign-in starts on replica 0 and comes back to replica 1.
	b := browser.Start(t, browser.Options{HostResolverRules: map[string]string{confHost: "127.0.0.1"}, IgnoreCertErrors: true})
	ctx := b.Ctx()
	lb.route(rs[0].https)
	navigate(ctx, t, base+"/@/signin?redirect=%2F")
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := chromedp.Do(sctx, chromedp.SetValue(chromedp.CSS(`#handle`), "alice.test"), chromedp.Click(chromedp.CSS(`button[type=submit]`)))
	cancel()
	if err != nil {
		t.Fatalf("submit ioproxy sign-in form: %v", err)
	}
	lb.route(rs[1].https)
	if err := b.SignInAtPDS(ctx, alicePassword); err != nil {
		t.Fatalf("sign in at the PDS: %v", err)
	}
	if got := text(ctx, t, "#did"); got != alice.DID {
		t.Fatalf("after a sign-in that came back to replica 1, the backend saw User-Did %q, want %q", got, alice.DID)
	}
	for i, r := range rs {
		lb.route(r.https)
		navigate(ctx, t, base+"/")
		if got := text(ctx, t, "#did"); got != alice.DID {
			t.Fatalf("replica %d: the backend saw User-Did %q, want %q", i, got, alice.DID)
		}
	}
	// rs[2] is routed: its backend writes through its calling port.
	navigate(ctx, t, base+"/post")
	if got := text(ctx, t, "#status"); got != "200" {
		t.Fatalf("createRecord through replica 2's calling port: status %s: %s", got, text(ctx, t, "#result"))
	}

	sess := onlySession(t, rs[0].srv.Store())
	callsOnExpiredToken(t, rs, sess, asLog)

	// A Redis restart (AOF) loses no session; /readyz says when Redis
	// is away.
	redis.Stop(t)
	waitFor(t, "/readyz unready while Redis is down", func() bool { return rs[0].readyz(t) == http.StatusServiceUnavailable })
	redis.Restart(t)
	waitFor(t, "/readyz ready once Redis is back", func() bool { return rs[0].readyz(t) == http.StatusOK })
	if _, err := rs[1].srv.Store().Latest(context.Background(), sess.ID); err != nil {
		t.Fatalf("the session after a Redis restart: %v", err)
	}

	// Sign out through replica 1; replica 0 refuses the cookie within a
	// second.
	lb.route(rs[1].https)
	navigate(ctx, t, base+"/@/signout")
	sctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	err = chromedp.Do(sctx, chromedp.Click(chromedp.CSS(`button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`#did`)))
	cancel()
	if err != nil {
		t.Fatalf("sign out: %v", err)
	}
	signedOut := time.Now()
	lb.route(rs[0].https)
	navigate(ctx, t, base+"/")
	if got := text(ctx, t, "#did"); got != "" {
		t.Fatalf("replica 0 still signed in %v after a sign-out on replica 1: User-Did %q", time.Since(signedOut), got)
	}
}

// onlySession is the one session in store.
func onlySession(t *testing.T, store sessions.Store) sessions.Session {
	t.Helper()
	list, err := store.List(context.Background())
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %d sessions, %v; want 1", len(list), err)
	}
	return list[0]
}

// callsOnExpiredToken expires the session's access token and sends
// calls through every replica's calling port at once: all succeed, and
// the replicas refresh once in all, as both our metric and the
// authorization server's own request log tell.
//
// Three calls in four are reads (getSession, whose answer names the
// account, so each proves the call went out as the user), one in four a
// createRecord: the PDS commits one repo's writes one after another, so
// a hundred writes mostly time its commit queue (twice as long here),
// while the race for the refresh is over in the first milliseconds; the
// writes keep a POST with a body in that race.
func callsOnExpiredToken(t *testing.T, rs []*replicaProxy, sess sessions.Session, as *pdsRequests) {
	t.Helper()
	const n = 100
	const refreshes = `ioproxy_oauth_token_refreshes_total{result="ok"}`
	const asNonceRetries = `ioproxy_dpop_nonce_retries_total{server="auth_server"}`
	sum := func(prefix string) float64 {
		var v float64
		for _, r := range rs {
			v += r.metric(t, prefix)
		}
		return v
	}
	refreshesBefore, retriesBefore := sum(refreshes), sum(asNonceRetries)
	from := as.mark(t)
	if _, err := rs[0].srv.Store().Update(context.Background(), sess.ID, func(s *sessions.Session) error {
		s.TokenExpiry = time.Now().Add(-time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Every call is bounded by ctx and the client's timeout, so the
	// wait below ends even if a replica hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	start := make(chan struct{}) // released at once, so that the calls race for the refresh
	codes := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			codes[i] = call(ctx, client, rs[i%len(rs)], sess, i%4 == 0, start)
		})
	}
	began := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d calls on an expired token over %d replicas in %v", n, len(rs), time.Since(began).Round(time.Millisecond))
	for i, c := range codes {
		if c != "" {
			t.Errorf("call %d through replica %d: %s", i, i%len(rs), c)
		}
	}

	if got := sum(refreshes) - refreshesBefore; got != 1 {
		t.Errorf("our metric: %v token refreshes over %d replicas for %d calls, want exactly 1", got, len(rs), n)
	}
	// What the authorization server saw: one token request, granted. The
	// replica that refreshes may never have talked to the server, and
	// takes its DPoP nonce from the session (kept there at sign-in), so
	// it is not refused once for want of one.
	var seen []string
	for _, r := range as.since(t, from) {
		if r.method == http.MethodPost && r.path == "/oauth/token" {
			seen = append(seen, fmt.Sprintf("%d (proof with nonce: %t)", r.status, r.proofNonce))
		}
	}
	t.Logf("POST /oauth/token at the PDS during the calls: %v", seen)
	if len(seen) != 1 || !strings.HasPrefix(seen[0], "200 ") {
		t.Errorf("the PDS answered POST /oauth/token %d times during %d calls: %v; want exactly 1, granted (200)", len(seen), n, seen)
	}
	if retries := sum(asNonceRetries) - retriesBefore; retries != 0 {
		t.Errorf("%v DPoP nonce retries at the authorization server, want none", retries)
	}
}

// call sends one call on the session through r's calling port once start
// is closed: a createRecord if write, else a getSession, which must name
// the session's account. It returns "" on success, else what went wrong.
func call(ctx context.Context, client *http.Client, r *replicaProxy, sess sessions.Session, write bool, start <-chan struct{}) string {
	base := fmt.Sprintf("http://127.0.0.1:%d/xrpc/", r.callPort)
	var req *http.Request
	if write {
		body := fmt.Sprintf(`{"repo":%q,"collection":"xyz.statusphere.status","record":{"$type":"xyz.statusphere.status","status":"🦋","createdAt":%q}}`,
			sess.DID, time.Now().UTC().Format(time.RFC3339Nano))
		req, _ = http.NewRequestWithContext(ctx, http.MethodPost, base+"com.atproto.repo.createRecord", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
	} else {
		req, _ = http.NewRequestWithContext(ctx, http.MethodGet, base+"com.atproto.server.getSession", nil)
	}
	req.Header.Set("User-Did", sess.DID)
	req.Header.Set("Proxy-Session", sess.ProxyKey)
	<-start
	resp, err := client.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Sprintf("%s %s: read the answer: %v", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Sprintf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, out)
	}
	if !write {
		var who struct {
			DID string `json:"did"`
		}
		if err := json.Unmarshal(out, &who); err != nil || who.DID != sess.DID {
			return fmt.Sprintf("getSession answered %s, want did %s", out, sess.DID)
		}
	}
	return ""
}

// pdsRequests counts what the PDS was asked, from the PDS's own request
// log: with LOG_ENABLED, its pino-http middleware, mounted before the
// OAuth routes, writes one JSON line (with responseTime) per request it
// answered. ioproxy's outbound clients have no hook for a counting
// transport, and the token endpoint is on the PDS's own address (its
// OAuth issuer, named by the sessions and the server metadata), so no
// proxy can stand in front of it; the server's log is what came over
// the wire, refused requests included.
type pdsRequests struct {
	pds     string
	forward func(line string) // the lines for the test log, under ATMO_LOG

	mu      sync.Mutex
	partial []byte
	seen    []pdsRequest
	arrived chan struct{} // closed, and replaced, at each request logged
	marks   int
}

// pdsRequest is one request that the PDS answered.
type pdsRequest struct {
	method, path, query string
	status              int
	proofNonce          bool // its DPoP proof carried a nonce
}

// countPDSRequests returns the atmo.Options that make the PDS log its
// requests into a pdsRequests; set its pds field once the PDS is up.
// Under ATMO_LOG the log is written to the test log too (atmo.Start
// would otherwise take the PDS's stderr for that).
func countPDSRequests(t *testing.T, opts atmo.Options) (atmo.Options, *pdsRequests) {
	p := &pdsRequests{arrived: make(chan struct{})}
	if os.Getenv("ATMO_LOG") != "" {
		t.Setenv("ATMO_LOG", "")
		p.forward = func(line string) { t.Logf("atmosphere: %s", line) }
	}
	opts.Log, opts.Stderr = true, p
	return opts, p
}

func (p *pdsRequests) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			break
		}
		line := string(p.partial[:i])
		p.partial = p.partial[i+1:]
		if p.forward != nil {
			p.forward(line)
		}
		if r, ok := parsePDSRequest(line); ok {
			p.seen = append(p.seen, r)
			close(p.arrived)
			p.arrived = make(chan struct{})
		}
	}
	if len(p.partial) > 1<<20 {
		p.partial = p.partial[:0] // no line is that long; drop what cannot be one
	}
	return len(b), nil
}

// parsePDSRequest reads a pino-http line; other lines are not requests.
func parsePDSRequest(line string) (pdsRequest, bool) {
	var rec struct {
		Req *struct {
			Method  string `json:"method"`
			URL     string `json:"url"`
			Headers struct {
				DPoP string `json:"dpop"`
			} `json:"headers"`
		} `json:"req"`
		Res *struct {
			StatusCode int `json:"statusCode"`
		} `json:"res"`
		ResponseTime *float64 `json:"responseTime"`
	}
	if json.Unmarshal([]byte(line), &rec) != nil || rec.Req == nil || rec.Res == nil || rec.ResponseTime == nil {
		return pdsRequest{}, false
	}
	path, query, _ := strings.Cut(rec.Req.URL, "?")
	r := pdsRequest{method: rec.Req.Method, path: path, query: query, status: rec.Res.StatusCode}
	// The log keeps a proof's header and claims and obfuscates its
	// signature.
	if parts := strings.Split(rec.Req.Headers.DPoP, "."); len(parts) == 3 {
		if raw, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			var claims struct {
				Nonce string `json:"nonce"`
			}
			r.proofNonce = json.Unmarshal(raw, &claims) == nil && claims.Nonce != ""
		}
	}
	return r, true
}

// mark sends the PDS a request of its own and waits until the PDS has
// logged it. It returns how many requests were logged before it: node
// writes its log lines in the order it answers, so every request answered
// before the mark was sent is counted by then.
func (p *pdsRequests) mark(t *testing.T) int {
	t.Helper()
	p.mu.Lock()
	p.marks++
	query := fmt.Sprintf("ioproxy-test-mark=%d", p.marks)
	p.mu.Unlock()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(p.pds + "/xrpc/_health?" + query)
	if err != nil {
		t.Fatalf("mark the PDS's request log: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		p.mu.Lock()
		arrived := p.arrived
		for i := len(p.seen) - 1; i >= 0; i-- {
			if p.seen[i].path == "/xrpc/_health" && p.seen[i].query == query {
				p.mu.Unlock()
				return i
			}
		}
		p.mu.Unlock()
		select {
		case <-arrived:
		case <-timeout.C:
			t.Fatalf("the PDS did not log GET /xrpc/_health?%s within 10 s: is LOG_ENABLED honoured?", query)
		}
	}
}

// since is what the PDS answered between from (a mark) and a new mark.
func (p *pdsRequests) since(t *testing.T, from int) []pdsRequest {
	t.Helper()
	to := p.mark(t)
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen[from+1 : to])
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// switchboard is the load balancer in front of the replicas: it passes
// TCP connections (TLS and all) to the replica the test routes to, and
// a new route closes the connections under way, so that the browser's
// next request reaches the new replica.
type switchboard struct {
	ln   net.Listener
	port int

	mu     sync.Mutex
	target string
	conns  map[net.Conn]bool
}

func startSwitchboard(t *testing.T) *switchboard {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &switchboard{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		s.route("")
	})
	go s.serve()
	return s
}

// route sends new connections to addr, and closes those under way.
func (s *switchboard) route(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.target = addr
	for c := range s.conns {
		c.Close()
	}
	clear(s.conns)
}

func (s *switchboard) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.pass(c)
	}
}

// pass joins a client's connection to the routed replica.
func (s *switchboard) pass(c net.Conn) {
	s.mu.Lock()
	target := s.target
	s.mu.Unlock()
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	s.mu.Lock()
	s.conns[c], s.conns[up] = true, true
	s.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	s.mu.Lock()
	delete(s.conns, c)
	delete(s.conns, up)
	s.mu.Unlock()
}
