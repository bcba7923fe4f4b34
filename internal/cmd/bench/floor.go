package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/ioproxy/ioproxy/internal/floor"
)

// floorArg, as the first argument followed by the backend's address,
// makes this program the floor (package floor) in front of that backend.
const floorArg = "floor"

// serveFloor is the floor mode; see floorArg.
func serveFloor(ready io.Writer, backend string) error {
	target, err := url.Parse("http://" + backend)
	if err != nil || target.Host == "" {
		return fmt.Errorf("floor: backend %q is not host:port", backend)
	}
	return serveOnLoopback(ready, floor.Handler(target, &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256}))
}

// startFloor runs the floor in front of backend.
func startFloor(ctx context.Context, _ tools, dir string, procs *processes, backend string) ([]subject, error) {
	addr, err := startSelf(ctx, procs, dir, "floor", floorArg, backend)
	if err != nil {
		return nil, err
	}
	return []subject{{name: nameFloor, url: "http://" + addr + "/"}}, nil
}
