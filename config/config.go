// Package config reads ioproxy's HCL configuration, applies defaults and
// validates it, reporting every mistake as an HCL diagnostic that names
// file:line:col and says what to write instead.
//
// Decoding happens in two steps, as in HashiCorp's own tools: gohcl decodes
// the file into the schema structs of schema.go (which catches unknown and
// missing attributes), then build (build.go, and a file per block beside
// it) turns them into the typed Config below: defaults, parsing of strings
// such as backends, and the cross-block checks of checks.go.
// Everything else in ioproxy consumes only Config.
package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/ioproxy/ioproxy/access"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// Config is a validated ioproxy configuration.
type Config struct {
	// Filename names what the configuration was read from, for messages:
	// the paths given, comma-separated.
	Filename string
	// Files are the files read, in order (a directory's *.hcl files in
	// name order).
	Files []string
	// DataDir holds the bbolt file, the client keys and certificates.
	DataDir  string
	Ingress  Ingress
	Identity Identity
	Nomad    Nomad
	Admin    Admin
	// Sessions holds the limits of the session store; Parse fills in the
	// defaults when the file has no sessions block.
	Sessions Sessions
	Log      Log
	TLS      TLS
	Hosts    []Host
	Calls    []Call
	// Serves are the serve blocks: guarded reverse proxies on ports of
	// their own.
	Serves []Serve
}

// Ingress says where the public listeners bind.
type Ingress struct {
	// HTTPAddr and HTTPSAddr are listen addresses ("host:port" or ":port").
	HTTPAddr  string
	HTTPSAddr string
	// TrustedProxies are the peers whose X-Forwarded-* headers are kept;
	// from anyone else they are overwritten.
	TrustedProxies []netip.Prefix
	// MaxConnections caps the connections open at once on each listener
	// (http and https alike), so that a flood cannot exhaust file
	// descriptors; past it ioproxy answers 503. At least 1; default
	// DefaultMaxConnections.
	MaxConnections int
	// BodyIdleTimeout cuts a request body that sends nothing for this
	// long, so that a stalled upload does not hold a connection forever.
	// At least a second; default DefaultBodyIdleTimeout.
	BodyIdleTimeout time.Duration
	// BodyMinRate is the slowest a request body may arrive, in bytes per
	// second, against clients that trickle a body to hold connections
	// open. Zero turns the check off; default DefaultBodyMinRate.
	BodyMinRate int64
	// MaxConnectionsPerClient caps the connections one client address (an
	// IPv6 /56) holds on each listener, so that one client cannot take every
	// place; trusted proxies are not limited. Zero turns the share off;
	// default DefaultMaxConnectionsPerClient of MaxConnections.
	MaxConnectionsPerClient int
	// WriteIdleTimeout cuts an answer that the client has not taken a
	// byte of for this long (it holds a backend connection meanwhile).
	// At least a second; default DefaultWriteIdleTimeout.
	WriteIdleTimeout time.Duration
}

// Identity configures how handles and DIDs are resolved.
type Identity struct {
	PLCURL string
	// HandleResolver is an optional XRPC service answering
	// com.atproto.identity.resolveHandle.
	HandleResolver string
	// AllowInsecure permits http:// and loopback or private addresses for
	// PDSs and OAuth servers. Development only.
	AllowInsecure bool
}

// Nomad is the Nomad HTTP API used to resolve "nomad:<service>" backends.
type Nomad struct {
	Address   string
	Token     string
	Namespace string
	Region    string
	// Refresh is how often a service's instances are fetched again.
	Refresh time.Duration
}

// Admin is the listener for metrics, health and the traffic view.
type Admin struct {
	// Listen is empty when the admin listener is disabled.
	Listen string
	// Hosts are the names besides IP literals and localhost under which
	// the admin listener answers (DNS rebinding defence): a request under
	// any other Host is refused.
	Hosts []string
	// Pprof serves Go's profiles at /debug/pprof/ on the admin listener.
	Pprof bool
}

