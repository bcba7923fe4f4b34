package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/ingress"
	"github.com/ioproxy/ioproxy/provider"
	"github.com/ioproxy/ioproxy/sessions"
)

// providerSet is the OAuth clients of every host's oauth "<name>"
// blocks, by host and name: ingress signs in with them, the Lifecycle
// refreshes and revokes with them. A reload makes a new set.
type providerSet map[string]map[string]providerEntry

// providerEntry is one oauth block and its client.
type providerEntry struct {
	cfg    config.OAuthProvider
	client *provider.Client
}

// newProviders makes the client of each oauth block of cfg. No network:
// a provider's discovery and keys are fetched at first use.
func (s *Server) newProviders(cfg *config.Config) (providerSet, error) {
	set := providerSet{}
	for _, h := range cfg.Hosts {
		for _, p := range h.OAuth {
			c, err := provider.New(provider.Config{
				Name: p.Name, ClientID: p.ClientID, ClientSecret: p.ClientSecret,
				Issuer: p.Issuer, AuthorizeURL: p.AuthorizeURL, TokenURL: p.TokenURL, UserinfoURL: p.UserinfoURL,
				Scopes: p.Scopes, AuthorizeParams: p.AuthorizeParams,
				RedirectURI: providerBaseURL(cfg, h) + "/@" + p.Name + "/callback",
				HTTP:        s.providerHTTP,
				Logger:      s.log,
			})
			if err != nil {
				return nil, fmt.Errorf("host %s: oauth %q: %w", h.Hostname, p.Name, err)
			}
			if set[h.Hostname] == nil {
				set[h.Hostname] = map[string]providerEntry{}
			}
			set[h.Hostname][p.Name] = providerEntry{cfg: p, client: c}
		}
	}
	return set, nil
}

// forIngress is the set as ingress takes it.
func (ps providerSet) forIngress() map[string]map[string]ingress.ProviderClient {
	out := map[string]map[string]ingress.ProviderClient{}
	for host, byName := range ps {
		out[host] = map[string]ingress.ProviderClient{}
		for name, e := range byName {
			out[host][name] = e.client
		}
	}
	return out
}

// providerLookup finds, for the Lifecycle, the client of a provider
// session in the set in use (which a reload replaces): its host's block
// of that name, still with the issuer and client the session was made
// with (a session of a former issuer must not send its tokens to the
// new one, not even to revoke them).
func providerLookup(cur *atomic.Pointer[providerSet]) func(sessions.Session) (sessions.ProviderClient, bool) {
	return func(sess sessions.Session) (sessions.ProviderClient, bool) {
		set := cur.Load()
		if set == nil {
			return nil, false
		}
		e, ok := (*set)[sess.Host][sess.Provider]
		if !ok || !e.cfg.Issued(sess.Issuer, sess.ClientID) {
			return nil, false
		}
		return refresher{e.client}, true
	}
}

// refresher is a provider's client as the Lifecycle uses it.
type refresher struct{ c *provider.Client }

func (r refresher) Refresh(ctx context.Context, refreshToken, subject string) (sessions.ProviderTokens, error) {
	g, err := r.c.RefreshSubject(ctx, refreshToken, subject)
	if errors.Is(err, provider.ErrInvalidGrant) {
		return sessions.ProviderTokens{}, fmt.Errorf("%w: %w", sessions.ErrGrantDead, err)
	} else if err != nil {
		return sessions.ProviderTokens{}, err
	}
	return sessions.ProviderTokens{AccessToken: g.AccessToken, RefreshToken: g.RefreshToken, Scope: g.Scope, Expiry: g.Expiry,
		IdentityUnchecked: g.IdentityUnchecked, IdentityChecked: g.Identity.Subject != ""}, nil
}

func (r refresher) Revoke(ctx context.Context, token string) error { return r.c.Revoke(ctx, token) }

// newProviderHTTP is the client that talks to providers: their URLs are
// the operator's, not users', so it needs no SSRF guard, but bounded
// times, and the test roots when a test gives them.
func newProviderHTTP(opts Options) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.ResponseHeaderTimeout = 15 * time.Second
	if opts.RootCAs != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: opts.RootCAs, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}
}

// providerBaseURL is the origin a browser reaches a host at, for a
// provider's redirect back to it: publicBaseURL's https origin (a host
// with TLS off sits behind a TLS terminator), but for a local host
// without TLS, which browsers reach on the http listener.
func providerBaseURL(cfg *config.Config, h config.Host) string {
	if !h.IsLocal() || h.ServesHTTPS() {
		return publicBaseURL(cfg, h)
	}
	_, port, _ := net.SplitHostPort(cfg.Ingress.HTTPAddr)
	if port == "" || port == "80" {
		return "http://" + h.Hostname
	}
	return "http://" + net.JoinHostPort(h.Hostname, port)
}
