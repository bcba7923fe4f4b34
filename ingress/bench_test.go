package ingress

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/floor"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// BenchmarkIngress measures the ingress path against calling the same
// loopback backend directly and through the floor (package floor: a
// proxy on net/http that does nothing else), in the same run, and
// reports requests per second and allocations of each and the latency
// the proxy adds per request; then the
// same through a host with access rules, for a signed-in account and for
// a script with an API key (bcrypt at the default cost, checked once):
//
//	go test -run '^$' -bench BenchmarkIngress -benchtime 5s ./ingress/
func BenchmarkIngress(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello from the backend\n")
	}))
	defer backend.Close()
	store, err := boltstore.Open(boltstore.Config{Path: b.TempDir() + "/data/db"})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	hash, err := bcrypt.GenerateFromPassword([]byte("bench-key"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	cfg, diags := config.Parse([]byte(fmt.Sprintf(`
host "app.example.com" {
  backend = %q
  atproto {}
  tls { mode = "off" }
}
host "tool.example.com" {
  backend = %q
  require_atproto { handles = ["*.example.test"] }
  apikey_auth { users = ["ci:%s"] }
  tls { mode = "off" }
}`, backend.URL, backend.URL, hash)), "bench.hcl", config.Options{})
	if diags.HasErrors() {
		b.Fatal(diags)
	}
	rt, err := New(Config{Config: cfg, Sessions: sessions.NewLifecycle(sessions.LifecycleConfig{Store: store})})
	if err != nil {
		b.Fatal(err)
	}
	proxy := httptest.NewServer(rt)
	defer proxy.Close()
	newSession := func(host string) sessions.Session {
		s := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: host, DID: "did:plc:bench", Handle: "bench.example.test",
			CreatedAt: time.Now(), HandleCheckedAt: time.Now(), Expiry: time.Now().Add(time.Hour), TokenExpiry: time.Now().Add(time.Hour)}
		if _, err := store.Create(context.Background(), s); err != nil {
			b.Fatal(err)
		}
		return s
	}
	appSess, toolSess := newSession("app.example.com"), newSession("tool.example.com")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	run := func(b *testing.B, url, host string, auth func(*http.Request)) {
		benchRequests(b, client, url, host, auth)
	}
	anonymous := func(*http.Request) {}
	cookie := func(s sessions.Session) func(*http.Request) {
		return func(req *http.Request) { req.AddCookie(&http.Cookie{Name: CookieName, Value: s.ID}) }
	}
	var direct, viaProxy time.Duration
	b.Run("direct", func(b *testing.B) {
		start := time.Now()
		run(b, backend.URL+"/", "app.example.com", anonymous)
		direct = time.Since(start) / time.Duration(b.N)
	})
	// The floor: the least a proxy on net/http does, through a Transport
	// of its own; ioproxy's allocations and time over it are its own work.
	floorProxy := httptest.NewServer(floor.Handler(mustParseURL(b, backend.URL), &http.Transport{MaxIdleConnsPerHost: 256}))
	defer floorProxy.Close()
	b.Run("floor", func(b *testing.B) {
		run(b, floorProxy.URL+"/", "app.example.com", anonymous)
	})
	b.Run("ingress", func(b *testing.B) {
		start := time.Now()
		run(b, proxy.URL+"/", "app.example.com", anonymous)
		viaProxy = time.Since(start) / time.Duration(b.N)
	})
	b.Run("ingress-signed-in", func(b *testing.B) {
		run(b, proxy.URL+"/", "app.example.com", cookie(appSess))
	})
	b.Run("require-atproto-signed-in", func(b *testing.B) {
		run(b, proxy.URL+"/", "tool.example.com", cookie(toolSess))
	})
	b.Run("apikey", func(b *testing.B) {
		run(b, proxy.URL+"/", "tool.example.com", func(req *http.Request) { req.SetBasicAuth("ci", "bench-key") })
	})
	if direct > 0 && viaProxy > 0 {
		b.Logf("added by ingress: %v per request (wall time per request under parallel load: direct %v, ingress %v)", viaProxy-direct, direct, viaProxy)
	}
}

// benchRequests sends GET url (with Host host, auth applied) in parallel
// b.N times through client, and reports requests per second.
func benchRequests(b *testing.B, client *http.Client, url, host string, auth func(*http.Request)) {
	b.ReportAllocs()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Host = host
			auth(req)
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err) // not Fatal: this is not the benchmark's goroutine
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
}

func mustParseURL(b *testing.B, raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	return u
}
