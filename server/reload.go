package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2"

	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/ingress"
	"github.com/ioproxy/ioproxy/ingress/certs"
)

// Reload reads the configuration again (Options.Load) and, when it is
// valid, applies it without a restart: hosts, backends, access rules, API
// keys, sign-in settings, calling ports, serve blocks and certificates.
// Requests in flight and open WebSockets finish under the configuration
// they began with; no session ends. Settings that only a restart applies
// (the store, the data dir, the ingress and admin listeners, identity,
// Nomad, logs) keep their running values, and the log says which
// changed.
//
// When the configuration has errors, or a new calling or serve port
// cannot be bound, nothing changes: every diagnostic is logged at
// file:line and the error says why. Without Options.Load, Reload reads
// the certificate files again and nothing else.
func (s *Server) Reload(ctx context.Context) (ReloadReport, error) {
	s.reloading.Lock()
	defer s.reloading.Unlock()
	if s.closed {
		return ReloadReport{}, errors.New("reload: the server is closed")
	}
	if s.load == nil {
		return ReloadReport{CertificatesOnly: true}, s.certs.Load().Reload()
	}
	cfg, diags := s.load()
	logDiagnostics(s, diags)
	if diags.HasErrors() {
		s.recorder.Reload(false)
		n := len(diags.Errs())
		s.log.Error("reload refused: the configuration has errors; the running one stays", "errors", n)
		return ReloadReport{}, fmt.Errorf("reload: the configuration has %d error(s); the running one stays: %w", n, diags)
	}
	rep, err := s.apply(ctx, cfg)
	if s.nomad != nil {
		// The routes in use name the services to keep asking Nomad
		// about; those only a failed reload named are forgotten.
		s.nomad.Retain(s.router.Routes().NomadServices())
	}
	if err != nil {
		s.recorder.Reload(false)
		s.log.Error("reload failed; the running configuration stays", "err", err)
		return ReloadReport{}, fmt.Errorf("reload: %w", err)
	}
	for _, d := range diags {
		rep.Warnings = append(rep.Warnings, diagnosticAt(d)+": "+d.Summary)
	}
	s.recorder.Reload(true)
	return rep, nil
}

// ReloadReport says what a reload applied.
type ReloadReport struct {
	// Hosts, Calls and Serves count the hosts, calling ports and serve
	// blocks now served.
	Hosts, Calls, Serves int
	// Restart names the settings that changed but take effect at the
	// next restart.
	Restart []string
	// Warnings are the configuration's warnings, at file:line, and what
	// went wrong in applying it without undoing it (certificate files
	// that could not be read again).
	Warnings []string
	// CertificatesOnly is set when the server has no Options.Load: only
	// the certificate files were read again.
	CertificatesOnly bool
}

// logDiagnostics logs each diagnostic of a configuration read again, at
// its file:line.
func logDiagnostics(s *Server, diags hcl.Diagnostics) {
	for _, d := range diags {
		at := diagnosticAt(d)
		if d.Severity == hcl.DiagError {
			s.log.Error("configuration error", "at", at, "summary", d.Summary, "detail", d.Detail)
		} else {
			s.log.Warn("configuration warning", "at", at, "summary", d.Summary, "detail", d.Detail)
		}
	}
}

// diagnosticAt is where a diagnostic points, as file:line.
func diagnosticAt(d *hcl.Diagnostic) string {
	if d.Subject == nil {
		return "?"
	}
	return fmt.Sprintf("%s:%d", d.Subject.Filename, d.Subject.Start.Line)
}

// next is a configuration built but not yet serving: everything a reload
// makes before it replaces anything, so that a failure changes nothing.
type next struct {
	cfg     *config.Config
	routes  *ingress.Routes
	nomad   *ingress.Nomad
	clients map[string]*oauth.Client
	// clientKeys are the client keys of the OAuth clients: those in
	// use, or the first ones, which commit puts in use.
	clientKeys *oauth.ClientKeys
	providers  providerSet
	certs      *certs.Manager // nil when the hosts' certificates are unchanged
	// certSettings are cfg's tlsSettings, which certs is made of.
	certSettings string
	// https is the HTTPS listener newly bound for the first host with a
	// certificate, nil when there is one already or none is needed.
	https *port
	// ports are the listeners of the calling ports and serve blocks, kept or newly bound
	// (not serving yet), each with its handler; closed are those that go.
	ports  []portChange
	bound  *listeners
	closed []*port
	// calls are the calling ports' handlers by label, some kept.
	calls map[string]callHandler
	// restart names what changed but only a restart applies; warnings
	// are what went wrong in commit without undoing it.
	restart, warnings []string
}

