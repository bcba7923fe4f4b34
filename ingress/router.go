// Package ingress serves ioproxy's public side: it routes each request by
// its Host to the host's backend, serves the sign-in routes under /@/, and
// tells backends who is signed in through the User-Did, User-Handle and
// Proxy-Session headers, which no client can set itself.
package ingress

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/httpguard"
	"github.com/ioproxy/ioproxy/internal/httpx"
	"github.com/ioproxy/ioproxy/internal/limits"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/internal/textutil"
	"github.com/ioproxy/ioproxy/sessions"
)

// Config configures a Router.
type Config struct {
	Config *config.Config
	// Sessions finds the session of a request's cookie; nil when no host
	// signs in.
	Sessions *sessions.Lifecycle
	// Nomad resolves nomad:<service> backends; required when a host uses one.
	Nomad *Nomad
	// Transport carries requests to backends; a tuned default when nil.
	Transport http.RoundTripper
	// SignIns are the handlers of /@/ by host name, for hosts with an
	// atproto block; /@/ answers 404 on a host without one.
	SignIns map[string]http.Handler
	// Providers are the OAuth clients of the hosts' oauth blocks (see
	// RoutesConfig).
	Providers map[string]map[string]ProviderClient
	// Recorder receives a report of every request and of each backend's
	// time to answer; observe.Discard when nil.
	Recorder observe.Recorder
	// StaleSession, when set, is called (and must not block) for a
	// request whose session is stale (sessions.Session.Stale: its access
	// token has expired, or its handle is due for a recheck): the app may
	// make no calls, so nothing else would refresh it, and a refresh is
	// what re-checks the account with its authorization server.
	StaleSession func(sessions.Session)
	Logger       *slog.Logger
	// TunnelRecheck is how often an open WebSocket is judged again (see
	// tunnels.go); DefaultTunnelRecheck when zero.
	TunnelRecheck time.Duration
}

// Router is the ingress handler for every configured host. Its routes
// (hosts, backends, access rules, sign-in handlers) are replaced whole by
// SetRoutes on a reload; what outlives a configuration stays here: the
// backend transport and its connections, the buffers, the rate limits.
type Router struct {
	routes    atomic.Pointer[Routes]
	store     *sessions.Lifecycle
	recorder  observe.Recorder
	log       *slog.Logger
	buffers   *httpx.BufferPool
	transport http.RoundTripper
	limiter   *rateLimiter
	// callbacks counts sign-in callbacks per client.
	callbacks *rateLimiter
	// wrongKeys counts failed API key checks per client.
	wrongKeys *rateLimiter
	stale     func(sessions.Session)
	now       func() time.Time
	// tunnelRecheck is how often an open WebSocket is judged again.
	tunnelRecheck time.Duration
}

// Routes are what one configuration makes of the ingress: a route per
// host, and the proxies whose X-Forwarded-* are believed. A request is
// served start to end by the Routes it began under, whatever reloads
// happen meanwhile.
type Routes struct {
	router *Router
	hosts  map[string]*hostRoute
	// serves are the routes of the serve blocks' ports, by label.
	serves map[string]*hostRoute
	// trustedProxies are the addresses whose X-Forwarded-* are believed.
	trustedProxies []netip.Prefix
}

// RoutesConfig is what Routes are made of.
type RoutesConfig struct {
	Config *config.Config
	// Nomad resolves nomad:<service> backends; required when a host uses one.
	Nomad *Nomad
	// SignIns are the handlers of /@/ by host name, for hosts with an
	// atproto block; /@/ answers 404 on a host without one.
	SignIns map[string]http.Handler
	// Providers are the OAuth clients of the hosts' oauth "<name>"
	// blocks, by host name, then provider name.
	Providers map[string]map[string]ProviderClient
}

type hostRoute struct {
	host config.Host
	// backend is nil for a forward-auth host.
	backend backend
	// gate is nil for an open host.
	gate   *gate
	signIn http.Handler
	// fwd carries requests to the backend; proxy the ones that upgrade.
	fwd    *forwarder
	proxy  *httputil.ReverseProxy
	router *Router
	// routes are the routes this one was built in: a request is judged
	// by them (trusted_proxies) whatever reload comes while it is served.
	routes *Routes
	// serve is set on the route of a serve block's port.
	serve *serveInfo
	// providers are the host's oauth "<name>" blocks, in its order.
	providers []*providerRoute
}

