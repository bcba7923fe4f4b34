package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/ioproxy/ioproxy/config"
)

// reloadable is a configuration file that a test rewrites, and the
// server started from it with a Load that reads it again.
type reloadable struct {
	t    *testing.T
	path string
	srv  *Server
}

func startReloadable(t *testing.T, src string) *reloadable {
	t.Helper()
	rl := &reloadable{t: t, path: filepath.Join(t.TempDir(), "io.hcl")}
	rl.write(src)
	load := func() (*config.Config, hcl.Diagnostics) {
		return config.LoadAll([]string{rl.path}, config.Options{LookupEnv: func(string) (string, bool) { return "", false }})
	}
	cfg, diags := load()
	if diags.HasErrors() {
		t.Fatalf("config: %v", diags)
	}
	s, err := Start(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler), ShutdownTimeout: 2 * time.Second, Load: load})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	rl.srv = s
	return rl
}

func (rl *reloadable) write(src string) {
	rl.t.Helper()
	if err := os.WriteFile(rl.path, []byte(src), 0o600); err != nil {
		rl.t.Fatal(err)
	}
}

// reload writes src and reloads it, failing the test on an error.
func (rl *reloadable) reload(src string) ReloadReport {
	rl.t.Helper()
	rl.write(src)
	rep, err := rl.srv.Reload(context.Background())
	if err != nil {
		rl.t.Fatalf("reload: %v", err)
	}
	return rep
}

