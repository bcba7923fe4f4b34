// Package floor is the least a Go reverse proxy on net/http's server and
// Transport does: read the request, send it on a pooled keep-alive
// connection, copy the answer with a pooled buffer; no checks, headers,
// logs or metrics. scripts/bench runs it beside ioproxy and the ingress
// benchmark measures it in the same run, so what ioproxy's own work
// costs is the difference between the two, and the floor's distance to
// nginx is what no handler on net/http can make up.
package floor

import (
	"io"
	"net/http"
	"net/url"
	"sync"
)

// Handler proxies every request to target through transport. A request
// the transport cannot send is answered 502 with the error.
func Handler(target *url.URL, transport http.RoundTripper) http.Handler {
	buffers := sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	return http.HandlerFunc(func(w http.ResponseWriter, in *http.Request) {
		out := in.Clone(in.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = target.Scheme, target.Host
		res, err := transport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer res.Body.Close()
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		bp := buffers.Get().(*[]byte)
		defer buffers.Put(bp)
		_, _ = io.CopyBuffer(w, res.Body, *bp)
	})
}
