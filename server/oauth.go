package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/ingress"
	"github.com/ioproxy/ioproxy/internal/observe"
)

// hostClient is a host with an atproto block and its OAuth client.
type hostClient struct {
	host   config.Host
	base   string
	client *oauth.Client
	keys   *oauth.ClientKeys
}

// oauthSet is the OAuth clients of a configuration's hosts.
type oauthSet struct {
	hosts []hostClient
	// clients are the same clients by client id, for the Lifecycle.
	clients map[string]*oauth.Client
	// keys are the confidential client's keys: those in use, or loaded
	// now for the first host that needs them; nil while every host uses
	// the localhost client.
	keys *oauth.ClientKeys
}

// oauthClients makes the OAuth client of every host of cfg with an
// atproto block. keys are the client keys in use (nil before any host
// needed them); the set holds them, or those it loaded, and the server
// takes them only from a configuration it commits.
func (s *Server) oauthClients(ctx context.Context, cfg *config.Config, keys *oauth.ClientKeys) (oauthSet, error) {
	set := oauthSet{clients: map[string]*oauth.Client{}, keys: keys}
	for _, h := range cfg.Hosts {
		if h.ATProto == nil {
			continue
		}
		base := publicBaseURL(cfg, h)
		id := clientIdentity{
			clientID: base + "/@/client-metadata.json",
			redirect: base + "/@/callback",
		}
		if h.ATProto.Local != 0 {
			// The localhost client exception: a public client, whose id
			// names its redirect and scope.
			id.redirect = "http://127.0.0.1:" + strconv.Itoa(h.ATProto.Local) + "/@/callback"
			id.clientID = oauth.LocalhostClientID(id.redirect, h.ATProto.Scope())
		} else {
			if set.keys == nil {
				// Loaded once, shared by every public host. A store
				// without a key gets one now (later loads read it): all
				// that a reload failing after this leaves behind.
				ring, err := LoadClientKeys(ctx, s.store)
				if err != nil {
					return oauthSet{}, err
				}
				set.keys = oauth.NewClientKeys(ring)
			}
			id.keys = set.keys
		}
		c, err := s.newOAuthClient(cfg, h, id)
		if err != nil {
			return oauthSet{}, fmt.Errorf("host %s: %w", h.Hostname, err)
		}
		set.clients[c.ClientID()] = c
		set.hosts = append(set.hosts, hostClient{host: h, base: base, client: c, keys: id.keys})
	}
	return set, nil
}

// signIns are the sign-in routes of the hosts, by host name.
func (s *Server) signIns(hosts []hostClient) map[string]http.Handler {
	signIns := map[string]http.Handler{}
	for _, hc := range hosts {
		signIns[hc.host.Hostname] = ingress.NewSignIn(ingress.SignInConfig{
			Host: hc.host, Client: hc.client, ClientKeys: hc.keys, BaseURL: hc.base, Sessions: s.sessions,
			Recorder: s.recorder, Logger: s.log,
		})
	}
	return signIns
}

// clientIdentity is who a host's OAuth client is: a confidential client
// (an https client id and keys) or the localhost client (no key).
type clientIdentity struct {
	clientID string
	redirect string
	keys     *oauth.ClientKeys
}

// newOAuthClient makes one host's OAuth client, of either kind.
func (s *Server) newOAuthClient(cfg *config.Config, h config.Host, id clientIdentity) (*oauth.Client, error) {
	out := s.out
	return oauth.New(oauth.Config{
		ClientID: id.clientID, RedirectURI: id.redirect, Scope: h.ATProto.Scope(), Keys: id.keys,
		HTTP: out.http, Identity: out.resolver, Nonces: out.nonces, AllowInsecure: cfg.Identity.AllowInsecure,
		OnNonceRetry: func() { s.recorder.NonceRetry(observe.NonceServerAuth) },
	})
}

// publicBaseURL is the origin a host is reached at: https, with the HTTPS
// port when it is not 443, or the loopback origin of the localhost client.
func publicBaseURL(cfg *config.Config, h config.Host) string {
	if h.IsLocal() && h.ATProto != nil && h.ATProto.Local != 0 {
		return "http://127.0.0.1:" + strconv.Itoa(h.ATProto.Local)
	}
	_, port, _ := net.SplitHostPort(cfg.Ingress.HTTPSAddr)
	if port == "" || port == "443" || !h.ServesHTTPS() {
		return "https://" + h.Hostname
	}
	return "https://" + net.JoinHostPort(h.Hostname, port)
}
