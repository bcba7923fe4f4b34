package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPprof: /debug/pprof/ answers only when turned on, and even then
// only under the admin listener's allowed Host names (a web page must not
// read a process's profiles through DNS rebinding).
func TestPprof(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pprof bool
		host  string
		want  int
	}{
		{"off", false, "127.0.0.1", http.StatusNotFound},
		{"on", true, "127.0.0.1", http.StatusOK},
		{"on, a name not allowed", true, "evil.example", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecorder(RecorderConfig{Pprof: tc.pprof})
			srv := httptest.NewServer(r.Handler(HealthFuncs{}))
			defer srv.Close()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/debug/pprof/", nil)
			req.Host = tc.host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET /debug/pprof/ under %s: %d, want %d", tc.host, resp.StatusCode, tc.want)
			}
			if tc.want == http.StatusOK && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
		})
	}
}
