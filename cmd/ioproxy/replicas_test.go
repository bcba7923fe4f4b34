package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/redistest"
	"github.com/ioproxy/ioproxy/internal/tail"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/redisstore"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// serveProcess is one `ioproxy serve` process of a test.
type serveProcess struct {
	cmd         *exec.Cmd
	logs        *tail.Buffer // written by the process while the test reads
	http, admin int
}

// startServe runs bin with the configuration src and waits for /readyz.
func startServe(t *testing.T, bin, src string, httpPort, adminPort int) *serveProcess {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "io.hcl")
	if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &serveProcess{cmd: exec.Command(bin, "serve", "-config", cfgPath), logs: tail.New(1 << 20), http: httpPort, admin: adminPort}
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ioproxy did not become ready:\n%s", p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// whoAmI is what the backend behind p saw for a request with cookie.
func (p *serveProcess) whoAmI(t *testing.T, cookie string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", p.http), nil)
	req.Host = "app.example.com"
	req.AddCookie(&http.Cookie{Name: "ioproxy-session", Value: cookie})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET through the replica: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Two `ioproxy serve` processes on one Redis: a session works through
// both; one is killed (SIGKILL, nothing flushed) and the other goes on;
// the killed one, started again, has lost nothing either.
func TestReplicaProcessKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	redis := redistest.Start(t, redistest.Options{AOF: true})
	bin := filepath.Join(t.TempDir(), "ioproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "did=%s", r.Header.Get("User-Did"))
	}))
	defer backend.Close()
	key := sealed.Generate()
	config := func(httpPort, adminPort int) string {
		return fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "127.0.0.1:%d" }
sessions {
  store          = "redis"
  url            = %q
  encryption_key = %q
}
host "app.example.com" {
  backend = %q
  atproto {}
  tls { mode = "off" }
}
`, filepath.Join(t.TempDir(), "data"), httpPort, adminPort, redis.URL(), key, backend.URL)
	}
	ps := freePorts(t, 4)
	ports := [][2]int{{ps[0], ps[1]}, {ps[2], ps[3]}}
	a := startServe(t, bin, config(ports[0][0], ports[0][1]), ports[0][0], ports[0][1])
	b := startServe(t, bin, config(ports[1][0], ports[1][1]), ports[1][0], ports[1][1])

	// A signed-in session, as a callback on either would store it.
	keys, err := sealed.ParseKeys([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	store, err := redisstore.Open(context.Background(), redisstore.Config{URL: redis.URL(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Now()
	sess := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "app.example.com", DID: "did:plc:alice",
		Handle: "alice.test", AccessToken: "at", RefreshToken: "rt", CreatedAt: now, HandleCheckedAt: now,
		TokenExpiry: now.Add(time.Hour), Expiry: now.Add(24 * time.Hour)}
	if _, err := store.Create(context.Background(), sess); err != nil {
		t.Fatal(err)
	}
	for i, p := range []*serveProcess{a, b} {
		if got := p.whoAmI(t, sess.ID); got != "did=did:plc:alice" {
			t.Fatalf("replica %d: the backend saw %q", i, got)
		}
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	if got := b.whoAmI(t, sess.ID); got != "did=did:plc:alice" {
		t.Fatalf("after the other replica was killed, the backend saw %q", got)
	}
	a = startServe(t, bin, config(ports[0][0], ports[0][1]), ports[0][0], ports[0][1])
	if got := a.whoAmI(t, sess.ID); got != "did=did:plc:alice" {
		t.Fatalf("the killed replica, started again, shows %q:\n%s", got, a.logs.String())
	}
	if strings.Contains(a.logs.String(), "level=ERROR") {
		t.Errorf("errors in the restarted replica's log:\n%s", a.logs.String())
	}
}