// Sessions says where sessions are stored and how they are sealed, and
// limits the store, so that sign-ins cannot grow it without bound.
type Sessions struct {
	// Store is StoreBolt (one file in DataDir, the default) or StoreRedis
	// (shared by replicas).
	Store string
	// URL is the Redis server (StoreRedis): redis://, rediss:// or
	// unix://. It may hold a password: never log it whole.
	URL string
	// KeyPrefix starts every Redis key (StoreRedis; default
	// DefaultKeyPrefix).
	KeyPrefix string
	// EncryptionKey seals what the store keeps (tokens, DPoP keys, the
	// client key); nil when not written (allowed with StoreBolt only).
	EncryptionKey *sealed.Keys
	// MaxSessions caps the sessions stored at once, across all accounts.
	// At least 1; default DefaultMaxSessions.
	MaxSessions int
	// MaxPerAccount caps the sessions of one account (one DID). From 1 to
	// MaxSessions; default DefaultMaxPerAccount, or MaxSessions when that
	// is smaller and max_per_account is not written.
	MaxPerAccount int
}

// Log configures ioproxy's own logs and access logs.
type Log struct {
	Level  slog.Level
	Format string // "text" or "json"
}

// TLS holds settings shared by all hosts.
type TLS struct {
	ACME ACME
	// CertFile and KeyFile are a default certificate pair for hosts whose
	// mode is "files" and who name no files of their own.
	CertFile string
	KeyFile  string
	// CertFileRange and KeyFileRange locate the attributes in the file, for
	// checks made after loading (ingress/certs.Check).
	CertFileRange hcl.Range
	KeyFileRange  hcl.Range
}

// ACME configures certificate issuance for hosts in mode "acme".
type ACME struct {
	Email string
	// Directory is the ACME directory URL (Let's Encrypt by default).
	Directory string
	// CAFile is an extra root CA to trust when talking to the ACME server
	// (a private CA, or Pebble in tests).
	CAFile      string
	CAFileRange hcl.Range
}

// LetsEncryptDirectory is the default ACME directory.
const LetsEncryptDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// TLSMode says how a host gets its certificate.
type TLSMode string

// The TLS modes a host may use.
const (
	TLSAuto       TLSMode = ""            // not written: config chooses (see Host.AutoTLSMode); never left in a Config
	TLSACME       TLSMode = "acme"        // certificates from an ACME CA
	TLSFiles      TLSMode = "files"       // certificate and key files on disk
	TLSSelfSigned TLSMode = "self_signed" // a certificate ioproxy makes itself
	TLSOff        TLSMode = "off"         // plain HTTP only
)

// Host is one ingress host.
type Host struct {
	// Hostname is the host name matched against requests: lower case, no port.
	Hostname string
	// ShortName is the host's short name (the name attribute), for logs and metrics.
	ShortName string
	// Backend is of kind BackendNone for a forward-auth host, whose site
	// sits behind another proxy that asks ioproxy's /@/auth. For a host
	// whose backend is "serving:<label>" it is the serve block's backend,
	// so that requests go straight to the service (never BackendServing).
	Backend Backend
	// Serving is the label of the serve block the host routes to (its
	// backend = "serving:<label>"), empty for any other host. Such a
	// host's Access is the serve block's, and its ATProto the host's own
	// atproto block or, without one, the defaults when the serve block has
	// require_atproto.
	Serving string
	// ATProto is nil when the host does not offer AT Protocol sign-in
	// (it may offer other providers': OAuth).
	ATProto *ATProto
	TLS     HostTLS
	// Access is nil for an open host: sign-in is optional and the backend
	// decides what a visitor may do (as Statusphere does).
	Access *Access
	// OAuth are the host's oauth "<name>" blocks, in file order: sign-in
	// providers other than AT Protocol, each under /@<name>/. A host may
	// have them with or without ATProto, and without a backend (a
	// forward-auth host). None for a host whose backend is a serve block.
	OAuth []OAuthProvider
}

// OAuthProvider returns the host's oauth block of the given name.
func (h Host) OAuthProvider(name string) (OAuthProvider, bool) {
	for _, p := range h.OAuth {
		if p.Name == name {
			return p, true
		}
	}
	return OAuthProvider{}, false
}

// OAuthProvider is an oauth "<name>" block: an OAuth 2.0 (or OpenID
// Connect) provider that users of the host may sign in with.
type OAuthProvider struct {
	// Name is the block's label ("google"): lower-case letters, digits and
	// dashes, never "atproto". Sign-in lives under /@<Name>/, and
	// require_oauth and a call's credential = "session:<Name>" name it.
	Name         string
	ClientID     string
	ClientSecret string
	// Issuer is set for OpenID Connect discovery (endpoints from
	// <Issuer>/.well-known/openid-configuration), exactly as written,
	// since ID tokens' iss is compared with it exactly; AuthorizeURL and
	// TokenURL (access_token_url) are both set otherwise, never with
	// Issuer. UserinfoURL is optional either way. Each is https://, or
	// http:// on a loopback host.
	Issuer, AuthorizeURL, TokenURL, UserinfoURL string
	// Scopes are asked for at sign-in; "openid", "email" and "profile"
	// when the block names none.
	Scopes []string
	// AuthorizeParams are added to the authorization request
	// (authorize_parameter blocks, in order), never one that ioproxy sets
	// itself; nil without any.
	AuthorizeParams url.Values
}

