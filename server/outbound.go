package server

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/identity"
	"github.com/ioproxy/ioproxy/atproto/safehttp"
)

// outbound is what ioproxy reaches the atmosphere with: every address in
// it is chosen by users (handles, DID documents, PDSs, OAuth servers), so
// every client is SSRF-guarded.
type outbound struct {
	// http fetches documents and talks to authorization servers: short
	// timeouts, small answers.
	http *http.Client
	// pds carries calls, which stream answers of any size and are
	// bounded by each call block's timeout instead.
	pds      *http.Client
	resolver *identity.Resolver
	// nonces are the DPoP nonces per server, shared by sign-in and calls.
	nonces *dpop.Nonces
}

func (s *Server) newOutbound(ctx context.Context, roots *x509.CertPool) (outbound, error) {
	insecure := s.config().Identity.AllowInsecure
	httpClient := safehttp.NewClient(safehttp.Options{AllowInsecure: insecure, RootCAs: roots, UserAgent: "ioproxy"})
	out := outbound{
		http: httpClient,
		pds: safehttp.NewClient(safehttp.Options{AllowInsecure: insecure, RootCAs: roots, Timeout: 24 * time.Hour, ResponseHeaderTimeout: 5 * time.Minute,
			MaxResponseBytes: -1, MaxIdleConnsPerHost: 64, MaxRedirects: -1, UserAgent: "ioproxy"}),
		resolver: identity.New(identity.Config{PLCURL: s.config().Identity.PLCURL, HandleResolver: s.config().Identity.HandleResolver, HTTPClient: httpClient, AllowInsecure: insecure, Logger: s.log}),
		nonces:   &dpop.Nonces{},
	}
	// Start from the nonces saved with the sessions, so the first call
	// after a restart does not cost a use_dpop_nonce round trip.
	all, err := s.store.List(ctx)
	if err != nil {
		return out, fmt.Errorf("read the sessions' DPoP nonces: %w", err)
	}
	for _, sess := range all {
		out.nonces.Set(sess.Issuer, sess.AuthServerNonce)
		out.nonces.Set(sess.PDS, sess.PDSNonce)
	}
	return out, nil
}