// New builds the router, with the routes of cfg.Config.
func New(cfg Config) (*Router, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport == nil {
		cfg.Transport = NewBackendTransport()
	}
	if cfg.Recorder == nil {
		cfg.Recorder = observe.Discard{}
	}
	router := &Router{
		store:     cfg.Sessions,
		recorder:  cfg.Recorder,
		log:       cfg.Logger,
		buffers:   httpx.NewBufferPool(),
		transport: cfg.Transport,
		limiter:   newRateLimiter(time.Now, signinStartsPerMinute),
		callbacks: newRateLimiter(time.Now, signinStartsPerMinute),
		wrongKeys: newRateLimiter(time.Now, wrongKeysPerMinute),
		stale:     cfg.StaleSession,
		now:       time.Now,

		tunnelRecheck: cfg.TunnelRecheck,
	}
	if router.tunnelRecheck <= 0 {
		router.tunnelRecheck = DefaultTunnelRecheck
	}
	routes, err := router.NewRoutes(RoutesConfig{Config: cfg.Config, Nomad: cfg.Nomad, SignIns: cfg.SignIns, Providers: cfg.Providers})
	if err != nil {
		return nil, err
	}
	router.SetRoutes(routes)
	return router, nil
}

// NewRoutes builds the routes of a configuration without serving them:
// a reload builds them all before it replaces anything.
func (router *Router) NewRoutes(cfg RoutesConfig) (*Routes, error) {
	routes := &Routes{router: router, hosts: map[string]*hostRoute{}, serves: map[string]*hostRoute{}, trustedProxies: cfg.Config.Ingress.TrustedProxies}
	for _, h := range cfg.Config.Hosts {
		hr, err := router.newHostRoute(h, cfg)
		if err != nil {
			return nil, err
		}
		hr.routes = routes
		routes.hosts[h.Hostname] = hr
	}
	for _, s := range cfg.Config.Serves {
		hr, err := router.newServeRoute(s, cfg)
		if err != nil {
			return nil, err
		}
		hr.routes = routes
		routes.serves[s.Label] = hr
	}
	return routes, nil
}

// Routes are the routes being served.
func (router *Router) Routes() *Routes { return router.routes.Load() }

// NomadServices are the Nomad services the routes' backends name.
func (routes *Routes) NomadServices() []string {
	var out []string
	for _, m := range []map[string]*hostRoute{routes.hosts, routes.serves} {
		for _, hr := range m {
			if hr.host.Backend.Kind == config.BackendNomad {
				out = append(out, hr.host.Backend.Service)
			}
		}
	}
	return out
}

// SetRoutes serves routes from now on; requests already being served
// finish under the routes they began with.
func (router *Router) SetRoutes(routes *Routes) { router.routes.Store(routes) }

// newHostRoute builds one host's route: its backend, gate, sign-in
// handler and the proxies to the backend.
func (router *Router) newHostRoute(h config.Host, cfg RoutesConfig) (*hostRoute, error) {
	hr := &hostRoute{host: h, router: router, gate: newGate(h)}
	switch h.Backend.Kind {
	case config.BackendNomad:
		if cfg.Nomad == nil {
			return nil, fmt.Errorf("host %s: backend %s needs a Nomad resolver", h.Hostname, h.Backend.Raw)
		}
		hr.backend = cfg.Nomad.backend(h.Backend.Service)
	case config.BackendURL:
		hr.backend = staticBackend{url: h.Backend.URL}
	}
	if h.ATProto != nil {
		hr.signIn = cfg.SignIns[h.Hostname]
	}
	providers, err := newProviderRoutes(h, cfg.Providers[h.Hostname])
	if err != nil {
		return nil, err
	}
	hr.providers = providers
	transport := httpx.TimedTransport{Next: router.transport, Observe: router.upstreamTimer(h.Hostname)}
	hr.fwd = &forwarder{transport: transport, buffers: router.buffers, decorate: hr.decorate, fail: hr.proxyFailed}
	hr.proxy = &httputil.ReverseProxy{
		Rewrite:   hr.rewrite,
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			st, _ := r.Context().Value(ctxKey{}).(*proxyState)
			hr.proxyFailed(w, r, st, err)
		},
		ModifyResponse: switchedProtocols,
		BufferPool:     router.buffers,
		ErrorLog:       slog.NewLogLogger(router.log.Handler(), slog.LevelWarn),
	}
	return hr, nil
}

// upstreamTimer reports a host's backend answer times.
func (router *Router) upstreamTimer(host string) func(time.Duration) {
	return func(d time.Duration) { router.recorder.UpstreamDuration(observe.KindIngress, host, d) }
}