// get asks the http listener for host and path, with an API key when
// key is set.
func get(t *testing.T, addr, host, path, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	req.Host = host
	if key != "" {
		req.SetBasicAuth("ci", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// reloadConfig is the configuration of the reload tests in one of two
// shapes: odd turns send app to backend B, add a host and a calling
// port, and close the guarded host to all but an API key.
func reloadConfig(dataDir string, ports [3]int, a, b string, turn int) string {
	backend, extra, guard := a, "", ""
	if turn%2 == 1 {
		backend = b
		extra = fmt.Sprintf(`
host "extra.localhost" { backend = %q }
call "extra" {
  port     = %d
  endpoint = "extra.localhost"
}`, a, ports[2])
		guard = `apikey_auth { users = ["ci:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ="] }`
	}
	return fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "127.0.0.1:%d" }
host "app.localhost" { backend = %q }
host "guarded.localhost" {
  backend = %q
  %s
}
%s
`, dataDir, ports[0], ports[1], backend, a, guard, extra)
}

// Twenty reloads under a stream of requests and one long answer: no
// request fails, the long answer runs to its end, and each reload's
// routes, access rules and calling ports take effect at once.
func TestReloadUnderLoad(t *testing.T) {
	stream := func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/stream" {
			return false
		}
		for i := range 40 {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(25 * time.Millisecond)
		}
		return true
	}
	backendA := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !stream(w, r) {
			fmt.Fprint(w, "A")
		}
	}))
	defer backendA.Close()
	backendB := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "B") }))
	defer backendB.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 3)
	ports := [3]int{ps[0], ps[1], ps[2]}
	cfgAt := func(turn int) string { return reloadConfig(dataDir, ports, backendA.URL, backendB.URL, turn) }
	rl := startReloadable(t, cfgAt(0))
	addr := rl.srv.Addrs()["http"]

	// The long answer begins under the first configuration and ends
	// after the last reload.
	streamed, begun := make(chan error, 1), make(chan struct{})
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/stream", nil)
		req.Host = "app.localhost"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			streamed <- err
			return
		}
		defer resp.Body.Close()
		lines := 0
		sc := bufio.NewScanner(resp.Body)
		for ; sc.Scan(); lines++ {
			if lines == 0 {
				close(begun)
			}
		}
		if lines != 40 {
			streamed <- fmt.Errorf("the stream broke off after %d of 40 chunks (%d, %v)", lines, resp.StatusCode, sc.Err())
			return
		}
		streamed <- nil
	}()

	select {
	case <-begun:
	case err := <-streamed:
		t.Fatal(err)
	}
	var stop atomic.Bool
	var failures atomic.Int64
	var sent atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for !stop.Load() {
				req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
				req.Host = "app.localhost"
				resp, err := client.Do(req)
				sent.Add(1)
				if err != nil {
					failures.Add(1)
					t.Errorf("request during reloads: %v", err)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || (string(b) != "A" && string(b) != "B") {
					failures.Add(1)
					t.Errorf("request during reloads: %d %q", resp.StatusCode, b)
				}
			}
		})
	}

	for turn := 1; turn <= 20; turn++ {
		rep := rl.reload(cfgAt(turn))
		odd := turn%2 == 1
		wantBackend, wantHosts := "A", 2
		if odd {
			wantBackend, wantHosts = "B", 3
		}
		if rep.Hosts != wantHosts || len(rep.Restart) != 0 {
			t.Fatalf("turn %d: report %+v", turn, rep)
		}
		if code, body := get(t, addr, "app.localhost", "/", ""); code != 200 || body != wantBackend {
			t.Fatalf("turn %d: app answered %d %q, want %s", turn, code, body, wantBackend)
		}
		code, _ := get(t, addr, "extra.localhost", "/", "")
		guarded, _ := get(t, addr, "guarded.localhost", "/", "")
		keyed, _ := get(t, addr, "guarded.localhost", "/", "secret")
		if odd {
			callCode, callBody := get(t, rl.srv.Addrs()["call:extra"], "127.0.0.1", "/", "")
			if code != 200 || guarded != http.StatusUnauthorized || keyed != 200 || callCode != 200 || callBody != "A" {
				t.Fatalf("turn %d: extra %d, guarded %d, with key %d, call %d %q", turn, code, guarded, keyed, callCode, callBody)
			}
		} else {
			if code != 404 || guarded != 200 {
				t.Fatalf("turn %d: extra %d (want 404), guarded %d (want 200)", turn, code, guarded)
			}
			if _, ok := rl.srv.Addrs()["call:extra"]; ok {
				t.Fatalf("turn %d: the calling port of a removed call block is still listed", turn)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	if err := <-streamed; err != nil {
		t.Fatal(err)
	}
	if failures.Load() != 0 || sent.Load() < 20 {
		t.Fatalf("%d of %d requests failed during the reloads", failures.Load(), sent.Load())
	}
	metrics := adminGet(t, rl.srv.Addrs()["admin"], "/metrics")
	if !strings.Contains(metrics, `ioproxy_config_reloads_total{result="ok"} 20`) || !strings.Contains(metrics, `ioproxy_config_reloads_total{result="failed"} 0`) {
		t.Fatalf("reload metrics:\n%s", grepLines(metrics, "ioproxy_config_reloads"))
	}
}

func adminGet(t *testing.T, addr, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A configuration with errors, or one whose new calling port cannot be
// bound, changes nothing: the error says why at file:line, the running
// configuration keeps serving, and the failure is counted.
func TestReloadFailureKeepsRunningConfig(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer backend.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	good := fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "127.0.0.1:%d" }
host "app.localhost" { backend = %q }
`, dataDir, ps[0], ps[1], backend.URL)
	rl := startReloadable(t, good)
	addr := rl.srv.Addrs()["http"]

	rl.write(good + "host \"app2.localhost\" {\n  backend = \"nowhere\"\n}\n")
	_, err := rl.srv.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), rl.path+":7") || !strings.Contains(err.Error(), "Invalid backend") {
		t.Fatalf("reload of a bad configuration: %v", err)
	}

	taken := httptest.NewServer(http.NotFoundHandler())
	defer taken.Close()
	rl.write(good + fmt.Sprintf("host \"app2.localhost\" { backend = %q }\ncall \"c\" {\n  port = %s\n  endpoint = \"app.localhost\"\n}\n", backend.URL, strings.TrimPrefix(taken.URL, "http://127.0.0.1:")))
	if _, err := rl.srv.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "call:c listener") {
		t.Fatalf("reload with a taken port: %v", err)
	}

	if code, body := get(t, addr, "app.localhost", "/", ""); code != 200 || body != "ok" {
		t.Fatalf("after failed reloads: %d %q", code, body)
	}
	if code, _ := get(t, addr, "app2.localhost", "/", ""); code != 404 {
		t.Fatalf("a host of a failed reload is served: %d", code)
	}
	metrics := adminGet(t, rl.srv.Addrs()["admin"], "/metrics")
	if !strings.Contains(metrics, `ioproxy_config_reloads_total{result="failed"} 2`) {
		t.Fatalf("reload metrics:\n%s", grepLines(metrics, "ioproxy_config_reloads"))
	}
}

