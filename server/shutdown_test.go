package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCloseLetsAStoppedPortFinish: a reload that removes a call block
// stops its listener in the background, giving its requests in flight
// the shutdown timeout to finish; a Close during that wait lets them
// (found in review: Close cancelled the requests' base context first).
func TestCloseLetsAStoppedPortFinish(t *testing.T) {
	arrived := make(chan struct{}, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-time.After(700 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "done")
	}))
	defer backend.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	src := func(call string) string {
		return fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "" }
host "app.localhost" { backend = "127.0.0.1:1" }
%s
`, dataDir, ps[0], call)
	}
	rl := startReloadable(t, src(fmt.Sprintf("call \"slow\" {\n  port     = %d\n  endpoint = %q\n}\n", ps[1], backend.URL)))
	addr := rl.srv.Addrs()["call:slow"]
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{status: resp.StatusCode, body: string(b)}
	}()
	<-arrived
	rl.reload(src("")) // the block goes: its port shuts down in the background
	rl.srv.Close()     // within the shutdown timeout of that port
	res := <-done
	if res.err != nil || res.status != http.StatusOK || res.body != "done" {
		t.Fatalf("a request in flight on a port that a reload stopped was cut by Close: status %d, body %q, err %v; want 200 \"done\" (stop promises it the shutdown timeout)", res.status, strings.TrimSpace(res.body), res.err)
	}
}

// TestBindFailureOnAnotherAddress: a port that an outside process holds
// on another address than ioproxy's own listener of that port number is
// not blamed on that listener (found in review: it was, with advice to
// restart, which cannot help).
func TestBindFailureOnAnotherAddress(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	}
	_ = probe.Close()
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 1)
	// Another process holds 127.0.0.2:<port>; ioproxy's http listener
	// is on 127.0.0.1:<port>, which does not collide with it.
	outside, err := net.Listen("tcp", "127.0.0.2:"+strconv.Itoa(ps[0]))
	if err != nil {
		t.Skipf("cannot hold 127.0.0.2:%d: %v", ps[0], err)
	}
	defer outside.Close()
	src := func(call string) string {
		return fmt.Sprintf(`
data_dir = %q
ingress { http = "127.0.0.1:%d" }
admin { listen = "" }
host "app.localhost" { backend = "127.0.0.1:1" }
%s
`, dataDir, ps[0], call)
	}
	rl := startReloadable(t, src(""))
	rl.write(src(fmt.Sprintf("call \"api\" {\n  port     = %d\n  bind     = \"127.0.0.2\"\n  endpoint = \"app.localhost\"\n}\n", ps[0])))
	_, err = rl.srv.Reload(context.Background())
	if err == nil {
		t.Fatal("the reload bound a port another process holds")
	}
	if strings.Contains(err.Error(), "the running http listener holds port") {
		t.Fatalf("reload: %v\nwant no blame on ioproxy's http listener (127.0.0.1), which does not hold 127.0.0.2", err)
	}
}