// HostHandler returns the handler of one configured host, for calling
// ports whose endpoint names the host. Requests through it never count
// as coming from a trusted proxy, whatever their address: the calling
// port's client is the app (or, in development, a browser), not a proxy
// in front.
func (router *Router) HostHandler(name string) (http.Handler, bool) {
	return router.routes.Load().HostHandler(name)
}

// HostHandler is Router.HostHandler for these routes, for the calling
// ports a reload builds before it serves them.
func (routes *Routes) HostHandler(name string) (http.Handler, bool) {
	hr, ok := routes.hosts[config.NormalizeHost(name)]
	if !ok {
		return nil, false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hr.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), viaCallingPort{}, true)))
	}), true
}

// clientCtxKey carries, to the sign-in routes, the address a request is
// counted under (Router.clientKey).
type clientCtxKey struct{}

// clientOf is the address the request is counted under, as the router
// saw it; the peer address without a router.
func clientOf(r *http.Request) string {
	if c, ok := r.Context().Value(clientCtxKey{}).(string); ok {
		return c
	}
	return peerIP(r)
}

// viaCallingPort marks requests that reached a host through a calling port.
type viaCallingPort struct{}

// trusted reports whether the request comes from a configured trusted
// proxy, whose X-Forwarded-* headers are believed.
func (routes *Routes) trusted(r *http.Request) bool {
	if r.Context().Value(viaCallingPort{}) != nil {
		return false
	}
	return routes.trustedPeer(peerIP(r))
}

// ServeHTTP routes by Host: port ignored, case-insensitive.
func (router *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	router.routes.Load().ServeHTTP(w, r)
}

// ServeHTTP routes by Host under these routes: a caller that decided
// something of the request by them (Host) serves it by the same ones,
// whatever reload comes between.
func (routes *Routes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hr, ok := routes.hosts[config.NormalizeHost(r.Host)]
	if !ok {
		start := time.Now()
		writeError(w, r, errorPage{Status: http.StatusNotFound, Title: "Unknown host", Message: "This server does not serve the site you asked for. Check the address."})
		// Not the request's Host: that would let clients mint metric labels.
		routes.router.record(r, start, UnknownHost, &trace{}, http.StatusNotFound)
		return
	}
	hr.ServeHTTP(w, r)
}

// Host is the configured host a request's Host names (case-insensitive,
// port ignored), if any.
func (routes *Routes) Host(name string) (config.Host, bool) {
	hr, ok := routes.hosts[config.NormalizeHost(name)]
	if !ok {
		return config.Host{}, false
	}
	return hr.host, true
}

// ctxKey carries the chosen upstream and identity from ServeHTTP to the
// proxy's Rewrite and ErrorHandler hooks.
type ctxKey struct{}

type proxyState struct {
	target  *url.URL
	session *sessions.Session
	// providers are the sessions of other providers passed on.
	providers []*sessions.Session
	keyUser   string
	trace     *trace // the request's record, to mark an aborted answer
}

// recorded is what a request's record is made of, in one allocation: the
// writer that sees its status, and its trace.
type recorded struct {
	w     httpx.StatusWriter
	trace trace
}

// trace is what a request's record will say, filled in as it is served.
type trace struct {
	upstream  string
	did       string
	operation string
	aborted   bool
	// switched: the backend answered 101 and the tunnel is open. The
	// ReverseProxy writes that answer on the hijacked connection, which
	// the status writer never sees.
	switched bool
}

// switchedProtocols is the upgrade proxy's look at the backend's answer:
// the tunnel's handshake may set cookies too, and a 101 is marked for the
// request's record.
func switchedProtocols(res *http.Response) error {
	dropOwnCookies(res.Header)
	if res.StatusCode == http.StatusSwitchingProtocols && res.Request != nil {
		if st, _ := res.Request.Context().Value(ctxKey{}).(*proxyState); st != nil && st.trace != nil {
			st.trace.switched = true
		}
	}
	return nil
}

