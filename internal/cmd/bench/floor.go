package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
)

// floorArg, as the first argument followed by the backend's address,
// makes this program the floor: the least a Go proxy on net/http's
// server and Transport does (read the request, send it on one pooled
// keep-alive connection, copy the answer with a pooled buffer), with no
// checks, headers, logs or metrics. What ioproxy does costs the
// difference between the two; the floor's distance to nginx is what no
// handler on net/http can make up.
const floorArg = "floor"

// serveFloor is the floor mode; see floorArg.
func serveFloor(ready io.Writer, backend string) error {
	target, err := url.Parse("http://" + backend)
	if err != nil || target.Host == "" {
		return fmt.Errorf("floor: backend %q is not host:port", backend)
	}
	tr := &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256}
	buffers := sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}
	return serveOnLoopback(ready, http.HandlerFunc(func(w http.ResponseWriter, in *http.Request) {
		out := in.Clone(in.Context())
		out.RequestURI = ""
		out.URL.Scheme, out.URL.Host = target.Scheme, target.Host
		res, err := tr.RoundTrip(out)
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
	}))
}

// startFloor runs the floor in front of backend.
func startFloor(ctx context.Context, _ tools, dir string, procs *processes, backend string) ([]subject, error) {
	addr, err := startSelf(ctx, procs, dir, "floor", floorArg, backend)
	if err != nil {
		return nil, err
	}
	return []subject{{name: nameFloor, url: "http://" + addr + "/"}}, nil
}
