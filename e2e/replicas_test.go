package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
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
		r := &replicaProxy{https: fmt.Sprintf("127.0.0.%d:%d", i+2, httpsPort), callPort: freePort(t), adminPort: freePort(t)}
		backend := newWhoBackend(t, r.callPort)
		local := fmt.Sprintf("https = \"127.0.0.1:%d\"", httpsPort)
		settings := localSettings(t, a, freePort(t), httpsPort, fmt.Sprintf("127.0.0.1:%d", r.adminPort))
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

// metric sums the samples of the admin listener's metrics that start
// with prefix.
func (r *replicaProxy) metric(t *testing.T, prefix string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", r.adminPort))
	if err != nil {
		t.Fatal(err)
	}
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
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", r.adminPort))
	if err != nil {
		t.Fatal(err)
	}
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
	a := atmo.Start(t, atmo.Options{
		Accounts:    []atmo.Account{{Handle: "alice.test", Password: alicePassword}},
		HostAliases: []string{confHost},
		ExtraCAFile: caFile,
	})
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
	callsOnExpiredToken(t, rs, sess)

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
// the replicas refresh once in all.
func callsOnExpiredToken(t *testing.T, rs []*replicaProxy, sess sessions.Session) {
	t.Helper()
	const n = 30
	before := 0.0
	for _, r := range rs {
		before += r.metric(t, `ioproxy_oauth_token_refreshes_total{result="ok"}`)
	}
	if _, err := rs[0].srv.Store().Update(context.Background(), sess.ID, func(s *sessions.Session) error {
		s.TokenExpiry = time.Now().Add(-time.Second)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	codes := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r := rs[i%len(rs)]
			body := fmt.Sprintf(`{"repo":%q,"collection":"xyz.statusphere.status","record":{"$type":"xyz.statusphere.status","status":"🦋","createdAt":%q}}`,
				sess.DID, time.Now().UTC().Format(time.RFC3339Nano))
			req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/xrpc/com.atproto.repo.createRecord", r.callPort), strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("User-Did", sess.DID)
			req.Header.Set("Proxy-Session", sess.ProxyKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes[i] = err.Error()
				return
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			codes[i] = strconv.Itoa(resp.StatusCode)
			if resp.StatusCode != 200 {
				codes[i] += " " + string(out)
			}
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != "200" {
			t.Errorf("call %d through replica %d: %s", i, i%len(rs), c)
		}
	}
	after := 0.0
	for _, r := range rs {
		after += r.metric(t, `ioproxy_oauth_token_refreshes_total{result="ok"}`)
	}
	if after-before != 1 {
		t.Errorf("%v token refreshes over %d replicas for %d calls, want exactly 1", after-before, len(rs), n)
	}
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