// portChange is a port of the new configuration: one that stays (with a
// handler for its new block, and maybe a new role) or one newly bound.
type portChange struct {
	port    *port
	role    string
	handler http.Handler
}

// apply builds everything cfg needs, then puts it in place.
func (s *Server) apply(ctx context.Context, cfg *config.Config) (ReloadReport, error) {
	cfg, restart := keepRestartSettings(s.config(), cfg, s.nomad != nil)
	n, err := s.prepare(ctx, cfg)
	if err != nil {
		return ReloadReport{}, err
	}
	s.commit(n)
	restart = append(restart, n.restart...)
	for _, r := range restart {
		s.log.Warn("configuration reloaded, but a setting that changed takes effect at the next restart", "setting", r)
	}
	s.log.Info("configuration reloaded", "config", cfg.Filename, "hosts", len(cfg.Hosts), "calls", len(cfg.Calls), "serves", len(cfg.Serves))
	return ReloadReport{Hosts: len(cfg.Hosts), Calls: len(cfg.Calls), Serves: len(cfg.Serves), Restart: restart, Warnings: n.warnings}, nil
}

// prepare builds the OAuth clients, routes, calling ports and
// certificates of cfg, and binds the listeners it adds; on an error it
// closes what it bound.
func (s *Server) prepare(ctx context.Context, cfg *config.Config) (_ *next, err error) {
	n := &next{cfg: cfg, nomad: s.nomadFor(cfg), bound: s.newListeners()}
	defer func() {
		if err != nil {
			for _, p := range n.bound.pending {
				p.shutdown(ctx)
			}
		}
	}()
	oc, err := s.oauthClients(ctx, cfg, s.clientKeys)
	if err != nil {
		return nil, err
	}
	n.clients, n.clientKeys = oc.clients, oc.keys
	if n.providers, err = s.newProviders(cfg); err != nil {
		return nil, err
	}
	if n.routes, err = s.router.NewRoutes(ingress.RoutesConfig{Config: cfg, Nomad: n.nomad, SignIns: s.signIns(oc.hosts), Providers: n.providers.forIngress()}); err != nil {
		return nil, err
	}
	if n.certSettings = tlsSettings(cfg); n.certSettings != s.certSettings {
		if n.certs, err = s.newCerts(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if cfg.ServesHTTPS() && s.ports["https"] == nil {
		// The first host with a certificate: the HTTPS listener is new.
		if n.https, err = s.bindHTTPS(n.bound, cfg); err != nil {
			return nil, err
		}
	}
	if err := s.preparePorts(n); err != nil {
		return nil, err
	}
	return n, nil
}

// preparePorts makes the handler of each calling port and serve block
// of n.cfg, and finds its listener: the one bound at its address
// already, whatever the block was named, or a new one. The listeners of
// blocks gone close.
func (s *Server) preparePorts(n *next) error {
	specs, calls, err := s.portSpecs(n.cfg, n.routes, s.calls)
	if err != nil {
		return err
	}
	n.calls = calls
	held := map[string]*port{} // by address, until a spec claims it
	for _, p := range s.ports {
		if strings.HasPrefix(p.role, "call:") || strings.HasPrefix(p.role, "serve:") {
			held[p.addr] = p
		}
	}
	keep := func(p *port, sp portSpec) {
		delete(held, p.addr)
		if p.max != sp.conns.Max {
			n.restart = append(n.restart, sp.role+" max_connections")
		}
		n.ports = append(n.ports, portChange{port: p, role: sp.role, handler: sp.handler})
	}
	// Exact addresses first, so that no block takes another's listener.
	var rest []portSpec
	for _, sp := range specs {
		if p, ok := held[sp.addr]; ok {
			keep(p, sp)
		} else {
			rest = append(rest, sp)
		}
	}
	for _, sp := range rest {
		p, err := s.bind(n.bound, sp.role, sp.addr, sp.handler, false, sp.conns)
		if err == nil {
			n.ports = append(n.ports, portChange{port: p, role: sp.role, handler: sp.handler})
			continue
		}
		// The block's own listener on the same port, under another bind
		// (127.0.0.1 to 0.0.0.0): the new one cannot be bound beside it.
		// Keep it, and name the change for the next restart.
		own := heldBySamePort(held, sp)
		if own == nil || !errors.Is(err, syscall.EADDRINUSE) {
			return s.explainBindFailure(sp, err)
		}
		n.restart = append(n.restart, fmt.Sprintf("%s bind (%s, listening on %s)", sp.role, sp.addr, own.addr))
		keep(own, sp)
	}
	for _, p := range held {
		n.closed = append(n.closed, p)
	}
	return nil
}

// explainBindFailure names, for a port that cannot be bound because one
// of ioproxy's own running listeners holds it, which one: the
// configuration is valid (its own listeners do not collide), but a
// setting that only a restart applies kept the running one where it was
// (admin, the ingress listeners), or another block keeps it until this
// reload has been applied.
func (s *Server) explainBindFailure(sp portSpec, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	host, num, perr := net.SplitHostPort(sp.addr)
	if perr != nil {
		return err
	}
	for _, p := range s.ports {
		if h, n, perr := net.SplitHostPort(p.addr); perr == nil && n == num && p.role != sp.role && sameInterface(h, host) {
			return fmt.Errorf("%s cannot listen on %s: the running %s listener holds port %s (its own address changes only at a restart, or its block moves only once this reload is applied): give %s another port, or restart: %w", sp.role, sp.addr, p.role, num, sp.role, err)
		}
	}
	return err
}

// sameInterface reports whether two listen hosts can collide on a port:
// the same one, or either of them every interface.
func sameInterface(a, b string) bool {
	norm := func(h string) string {
		switch h {
		case "", "0.0.0.0", "::":
			return ""
		case "localhost":
			return "127.0.0.1"
		}
		return h
	}
	a, b = norm(a), norm(b)
	return a == "" || b == "" || a == b
}

// heldBySamePort is the unclaimed listener of the same block (role) on
// the same port number as sp, if any.
func heldBySamePort(held map[string]*port, sp portSpec) *port {
	_, num, err := net.SplitHostPort(sp.addr)
	if err != nil {
		return nil
	}
	for addr, p := range held {
		if _, n, err := net.SplitHostPort(addr); err == nil && n == num && p.role == sp.role {
			return p
		}
	}
	return nil
}

// commit puts a prepared configuration in place: from here on, new
// requests are served by it.
func (s *Server) commit(n *next) {
	s.sessions.SetClients(n.clients)
	s.providers.Store(&n.providers)
	s.router.SetRoutes(n.routes)
	if n.certs != nil {
		s.certs.Store(n.certs)
		s.certSettings = n.certSettings
		s.ports["http"].handler.set(n.certs.HTTPHandler(s.httpHandler()))
		s.runCerts(n.certs)
	} else if err := s.certs.Load().Reload(); err != nil {
		s.log.Error("certificate files could not all be read again; the previous certificates stay", "err", err)
		n.warnings = append(n.warnings, "certificate files could not all be read again (the previous certificates stay): "+err.Error())
	}
	s.cfg.Store(n.cfg)
	for _, p := range n.closed {
		s.forget(p)
		s.stop(p)
	}
	// Kept ports may have changed names, even with each other: forget
	// every old name before keeping the new ones.
	for _, pc := range n.ports {
		s.forget(pc.port)
	}
	for _, pc := range n.ports {
		pc.port.handler.set(pc.handler)
		pc.port.role = pc.role
		s.keep(pc.port)
	}
	if n.https != nil {
		s.keep(n.https)
	}
	n.bound.serve(&s.wg)
	if n.nomad != nil && s.nomad == nil {
		s.nomad = n.nomad
		s.run(s.bg, n.nomad.Run)
	}
	if s.clientKeys == nil && n.clientKeys != nil {
		s.clientKeys = n.clientKeys
		s.watchClientKeys()
	}
	s.replaceCalls(n.calls)
}

// replaceCalls puts the calling ports' handlers of a commit in use,
// closes the idle connections of those it replaced, and retires the
// blocks that changed or went (their WebSockets close).
func (s *Server) replaceCalls(calls map[string]callHandler) {
	for label, old := range s.calls {
		next, ok := calls[label]
		if !next.kept {
			closeIdle(old.handler)
		}
		if old.retired != nil && (!ok || next.retired != old.retired) {
			old.retired.retire()
		}
	}
	s.calls = calls
}

// forget takes a port out of the server's ports (and Addrs) and metrics.
func (s *Server) forget(p *port) {
	if s.ports[p.role] != p {
		return
	}
	delete(s.ports, p.role)
	s.recorder.ForgetListener(p.role)
}

// stop closes a port's listener, and shuts the rest of it down in the
// background: its requests in flight get the shutdown timeout to finish,
// as at Close.
func (s *Server) stop(p *port) {
	// No new connection from now on; those open finish the request they
	// are serving, and a request that comes after on a kept-alive
	// connection is refused: the block it was for is gone.
	p.closing.Store(true)
	p.srv.SetKeepAlivesEnabled(false)
	p.handler.set(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		http.Error(w, "503 Service Unavailable: this port was closed by a configuration reload", http.StatusServiceUnavailable)
	}))
	_ = p.ln.Close()
	s.stopping.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.shutdown)
		defer cancel()
		p.shutdown(ctx)
	})
}