// OpenID reports whether the sign-in is OpenID Connect ("openid" is among
// the scopes).
func (p OAuthProvider) OpenID() bool { return slices.Contains(p.Scopes, "openid") }

// Issued reports whether a session made with this issuer name and client
// id is this provider's: the name may since have been pointed at another
// issuer or client, whose subjects are not these.
func (p OAuthProvider) Issued(issuer, clientID string) bool {
	return issuer == p.IssuerName() && clientID == p.ClientID
}

// IssuerName names the provider in what ioproxy stores: its issuer, or
// the authorize URL of a plain OAuth 2.0 provider. A session made under
// another name is not this provider's (the name was pointed elsewhere).
func (p OAuthProvider) IssuerName() string {
	if p.Issuer != "" {
		return p.Issuer
	}
	return p.AuthorizeURL
}

// Access closes a host to everyone but the accounts and machine clients
// it names. Its parts add up: the gate admits a request that any of them
// admits (an AT Protocol account that Rules names, an API key of
// APIKeys, an account of a provider whose EmailRules in OAuth admit its
// verified email), and refuses it when none does.
type Access struct {
	// Rules is the require_atproto block, nil without one.
	Rules *access.Rules
	// APIKeys are the apikey_auth entries, none without the block.
	APIKeys []access.KeyEntry
	// OAuth are the require_oauth "<provider>" blocks by provider name,
	// each a provider of the host; nil when there are none.
	OAuth map[string]*access.EmailRules
}

// HostTLS is a host's TLS setting after defaults.
type HostTLS struct {
	Mode     TLSMode
	CertFile string
	KeyFile  string
	// CertFileRange and KeyFileRange locate the attributes the files came
	// from: the host's tls block, or the top-level one for a host that
	// uses the global pair.
	CertFileRange hcl.Range
	KeyFileRange  hcl.Range
}

// IsLocal reports whether the host is a development name: localhost, a
// name under .localhost, or an IP address. Local hosts are served on plain
// HTTP too, and default to a self-signed certificate on HTTPS.
func (h Host) IsLocal() bool { return IsLocalName(h.Hostname) }

// IsLocalName reports whether name is localhost, under .localhost, or an IP.
func IsLocalName(name string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	_, err := netip.ParseAddr(strings.Trim(name, "[]"))
	return err == nil
}

// AutoTLSMode is the mode a host gets when its tls block names neither a
// mode nor files: a self-signed certificate for a local host, since no
// public CA issues one, and ACME for any other.
func (h Host) AutoTLSMode() TLSMode {
	if h.IsLocal() {
		return TLSSelfSigned
	}
	return TLSACME
}

// ServesHTTP reports whether plain HTTP requests for the host reach its
// backend (rather than being redirected to HTTPS).
func (h Host) ServesHTTP() bool { return h.TLS.Mode == TLSOff || h.IsLocal() }

// ServesHTTPS reports whether the host has a certificate on the HTTPS listener.
func (h Host) ServesHTTPS() bool { return h.TLS.Mode != TLSOff }

// ATProto configures sign-in for a host.
type ATProto struct {
	// ClientName is shown by the authorization server on its consent page.
	ClientName string
	Scopes     []string
	// Local, when non-zero, makes the host a localhost (loopback) OAuth
	// client whose redirect URI is http://127.0.0.1:<Local>/@/callback.
	Local     int
	ClientURI string
	LogoURI   string
	TOSURI    string
	PolicyURI string
}

// Scope is the space-separated scope string sent to the authorization server.
func (a ATProto) Scope() string { return strings.Join(a.Scopes, " ") }

// BackendKind says how a backend is reached.
type BackendKind int

// The backend kinds.
const (
	BackendNone  BackendKind = iota // no backend: a forward-auth host
	BackendURL                      // a fixed URL
	BackendNomad                    // instances of a Nomad service
	// BackendServing is a host's "serving:<label>": the host routes to a
	// serve block. ParseBackend returns it; a built Config never holds
	// it, since such a host gets the serve block's own backend.
	BackendServing
)