// Settings that only a restart applies keep their running values, and the
// report names them; the rest of the reload applies.
func TestReloadNamesSettingsThatNeedARestart(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer backend.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	httpPort, adminPort := ps[0], ps[1]
	src := func(maxConns int, host string) string {
		return fmt.Sprintf(`
data_dir = %q
ingress {
  http            = "127.0.0.1:%d"
  max_connections = %d
}
admin { listen = "127.0.0.1:%d" }
host %q { backend = %q }
`, dataDir, httpPort, maxConns, adminPort, host, backend.URL)
	}
	rl := startReloadable(t, src(100, "app.localhost"))
	rep := rl.reload(src(50, "new.localhost"))
	if len(rep.Restart) != 1 || rep.Restart[0] != "ingress listeners and limits" {
		t.Fatalf("restart = %q", rep.Restart)
	}
	if got := rl.srv.config().Ingress.MaxConnections; got != 100 {
		t.Fatalf("max_connections in use = %d, want the running 100", got)
	}
	if code, _ := get(t, rl.srv.Addrs()["http"], "new.localhost", "/", ""); code != 200 {
		t.Fatalf("the reloaded host answered %d", code)
	}
}

// Nomad is asked about the services the routes in use name: a reload
// that failed after naming one leaves it out, and one that removed a
// host forgets its service.
func TestReloadNomadServices(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	taken := httptest.NewServer(http.NotFoundHandler())
	defer taken.Close()
	httpPort := freePort(t)
	src := func(hosts, extra string) string {
		return fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "" }
nomad { address = "http://127.0.0.1:1" }
%s
%s
`, dataDir, httpPort, hosts, extra)
	}
	a := `host "a.localhost" { backend = "nomad:svc-a" }`
	b := `host "b.localhost" { backend = "nomad:svc-b" }`
	rl := startReloadable(t, src(a, ""))
	if got := rl.srv.nomad.Services(); !slices.Equal(got, []string{"svc-a"}) {
		t.Fatalf("services at start: %q", got)
	}
	rl.write(src(a+"\n"+b, fmt.Sprintf("call \"c\" {\n  port     = %s\n  endpoint = \"a.localhost\"\n}\n", strings.TrimPrefix(taken.URL, "http://127.0.0.1:"))))
	if _, err := rl.srv.Reload(context.Background()); err == nil {
		t.Fatal("a reload with a taken port succeeded")
	}
	if got := rl.srv.nomad.Services(); !slices.Equal(got, []string{"svc-a"}) {
		t.Fatalf("services after a failed reload: %q", got)
	}
	rl.reload(src(b, ""))
	if got := rl.srv.nomad.Services(); !slices.Equal(got, []string{"svc-b"}) {
		t.Fatalf("services after a reload that removed a host: %q", got)
	}
}

// A calling port whose bind changes on the same port keeps its listener
// (a second one could not be bound beside it) and the report names the
// change for the next restart. The new bind is localhost, the same
// loopback address written otherwise: a test binds nothing but
// 127.0.0.1, and 0.0.0.0 would succeed where SO_REUSEADDR lets it beside
// 127.0.0.1 (the BSDs).
func TestReloadBindChangeNeedsARestart(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer backend.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	httpPort, callPort := ps[0], ps[1]
	src := func(bind string) string {
		return fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "" }
host "app.localhost" { backend = %q }
call "c" {
  port     = %d
  bind     = %q
  endpoint = "app.localhost"
}
`, dataDir, httpPort, backend.URL, callPort, bind)
	}
	rl := startReloadable(t, src("127.0.0.1"))
	rep := rl.reload(src("localhost"))
	if len(rep.Restart) != 1 || !strings.Contains(rep.Restart[0], "call:c bind") {
		t.Fatalf("restart = %q", rep.Restart)
	}
	if code, body := get(t, rl.srv.Addrs()["call:c"], "127.0.0.1", "/", ""); code != 200 || body != "ok" {
		t.Fatalf("the calling port after the reload: %d %q", code, body)
	}
}