// keepRestartSettings returns next with the settings that only a restart
// applies set back to their running values, and names those that
// differed.
func keepRestartSettings(cur, next *config.Config, nomadRunning bool) (*config.Config, []string) {
	out := *next
	var changed []string
	keep := func(name string, differ bool, reset func()) {
		if differ {
			changed = append(changed, name)
			reset()
		}
	}
	keep("data_dir", cur.DataDir != next.DataDir, func() { out.DataDir = cur.DataDir })
	keep("sessions", !reflect.DeepEqual(cur.Sessions, next.Sessions), func() { out.Sessions = cur.Sessions })
	keep("admin", !reflect.DeepEqual(cur.Admin, next.Admin), func() { out.Admin = cur.Admin })
	keep("identity", cur.Identity != next.Identity, func() { out.Identity = cur.Identity })
	// The Nomad resolver is made once: the first reload that needs one
	// makes it with its own nomad block.
	keep("nomad", nomadRunning && cur.Nomad != next.Nomad, func() { out.Nomad = cur.Nomad })
	keep("log", cur.Log != next.Log, func() { out.Log = cur.Log })
	// trusted_proxies apply at once: they are read at each request.
	curIn, nextIn := cur.Ingress, next.Ingress
	curIn.TrustedProxies, nextIn.TrustedProxies = nil, nil
	keep("ingress listeners and limits", !reflect.DeepEqual(curIn, nextIn), func() {
		out.Ingress = cur.Ingress
		out.Ingress.TrustedProxies = next.Ingress.TrustedProxies
	})
	return &out, changed
}

// tlsSettings is what the certificate Manager is made of, without the
// places in the files it came from: a reload that changes none of it
// keeps the Manager (and its certificates in memory).
func tlsSettings(cfg *config.Config) string {
	var b strings.Builder
	t := cfg.TLS
	// The CA file by its contents too: a new root under the same name
	// (a private ACME server's) is a new Manager's.
	fmt.Fprintf(&b, "%q %q %q %s %q %q %q\n", t.ACME.Email, t.ACME.Directory, t.ACME.CAFile, fileDigest(t.ACME.CAFile), t.CertFile, t.KeyFile, cfg.DataDir)
	hosts := slices.Clone(cfg.Hosts)
	slices.SortFunc(hosts, func(a, b config.Host) int { return strings.Compare(a.Hostname, b.Hostname) })
	for _, h := range hosts {
		fmt.Fprintf(&b, "%q %q %q %q\n", h.Hostname, h.TLS.Mode, h.TLS.CertFile, h.TLS.KeyFile)
	}
	return b.String()
}

// fileDigest is the SHA-256 of a file's contents in hex; "" for no file,
// and "unreadable" for one that cannot be read (building the Manager
// then says why).
func fileDigest(path string) string {
	if path == "" {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "unreadable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
