package ingress

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Records name configured hosts only, so that clients cannot mint metric
// labels with made-up Host headers.
func TestRecordsNameConfiguredHostsOnly(t *testing.T) {
	a := echoBackend(t, "a")
	cfg := mustConfig(t, fmt.Sprintf(`host "a.example.com" { backend = %q }`, a.URL))
	var mu sync.Mutex
	var got []Record
	rt, err := New(Config{Config: cfg, Observe: func(r Record) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"A.EXAMPLE.COM:8080", "random-1.evil.example", "random-2.evil.example"} {
		rt.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "http://"+host+"/x?token=secret", nil))
	}
	want := []string{"a.example.com", UnknownHost, UnknownHost}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.Host != want[i] {
			t.Errorf("record %d host %q, want %q", i, r.Host, want[i])
		}
		if r.Path != "/x" {
			t.Errorf("record %d path %q: the query must not be recorded", i, r.Path)
		}
	}
	if got[0].Status != 200 || got[1].Status != 404 || got[0].Upstream == "" {
		t.Errorf("records %+v", got)
	}
}