// Found in review: a block's bind change never takes another block's
// listener on the same port, and two specific addresses on one port
// move freely.
func TestReloadBindChangeKeepsBlocksApart(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }))
	defer backend.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	httpPort, p := ps[0], ps[1]
	call := func(label, bind string) string {
		return fmt.Sprintf("call %q {\n  port     = %d\n  bind     = %q\n  endpoint = \"app.localhost\"\n}\n", label, p, bind)
	}
	src := func(calls ...string) string {
		return fmt.Sprintf("data_dir = %q\ningress { http = \"127.0.0.1:%d\" }\nadmin { listen = \"\" }\nhost \"app.localhost\" { backend = %q }\n", dataDir, httpPort, backend.URL) + strings.Join(calls, "")
	}
	rl := startReloadable(t, src(call("a", "127.0.0.1"), call("lan", "127.0.0.2")))
	rep := rl.reload(src(call("a", "127.0.0.3"), call("lan", "127.0.0.2")))
	if len(rep.Restart) != 0 || rl.srv.Addrs()["call:a"] != fmt.Sprintf("127.0.0.3:%d", p) || rl.srv.Addrs()["call:lan"] != fmt.Sprintf("127.0.0.2:%d", p) {
		t.Fatalf("after moving a: %v, restart %q", rl.srv.Addrs(), rep.Restart)
	}
	rep = rl.reload(src(call("a", "127.0.0.4")))
	if len(rep.Restart) != 0 || rl.srv.Addrs()["call:a"] != fmt.Sprintf("127.0.0.4:%d", p) {
		t.Fatalf("after moving a and removing lan: %v, restart %q", rl.srv.Addrs(), rep.Restart)
	}
	if _, ok := rl.srv.Addrs()["call:lan"]; ok {
		t.Fatal("the removed block's port is listed")
	}
}

// A reload that moves the admin listener (which only a restart applies)
// and gives its old port to a new call block is valid as written, but
// the running admin listener still holds the port: the reload fails,
// changes nothing, and says which listener holds it.
func TestReloadPortOfARunningListener(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 3)
	httpPort, adminPort, newAdmin := ps[0], ps[1], ps[2]
	src := func(admin int, call string) string {
		return fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "127.0.0.1:%d" }
host "app.localhost" { backend = "127.0.0.1:1" }
%s
`, dataDir, httpPort, admin, call)
	}
	rl := startReloadable(t, src(adminPort, ""))
	rl.write(src(newAdmin, fmt.Sprintf(`call "api" {
  port     = %d
  endpoint = "app.localhost"
}`, adminPort)))
	_, err := rl.srv.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "the running admin listener holds port") || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("reload: %v; want it to name the admin listener", err)
	}
	if _, ok := rl.srv.Addrs()["call:api"]; ok {
		t.Fatal("the refused reload's calling port is served")
	}
}