// ServeHTTP serves one host's request: /@/ is ioproxy's own, anything
// else goes through the gate to the backend.
func (hr *hostRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorded{w: httpx.StatusWriter{ResponseWriter: w}}
	sw, tr := &rec.w, &rec.trace
	defer func() {
		status := sw.Status()
		if tr.switched {
			status = http.StatusSwitchingProtocols
		}
		hr.router.record(r, start, hr.host.Hostname, tr, status)
	}()
	if hr.serve != nil {
		if hr.hostRefused(sw, r) {
			tr.upstream = "ioproxy"
			return
		}
		// Nothing stands in front of a serve block's port: its clients'
		// X-Forwarded-* are never believed, whatever trusted_proxies
		// lists (found in review: a local proxy listed there made every
		// local client a proxy, past the wrong-key limit).
		r = r.WithContext(context.WithValue(r.Context(), viaCallingPort{}, true))
	}
	// The context says HTTPS only where it differs from r.TLS (a trusted
	// proxy's X-Forwarded-Proto): a context value costs two allocations
	// a request. The header is read before the peer is judged: most
	// requests have none.
	if https := r.TLS != nil || (strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") && hr.routes.trusted(r)); https != isHTTPS(r) {
		r = withHTTPS(r, https)
	}
	if r.URL.Opaque != "" || r.Method == http.MethodConnect {
		// "GET http:x:/other/path" is an empty path to the checks here
		// and "x:/other/path" on the wire, outside the backend's prefix
		// (found in review); CONNECT is for forward proxies.
		tr.upstream = "ioproxy"
		writeError(sw, r, errorPage{Status: http.StatusBadRequest, Title: "Bad request", Message: "This request's target is not a path."})
		return
	}
	clean := normalizePath(r.URL.Path)
	if ownPath(clean) {
		hr.serveOwn(sw, r, clean, tr)
		return
	}
	if pr := hr.providerOf(clean); pr != nil {
		hr.serveProvider(sw, r, pr, clean, tr)
		return
	}
	hr.serveBackend(sw, r, tr)
}

// serveBackend takes a request through the guards and the gate to the
// host's backend.
func (hr *hostRoute) serveBackend(w http.ResponseWriter, r *http.Request, tr *trace) {
	if !httpguard.UpgradeAllowed(r.Header) {
		tr.upstream = "ioproxy"
		// Whatever the client sent after this request was meant for a
		// tunnel: drop it with the connection.
		w.Header().Set("Connection", "close")
		writeError(w, r, errorPage{Status: http.StatusBadRequest, Title: "Upgrade refused", Message: httpguard.ErrUpgradeMessage})
		return
	}
	sess, provs, err := hr.signedIn(r)
	if sess != nil {
		tr.did = sess.DID
	}
	if err != nil {
		storeDown(w, r)
		return
	}
	adm := hr.admit(r, sess, provs, publicPathsApply)
	if adm.outcome != admitted {
		hr.refuse(w, r, adm)
		return
	}
	if hr.backend == nil {
		writeError(w, r, errorPage{Status: http.StatusNotFound, Title: "Not found", Message: "ioproxy only checks sign-ins for this site (at /@/auth); the site itself is served by another proxy."})
		return
	}
	target, err := hr.backend.pick(r.Context())
	if err != nil {
		hr.router.log.Warn("no backend instance", "host", hr.host.Hostname, "backend", hr.host.Backend.Raw, "err", err)
		writeError(w, r, errorPage{Status: http.StatusServiceUnavailable, Title: "Service unavailable", Message: "The application behind this site has no running instance right now. Try again in a moment."})
		return
	}
	tr.upstream = target.Host
	// A denied account on a public path passes as nobody: adm.session,
	// not sess.
	st := &proxyState{target: target, session: adm.session, providers: adm.providers, keyUser: adm.keyUser, trace: tr}
	if upgrades(r.Header) {
		hr.serveTunnel(w, r, st)
		return
	}
	hr.fwd.forward(w, r, st)
}

// session returns the request's live session on this host, if any. A
// stale session (its access token has expired, or its handle is due for a
// recheck) is handed to the stale hook: the app may make no calls, so
// nothing else would refresh it, and a refresh is what re-checks the
// account (and its handle) with its server. An error is a store that
// could not answer.
func (hr *hostRoute) session(r *http.Request) (*sessions.Session, error) {
	if hr.serve != nil {
		return nil, nil // nobody signs in on a serve block's port
	}
	sess, ok, err := lookupSession(hr.router.store, r, hr.host.Hostname)
	if err != nil {
		hr.logLookupFailure(r, err)
		return nil, err
	}
	if !ok {
		return nil, nil
	}
	if hr.router.stale != nil && sess.Stale(hr.router.now()) {
		hr.router.stale(sess)
	}
	return &sess, nil
}

