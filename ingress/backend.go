package ingress

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"time"
)

// backend picks where one request goes: a fixed URL, or an instance of a
// Nomad service (nomad.go).
type backend interface {
	// pick returns the base URL for a request.
	pick(ctx context.Context) (*url.URL, error)
	// failed reports that a request to target could not connect, so the
	// instance is avoided for a while (passive health checking).
	failed(target *url.URL)
}

// staticBackend is a backend written as host:port or a URL.
type staticBackend struct{ url *url.URL }

func (b staticBackend) pick(context.Context) (*url.URL, error) { return b.url, nil }
func (staticBackend) failed(*url.URL)                          {}

// NewBackendTransport returns the transport used towards backends: bounded
// dials, and enough idle connections per backend that throughput does not
// collapse under load (the default keeps only 2).
func NewBackendTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}
