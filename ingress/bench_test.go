package ingress

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/sessions"
)

// BenchmarkIngress measures the ingress path against calling the same
// loopback backend directly, in the same run, and reports requests per
// second of each and the latency the proxy adds per request:
//
//	go test -run '^$' -bench BenchmarkIngress -benchtime 5s ./ingress/
func BenchmarkIngress(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello from the backend\n")
	}))
	defer backend.Close()
	store, err := sessions.Open(b.TempDir()+"/db", sessions.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	cfg := mustConfig(&testing.T{}, fmt.Sprintf(`
host "app.example.com" {
  backend = %q
  atproto {}
  tls { mode = "off" }
}`, backend.URL))
	rt, err := New(Config{Config: cfg, Sessions: store})
	if err != nil {
		b.Fatal(err)
	}
	proxy := httptest.NewServer(rt)
	defer proxy.Close()
	sess := sessions.Session{ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: "app.example.com", DID: "did:plc:bench", Handle: "bench.test", Expiry: time.Now().Add(time.Hour)}
	if err := store.Create(sess); err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

	run := func(b *testing.B, url string, signedIn bool) {
		b.ReportAllocs()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Host = "app.example.com"
				if signedIn {
					req.AddCookie(&http.Cookie{Name: CookieName, Value: sess.ID})
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	}
	var direct, viaProxy time.Duration
	b.Run("direct", func(b *testing.B) {
		start := time.Now()
		run(b, backend.URL+"/", false)
		direct = time.Since(start) / time.Duration(b.N)
	})
	b.Run("ingress", func(b *testing.B) {
		start := time.Now()
		run(b, proxy.URL+"/", false)
		viaProxy = time.Since(start) / time.Duration(b.N)
	})
	b.Run("ingress-signed-in", func(b *testing.B) {
		run(b, proxy.URL+"/", true)
	})
	if direct > 0 && viaProxy > 0 {
		b.Logf("added by ingress: %v per request (wall time per request under parallel load: direct %v, ingress %v)", viaProxy-direct, direct, viaProxy)
	}
}