// signedIn is the request's AT Protocol session (session) and its
// provider sessions (providerSessions), which every judgement of a
// request looks up together: an error is a store that could not answer
// either, and sess is kept when only the provider sessions failed.
func (hr *hostRoute) signedIn(r *http.Request) (sess *sessions.Session, provs []*sessions.Session, err error) {
	if sess, err = hr.session(r); err != nil {
		return nil, nil, err
	}
	provs, err = hr.providerSessions(r)
	return sess, provs, err
}

// storeDown answers a request whose session the store could not look up.
func storeDown(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	writeError(w, r, errorPage{Status: http.StatusServiceUnavailable, Title: "Sign-in unavailable", Message: "Your session could not be looked up just now. Try again in a moment."})
}

// rewrite prepares an upgrade request for ReverseProxy, which has
// removed the hop-by-hop headers by then.
func (hr *hostRoute) rewrite(pr *httputil.ProxyRequest) {
	st, _ := pr.In.Context().Value(ctxKey{}).(*proxyState)
	pr.SetURL(st.target)
	pr.Out.Host = pr.In.Host
	hr.decorate(pr.In, pr.Out.Header, st)
}

// decorate sets what the backend is told on h, the outbound header, once
// the hop-by-hop headers are gone (so a client sending "Connection:
// User-Did" cannot make the proxy drop the identity headers set here):
// no client's identity headers, cookies or address headers, then ours.
func (hr *hostRoute) decorate(in *http.Request, h http.Header, st *proxyState) {
	for name := range h {
		if clientMayNotSay(name) {
			delete(h, name)
		}
	}
	removeCookies(h, ownCookie)
	set := newHeaderValues(h)
	hr.routes.setForwarded(in, set)
	if st.keyUser != "" {
		h.Del("Authorization") // the key was for ioproxy
	}
	hr.tellIdentity(set, st.session, st.providers, st.keyUser, true)
}

// tellIdentity sets the headers that say who a request is admitted as:
// the account, the other providers' sessions and the API key's user (by
// name only); with proxySession, Proxy-Session too, which is for
// backends and for a trusted proxy in front that passes it on.
func (hr *hostRoute) tellIdentity(set *headerValues, sess *sessions.Session, provs []*sessions.Session, keyUser string, proxySession bool) {
	if sess != nil {
		set.put(contract.UserDID, sess.DID)
		set.put(contract.UserHandle, hr.shownHandle(*sess))
		set.put(contract.UserScope, sess.Scope)
	}
	if len(provs) > 0 {
		names, email, subject := providerHeaders(provs)
		set.put(contract.ProxyProvider, names)
		if email != "" {
			set.put(contract.UserEmail, email)
		}
		set.put(contract.UserSubject, subject)
	}
	if keys := proxyKeys(sess, provs); proxySession && keys != "" {
		set.put(contract.ProxySession, keys)
	}
	if keyUser != "" {
		set.put(contract.APIKeyUser, keyUser)
	}
}

// headerValues sets one-value headers from one backing array: the twelve
// headers a proxied request may get cost one allocation, not one each.
type headerValues struct {
	h   http.Header
	buf []string
}

func newHeaderValues(h http.Header) *headerValues {
	return &headerValues{h: h, buf: make([]string, 0, 12)}
}

// put sets h[name] to value alone; name must be canonical (the constants
// of the contract and of X-Forwarded-* are).
func (v *headerValues) put(name, value string) {
	v.buf = append(v.buf, value)
	n := len(v.buf)
	v.h[name] = v.buf[n-1 : n : n] // capacity 1: an append elsewhere copies
}

// setForwarded writes X-Forwarded-For/-Host/-Proto. Values a client sent
// are kept only when it is a configured trusted proxy; otherwise they are
// replaced, so a client cannot spoof its address to the backend.
func (routes *Routes) setForwarded(in *http.Request, set *headerValues) {
	clientIP := peerIP(in)
	realIP := clientIP
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	fwdHost := in.Host
	if routes.trusted(in) {
		if prior := in.Header.Values("X-Forwarded-For"); len(prior) > 0 {
			clientIP = strings.Join(prior, ", ") + ", " + clientIP
		}
		if p := in.Header.Get("X-Forwarded-Proto"); p != "" {
			proto = p
		}
		if fh := in.Header.Get("X-Forwarded-Host"); fh != "" {
			fwdHost = fh
		}
		if ip := in.Header.Get("X-Real-Ip"); ip != "" {
			realIP = ip
		}
	}
	set.put("X-Real-Ip", realIP)
	set.put("X-Forwarded-For", clientIP)
	set.put("X-Forwarded-Host", fwdHost)
	set.put("X-Forwarded-Proto", proto)
}