// Backend is where a host's requests go.
type Backend struct {
	Kind BackendKind
	// URL is set for BackendURL: scheme, host and an optional path prefix.
	URL *url.URL
	// Service is set for BackendNomad.
	Service string
	// Serving is the serve block's label, set for BackendServing.
	Serving string
	// Raw is the backend as written in the file.
	Raw string
}

// ParseBackend parses "host:port", "http://…", "https://…",
// "nomad:<service>" or "serving:<serve block's label>".
func ParseBackend(s string) (Backend, error) {
	raw := s
	s = strings.TrimSpace(s)
	if s == "" {
		return Backend{}, fmt.Errorf("backend is empty")
	}
	if label, ok := strings.CutPrefix(s, "serving:"); ok {
		if !validServiceName(label) {
			return Backend{}, fmt.Errorf("%q is not the label of a serve block (letters, digits, dashes, dots and underscores, as in \"serving:nomad\")", label)
		}
		return Backend{Kind: BackendServing, Serving: label, Raw: raw}, nil
	}
	if svc, ok := strings.CutPrefix(s, "nomad:"); ok {
		if !validServiceName(svc) {
			return Backend{}, fmt.Errorf("%q is not a Nomad service name (letters, digits and dashes, as in \"nomad:statusphere\")", svc)
		}
		return Backend{Kind: BackendNomad, Service: svc, Raw: raw}, nil
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return Backend{}, fmt.Errorf("%q is not a URL: %w", s, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return Backend{}, fmt.Errorf("backend URL scheme %q is not supported; use http:// or https://", u.Scheme)
		}
		if u.Host == "" {
			return Backend{}, fmt.Errorf("backend URL %q has no host", s)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return Backend{}, fmt.Errorf("backend URL %q may not carry a query, fragment or user info", u.Redacted())
		}
		if p := u.Port(); p != "" {
			if _, err := parsePort(p); err != nil {
				return Backend{}, fmt.Errorf("backend URL %q: %w", s, err)
			}
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		return Backend{Kind: BackendURL, URL: u, Raw: raw}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return Backend{}, fmt.Errorf("%q is not a backend; write \"host:port\" (such as \"localhost:3000\"), a URL (\"http://10.0.0.5:8080\") or \"nomad:<service>\"", s)
	}
	if _, err := parsePort(port); err != nil {
		return Backend{}, fmt.Errorf("backend %q: %w", s, err)
	}
	return Backend{Kind: BackendURL, URL: &url.URL{Scheme: "http", Host: net.JoinHostPort(host, port)}, Raw: raw}, nil
}

func validServiceName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case (r == '-' || r == '_' || r == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return n, nil
}

// EndpointKind says where a call block sends requests.
type EndpointKind int

// The endpoint kinds.
const (
	// EndpointPDS ("@") sends each request to the signed-in user's PDS.
	EndpointPDS EndpointKind = iota + 1
	// EndpointHost names one of ioproxy's own ingress hosts: requests are
	// served by that host's handler directly.
	EndpointHost
	// EndpointURL is a plain reverse proxy to an upstream.
	EndpointURL
)

// Endpoint is a call block's destination.
type Endpoint struct {
	Kind EndpointKind
	// Host is set for EndpointHost.
	Host string
	// URL is set for EndpointURL.
	URL *url.URL
	Raw string
}

// Call is one calling port.
type Call struct {
	// Label is the block's label ("atproto" in call "atproto" {…}): it
	// names the calling port in logs, metrics and the traffic view.
	Label string
	// ShortName is the name attribute, for people (the label when left
	// out).
	ShortName string
	Port      int
	Bind      string
	Endpoint  Endpoint
	// Insecure skips certificate verification towards an EndpointURL.
	Insecure       bool
	OperationsOnly bool
	MaxBodyBytes   int64
	Timeout        time.Duration
	// MaxConnections caps the connections open at once on the calling
	// port. At least 1; default DefaultCallMaxConnections.
	MaxConnections int
	// ServiceProxies are the Atproto-Proxy header values ("<DID>#<service
	// id>", such as "did:web:api.bsky.app#bsky_appview") that calls to the
	// user's PDS may carry. It means something only when ServiceProxiesSet:
	// without service_proxies in the file any value is forwarded (it is
	// nil, ServiceProxiesSet false); service_proxies = [] allows none (it
	// is empty, ServiceProxiesSet true). AllowsServiceProxy applies both.
	ServiceProxies    []string
	ServiceProxiesSet bool
	// Hosts are the names, besides IP literals and localhost, under which
	// the calling port answers (DNS rebinding defence: a web page cannot
	// reach the port through a name of its own that resolves to it). Lower
	// case, without port.
	Hosts      []string
	Operations []Operation
	// Auth is the credential added to each call, nil without an auth
	// block (never for an EndpointPDS call, which the session's DPoP
	// token authorizes).
	Auth *CallAuth
}

// CallAuth is a call's auth block: the credential ioproxy adds to each
// call it forwards.
type CallAuth struct {
	// Name is the header or query parameter the credential goes in;
	// header names canonical (http.CanonicalHeaderKey), never one that
	// ioproxy sets or strips itself.
	Name string
	// Location is CallAuthHeader or CallAuthQuery.
	Location string
	// Provider is set for credential = "session:<provider>": the signed-in
	// user's access token of that provider, an oauth block of some host.
	Provider string
	// Static is set otherwise: the credential itself (from env(),
	// usually; empty when that variable is not set, which validation
	// warns of). It is a secret: never log it.
	Static string
}

// Where a call's credential goes.
const (
	CallAuthHeader = "header"
	CallAuthQuery  = "query"
)

// AllowsServiceProxy reports whether a call carrying the Atproto-Proxy
// header value v may be forwarded.
func (c Call) AllowsServiceProxy(v string) bool {
	return !c.ServiceProxiesSet || slices.Contains(c.ServiceProxies, v)
}

// Addr is the listen address of the calling port.
func (c Call) Addr() string { return net.JoinHostPort(c.Bind, strconv.Itoa(c.Port)) }

// Operation names a kind of call by method and path.
type Operation struct {
	Name        string
	Method      string
	Path        string
	Description string
}

// Matches reports whether a request's method and path fall under the
// operation: the path matches exactly, or as a prefix when it ends in "/".
func (o Operation) Matches(method, path string) bool {
	if method != o.Method {
		return false
	}
	if strings.HasSuffix(o.Path, "/") {
		return strings.HasPrefix(path, o.Path)
	}
	return path == o.Path
}

// Operation returns the first operation matching the request, if any.
func (c Call) Operation(method, path string) (Operation, bool) {
	for _, op := range c.Operations {
		if op.Matches(method, path) {
			return op, true
		}
	}
	return Operation{}, false
}

// Serve is a serve block: a guarded reverse proxy on a port of its own,
// for a service that has no host name of its own. Reached on its port it
// admits API keys and public paths only; a browser signs in on a host
// whose backend is "serving:<Label>", and the serve block's rules then
// apply to the session.
type Serve struct {
	// Label is the block's label (serve "<label>"): backend =
	// "serving:<label>" names it, and it names the port in logs and
	// metrics.
	Label string
	// ShortName is the name attribute, for people (the label when left
	// out).
	ShortName string
	Port      int
	// Bind is the address the port listens on; DefaultServeBind when not
	// written.
	Bind string
	// Backend is the service's address: BackendURL or BackendNomad, never
	// BackendServing or BackendNone.
	Backend Backend
	// Access is never nil: a serve block has require_atproto, apikey_auth
	// or both. The hosts that route to the block share it.
	Access *Access
	// Hosts are the host names whose backend is serving:<Label>, in file
	// order.
	Hosts []string
}

// Addr is the listen address of the serve block's port.
func (s Serve) Addr() string { return net.JoinHostPort(s.Bind, strconv.Itoa(s.Port)) }

// Serve returns the serve block with the given label.
func (c *Config) Serve(label string) (Serve, bool) {
	for _, s := range c.Serves {
		if s.Label == label {
			return s, true
		}
	}
	return Serve{}, false
}

// Host returns the host with the given name (case-insensitive, port ignored).
func (c *Config) Host(name string) (Host, bool) {
	name = NormalizeHost(name)
	for _, h := range c.Hosts {
		if h.Hostname == name {
			return h, true
		}
	}
	return Host{}, false
}

// ServesHTTPS reports whether any host needs the HTTPS listener.
func (c *Config) ServesHTTPS() bool {
	for _, h := range c.Hosts {
		if h.ServesHTTPS() {
			return true
		}
	}
	return false
}

// NormalizeHost lowercases a host name and removes a port and a trailing dot.
func NormalizeHost(h string) string {
	// Without a colon there is no port, and SplitHostPort's error would
	// cost an allocation on every request.
	if strings.IndexByte(h, ':') >= 0 {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
	}
	h = strings.Trim(h, "[]")
	return strings.ToLower(strings.TrimSuffix(h, "."))
}
