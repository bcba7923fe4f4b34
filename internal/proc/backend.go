package proc

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Seen is what a test server behind a harness's server received for one
// request.
type Seen struct {
	Method string
	Host   string
	Header http.Header
	Body   string
}

// Recorder keeps what a test server saw, by a key the test chooses (the
// original request URI), so that each table case of a harness's test looks
// only at its own request.
type Recorder struct {
	mu   sync.Mutex
	reqs map[string]Seen
}

// Record reads r's body and keeps r as key's.
func (rec *Recorder) Record(key string, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.reqs == nil {
		rec.reqs = map[string]Seen{}
	}
	rec.reqs[key] = Seen{Method: r.Method, Host: r.Host, Header: r.Header.Clone(), Body: string(body)}
	return nil
}

// Get returns what was kept for key, if anything.
func (rec *Recorder) Get(key string) (Seen, bool) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	s, ok := rec.reqs[key]
	return s, ok
}

// CheckApp fails t unless the request of key reached the app behind the
// server exactly when want says, as method with body: a proxy that asks an
// auth server first must neither let a refused request through nor lose
// an allowed one's body. What the app saw is returned if it was reached.
func (rec *Recorder) CheckApp(t testing.TB, key string, want bool, method, body string) (Seen, bool) {
	t.Helper()
	p, reached := rec.Get(key)
	if reached != want {
		t.Fatalf("request reached the app: %v, want %v", reached, want)
	}
	if reached && (p.Method != method || p.Body != body) {
		t.Errorf("app got %s with body %q, want %s with %q", p.Method, p.Body, method, body)
	}
	return p, reached
}

// Backend starts a test server for a harness's server to talk to (an app,
// an auth server): it keeps each request in rec under key(r), so that a
// test can check what the harness's server sent on, and then lets answer
// answer it. name starts the messages of its failures. It stops when the
// test ends.
func Backend(t *testing.T, name string, rec *Recorder, key func(*http.Request) string, answer func(w http.ResponseWriter, r *http.Request, key string)) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := key(r)
		if err := rec.Record(k, r); err != nil {
			t.Errorf("%s: %s: %v", name, k, err)
		}
		answer(w, r, k)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// App starts the app behind a harness's server (see [Backend]): it keeps
// each request by its URI and answers "from the app".
func App(t *testing.T, rec *Recorder) *httptest.Server {
	uri := func(r *http.Request) string { return r.RequestURI }
	return Backend(t, "app", rec, uri, func(w http.ResponseWriter, _ *http.Request, _ string) {
		io.WriteString(w, "from the app\n")
	})
}

// Send sends a request through a harness's server and returns the
// response and its body. header is set verbatim, not canonicalized, as a
// client that forges a header may spell it; redirects are not followed,
// since where the server sends a client is what a test checks.
func Send(t testing.TB, method, url string, header map[string]string, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = []string{v}
	}
	client := &http.Client{
		Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	return res, b
}