// clientMayNotSay reports whether a header a client sent never reaches
// the backend, in any spelling: the contract's identity headers (ioproxy
// sets its own), the headers frameworks read for the client's address or
// the public URL (from an untrusted client they are lies, and a trusted
// proxy passes on what its clients sent, X_Forwarded_For or
// True-Client-Ip, beside its own X-Forwarded-*, which setForwarded has
// read), and method and URL overrides (from everyone: trusting a proxy's
// X-Forwarded-* does not make its clients' overrides its word).
func clientMayNotSay(name string) bool {
	return contract.IsIdentity(name) || isAddressHeader(name) || httpguard.IsOverride(name)
}

// isAddressHeader reports whether a header is one that frameworks read
// for the client's address or the public URL, in any spelling (any case,
// "_" for "-", as CGI-style backends fold them).
func isAddressHeader(name string) bool {
	var b [64]byte
	n := textutil.FoldHeader(b[:0], name)
	if bytes.HasPrefix(n, []byte("x-forwarded")) || bytes.HasPrefix(n, []byte("x-original-")) || bytes.HasPrefix(n, []byte("forwarded")) {
		return true
	}
	switch string(n) {
	case "x-real-ip", "x-url-scheme", "front-end-https", "true-client-ip", "x-client-ip", "client-ip",
		"x-cluster-client-ip", "cf-connecting-ip", "fastly-client-ip", "x-rewrite-url", "x-host",
		"x-appengine-user-ip", "x-azure-clientip", "x-azure-socketip", "x-proxyuser-ip", "via":
		return true
	}
	return false
}

// peerIP is the address of the connection's other end.
func peerIP(r *http.Request) string {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return ip
}

// normalizePath is the path as the most lenient backend would read it:
// "\" as "/", ";params" dropped from segments, dot segments and repeated
// slashes removed (a trailing slash kept).
func normalizePath(p string) string {
	p = strings.ReplaceAll(p, "\\", "/")
	if strings.Contains(p, ";") {
		segs := strings.Split(p, "/")
		for i, seg := range segs {
			if j := strings.IndexByte(seg, ';'); j >= 0 {
				segs[i] = seg[:j]
			}
		}
		p = strings.Join(segs, "/")
	}
	return cleanPath(p)
}

// cleanPath is path.Clean that keeps a trailing slash.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

func (routes *Routes) trustedPeer(ip string) bool {
	trusted := routes.trustedProxies
	if len(trusted) == 0 {
		return false
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// proxyFailed answers a request that the backend did not answer, and
// tells the backend about an instance that refused the connection.
func (hr *hostRoute) proxyFailed(w http.ResponseWriter, r *http.Request, st *proxyState, err error) {
	if st != nil && st.target != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			hr.backend.failed(st.target)
		}
	}
	if errors.Is(err, limits.ErrBodyTooSlow) || errors.Is(context.Cause(r.Context()), limits.ErrBodyTooSlow) {
		writeError(w, r, errorPage{Status: http.StatusRequestTimeout, Title: "Upload too slow", Message: "Your browser sent the request's body too slowly, so it was cut off. Check your connection and try again."})
		return
	}
	if errors.Is(err, context.Canceled) {
		// The client went away; nobody reads this answer.
		w.WriteHeader(499)
		return
	}
	hr.router.log.Warn("backend request failed", "host", hr.host.Hostname, "err", err)
	if httpx.IsTimeout(err) {
		writeError(w, r, errorPage{Status: http.StatusGatewayTimeout, Title: "The application is not answering", Message: "The application behind this site took too long to answer. Try again in a moment."})
		return
	}
	writeError(w, r, errorPage{Status: http.StatusBadGateway, Title: "The application is not reachable", Message: "The application behind this site is down or restarting. Try again in a moment."})
}

// record reports a finished request, as its trace says it went.
func (router *Router) record(r *http.Request, start time.Time, host string, tr *trace, status int) {
	router.recorder.Request(observe.Request{
		Time:      start,
		Kind:      observe.KindIngress,
		Source:    host,
		Operation: tr.operation,
		Method:    r.Method,
		Path:      r.URL.Path,
		Status:    status,
		Duration:  time.Since(start),
		Upstream:  tr.upstream,
		DID:       tr.did,
		Remote:    r.RemoteAddr,
		Aborted:   tr.aborted,
	})
}
