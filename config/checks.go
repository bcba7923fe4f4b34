package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// The checks in this file look across blocks, once all are built.

// checkPorts refuses two listeners on one port: calling ports and serve
// blocks' ports among themselves, and against the ingress and admin
// listeners.
func (b *builder) checkPorts(raw *fileSchema, cfg *Config) {
	type owner struct {
		what string
		host string
	}
	taken := map[int]owner{}
	add := func(addr, what string) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return
		}
		if n, err := strconv.Atoi(port); err == nil {
			taken[n] = owner{what: what, host: host}
		}
	}
	add(cfg.Ingress.HTTPAddr, "the ingress http listener")
	if cfg.ServesHTTPS() {
		add(cfg.Ingress.HTTPSAddr, "the ingress https listener")
	}
	if cfg.Admin.Listen != "" {
		add(cfg.Admin.Listen, "the admin listener")
	}
	for _, bc := range b.calls {
		c := bc.value
		if prev, ok := taken[c.Port]; ok && overlaps(prev.host, c.Bind) {
			b.errorf(bc.raw.PortRange, "Port already in use", "Port %d is already used by %s; give call %q a port of its own.", c.Port, prev.what, c.Label)
			continue
		}
		taken[c.Port] = owner{what: fmt.Sprintf("call %q", c.Label), host: c.Bind}
	}
	for _, bs := range b.serves {
		s := bs.value
		if s.Port == 0 {
			// Missing or out of range: refused already.
			continue
		}
		if prev, ok := taken[s.Port]; ok && overlaps(prev.host, s.Bind) {
			b.errorf(bs.raw.PortRange, "Port already in use", "Port %d is already used by %s; give serve %q a port of its own.", s.Port, prev.what, s.Label)
			continue
		}
		taken[s.Port] = owner{what: fmt.Sprintf("serve %q", s.Label), host: s.Bind}
	}
	if cfg.ServesHTTPS() && cfg.Ingress.HTTPAddr != "" {
		_, hp, _ := net.SplitHostPort(cfg.Ingress.HTTPAddr)
		_, sp, _ := net.SplitHostPort(cfg.Ingress.HTTPSAddr)
		if hp == sp && raw.Ingress != nil {
			b.errorf(raw.Ingress.HTTPS.Range(), "Port already in use", "http and https cannot share port %s; give https a port of its own, such as https = 8443.", sp)
		}
	}
}

// overlaps reports whether two bind hosts could collide on one port.
func overlaps(a, b string) bool {
	if a == "" || b == "" || a == "0.0.0.0" || b == "0.0.0.0" || a == "::" || b == "::" {
		return true
	}
	if a == "localhost" {
		a = "127.0.0.1"
	}
	if b == "localhost" {
		b = "127.0.0.1"
	}
	return a == b
}

// checkLocalClients makes sure that a localhost OAuth client's redirect
// (http://127.0.0.1:<local>/@/callback) reaches the host's sign-in routes.
func (b *builder) checkLocalClients(cfg *Config) {
	for _, bh := range b.hosts {
		h := bh.value
		if h.ATProto == nil || h.ATProto.Local == 0 {
			continue
		}
		if h.Backend.Kind == BackendNone {
			// A forward-auth host: the proxy in front owns the port and
			// passes /@/ on to ioproxy.
			continue
		}
		reached := false
		for _, bc := range b.calls {
			if c := bc.value; c.Port == h.ATProto.Local && c.Endpoint.Kind == EndpointHost && c.Endpoint.Host == h.Hostname {
				reached = true
			}
		}
		if _, port, err := net.SplitHostPort(cfg.Ingress.HTTPAddr); err == nil && port == strconv.Itoa(h.ATProto.Local) {
			reached = true
		}
		if !reached {
			// A local port comes only from a written atproto block (the
			// one require_atproto implies has none); should that change,
			// the host's block is still the right place to point at.
			rng := bh.raw.DefRange
			if bh.raw.ATProto != nil {
				rng = bh.raw.ATProto.LocalRange
			}
			b.errorf(rng, "Sign-in redirect goes nowhere", "The browser returns from sign-in to http://127.0.0.1:%d/@/callback, but nothing of ioproxy listens there for host %q. Add call %q { port = %d, endpoint = %q } or set ingress { http = %d }.", h.ATProto.Local, h.Hostname, h.ShortName, h.ATProto.Local, h.Hostname, h.ATProto.Local)
		}
	}
}

// checkACMEEmail refuses ACME hosts without an account email when the
// configured CA is one that requires it.
func (b *builder) checkACMEEmail(raw *fileSchema, cfg *Config) {
	if cfg.TLS.ACME.Email != "" {
		return
	}
	var first *built[Host, hostSchema]
	for i := range b.hosts {
		if b.hosts[i].value.TLS.Mode == TLSACME {
			first = &b.hosts[i]
			break
		}
	}
	if first == nil {
		return
	}
	u, err := url.Parse(cfg.TLS.ACME.Directory)
	if err != nil {
		return
	}
	ca := emailRequiredCA(strings.ToLower(u.Hostname()))
	if ca == "" {
		return
	}
	// Only a written directory names such a CA, so the fallback to the
	// host's block is for a default CA that one day needs an email.
	rng := first.raw.DefRange
	if raw.TLS != nil && raw.TLS.ACME != nil {
		rng = raw.TLS.ACME.DirectoryRange
	}
	b.errorf(rng, "ACME email required", "%s issues certificates only to accounts with a contact email, and host %q (%s) gets its certificate from %s; write tls { acme { email = \"ops@example.com\" } }.", ca, first.value.Hostname, at(first.raw.HostnameRange), ca)
}
