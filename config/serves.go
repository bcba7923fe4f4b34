package config

import (
	"fmt"
	"net"

	"github.com/hashicorp/hcl/v2"
)

// DefaultServeBind is where a serve block's port listens when bind is left
// out: this machine only, as a calling port.
const DefaultServeBind = "127.0.0.1"

// uniqueServes builds the serve blocks. A host's backend = "serving:<label>"
// names one by its label, so two may not share one.
func (b *builder) uniqueServes(raws []serveSchema) {
	dup := duplicate{"Duplicate serve", "Serve %q is already defined at %s. Give each serve block a label of its own."}
	b.serves = uniqueBlocks(b, raws, dup, func(rs *serveSchema) (Serve, string, hcl.Range) {
		s := b.serve(rs)
		return s, s.Label, rs.LabelRange
	})
}

// serve builds one serve block: its port, the service behind it and the
// access rules, which are a host's.
func (b *builder) serve(raw *serveSchema) Serve {
	s := Serve{Label: raw.Label, ShortName: raw.Name, Bind: DefaultServeBind}
	if s.ShortName == "" {
		s.ShortName = s.Label
	}
	if !validServiceName(s.Label) {
		b.errorf(raw.LabelRange, "Invalid serve label", "%q cannot be named in a host's backend = \"serving:…\"; write a label of letters, digits, dashes, dots and underscores that starts with a letter or digit, as in serve \"nomad\" { … }.", s.Label)
	}
	if raw.Port == nil {
		b.errorf(raw.DefRange, "Missing port", "Serve %q listens on a port of its own; write one, as in port = 9009.", s.Label)
	} else if b.blockPort(raw.PortRange, *raw.Port, 9009) {
		// An invalid one stays 0, so that checkPorts passes over it.
		s.Port = *raw.Port
	}
	if raw.Bind != nil {
		s.Bind = *raw.Bind
		b.blockBind(raw.BindRange, s.Bind, fmt.Sprintf("Leave bind out for %q (this machine only), or write an address of this machine, such as bind = \"10.0.0.5\" (or \"0.0.0.0\" for every interface): on its port, serve %q admits API keys and public paths only.", DefaultServeBind, s.Label))
	}
	s.Backend = b.serveBackend(raw)
	for _, r := range raw.RequireOAuth {
		backend := "<the service's address>"
		if raw.Backend != nil {
			backend = *raw.Backend
		}
		b.errorf(r.DefRange, "require_oauth in a serve block", "require_oauth is not available in serve blocks yet; guard the service with a host: host \"<name>\" { backend = %q, oauth %q { … }, require_oauth %q { … } } in place of serve %q.", backend, r.Provider, r.Provider, s.Label)
	}
	s.Access = b.access(serveGuard(raw))
	if s.Access == nil {
		b.errorf(raw.DefRange, "No access rules", "Serve %q would let anyone in. Add require_atproto { handles = [\"alice.example.com\"] } for accounts that sign in on a host with backend = \"serving:%s\", apikey_auth { users = \"ci:<bcrypt hash>\" } for machine clients (from `htpasswd -nbB ci <key>`), or both.", s.Label, s.Label)
		s.Access = &Access{}
	}
	return s
}

// blockPort reports whether the port of a call or serve block is one
// from 1 to 65535, and says so at rng, with an example, when it is not.
func (b *builder) blockPort(rng hcl.Range, port, example int) bool {
	if port >= 1 && port <= 65535 {
		return true
	}
	b.errorf(rng, "Invalid port", "%d is not a port from 1 to 65535; write, for example, port = %d.", port, example)
	return false
}

// blockBind checks the bind of a call or serve block: an IP address or
// localhost; advice is what to write instead, which depends on who
// reaches the block's port.
func (b *builder) blockBind(rng hcl.Range, bind, advice string) {
	if net.ParseIP(bind) == nil && bind != "localhost" {
		b.errorf(rng, "Invalid bind address", "%q is not an IP address. %s", bind, advice)
	}
}

// serveBackend reads a serve block's backend: the address of the service
// it guards, which may not be another serve block.
func (b *builder) serveBackend(raw *serveSchema) Backend {
	if raw.Backend == nil {
		b.errorf(raw.DefRange, "Missing backend", "Serve %q needs the address of the service it guards, as in backend = \"127.0.0.1:4646\" (or a URL, or \"nomad:<service>\").", raw.Label)
		return Backend{}
	}
	be, err := ParseBackend(*raw.Backend)
	switch {
	case err != nil:
		b.errorf(raw.BackendRange, "Invalid backend", "%v.", err)
		return Backend{}
	case be.Kind == BackendServing:
		b.errorf(raw.BackendRange, "Invalid backend", "A serve block's backend is the service's address, such as backend = \"127.0.0.1:4646\" or \"nomad:<service>\". serving:%s is how a host routes to a serve block; a serve block cannot route to another.", be.Serving)
		return Backend{}
	}
	return be
}

// serving makes a host whose backend is serving:<label> the front of that
// serve block: requests go straight to the block's backend under the
// block's rules, and browsers sign in on the host.
func (b *builder) serving(raw *hostSchema, h *Host) {
	label := h.Backend.Serving
	h.Serving = label
	h.Backend = Backend{}
	s := b.serveBlock(label)
	if s == nil {
		if len(b.serves) == 0 {
			b.errorf(raw.BackendRange, "Unknown serve block", "serving:%s names a serve block, and there is none: add serve %q { port = 9009, backend = \"127.0.0.1:4646\", require_atproto { … } }, or write the service's address here, as in backend = \"127.0.0.1:4646\".", label, label)
			return
		}
		labels := make([]string, len(b.serves))
		for i, bs := range b.serves {
			labels[i] = bs.value.Label
		}
		b.errorf(raw.BackendRange, "Unknown serve block", "There is no serve %q; the serve blocks are %s. Write backend = \"serving:<label>\" with one of them, or add serve %q { … }.", label, quoteList(labels), label)
		return
	}
	misplaced := func(rng hcl.Range) {
		b.errorf(rng, "Access rules of a serve block", "This host's backend is serving:%s, so the serve block's rules apply to this host; move them into serve %q (%s).", label, label, at(s.raw.DefRange))
	}
	if raw.RequireATProto != nil {
		misplaced(raw.RequireATProto.DefRange)
	}
	if raw.APIKeyAuth != nil {
		misplaced(raw.APIKeyAuth.DefRange)
	}
	// Serve blocks admit no OAuth accounts yet, so a host in front of one
	// can neither sign them in nor guard with their rules.
	for _, r := range raw.RequireOAuth {
		b.errorf(r.DefRange, "require_oauth in front of a serve block", "This host's backend is serving:%s, whose rules apply here, and require_oauth is not available in serve blocks yet. To guard the service with require_oauth, give this host the service's address (backend = %q) in place of serving:%s.", label, s.value.Backend.Raw, label)
	}
	for _, o := range raw.OAuth {
		b.errorf(o.DefRange, "OAuth sign-in in front of a serve block", "This host's backend is serving:%s, whose rules admit no accounts of %q (require_oauth is not available in serve blocks yet), so signing in with it would lead nowhere. Give this host the service's address (backend = %q) in place of serving:%s, with require_oauth %q { … }, or remove the oauth block.", label, o.Name, s.value.Backend.Raw, label, o.Name)
	}
	h.Backend = s.value.Backend
	h.Access = s.value.Access
	switch {
	case raw.ATProto != nil:
		h.ATProto = b.atproto(raw.ATProto, *h)
		if s.raw.RequireATProto == nil && s.raw.APIKeyAuth != nil {
			// As for a host with apikey_auth alone and an atproto block.
			b.errorf(raw.ATProto.DefRange, "Sign-in admits no one", "Serve %q (%s) has apikey_auth alone, so only API keys get in, and this atproto block's sign-in would lead nowhere. To let signed-in accounts in too, add require_atproto {} to serve %q (with dids or handles to name them); otherwise remove the atproto block.", label, at(s.raw.DefRange), label)
		}
	case s.raw.RequireATProto != nil:
		// As for a host with require_atproto and no atproto block: the
		// defaults of an empty one (scope "atproto", the host's name).
		h.ATProto = b.atproto(&atprotoSchema{DefRange: raw.BackendRange}, *h)
	}
}

// serveBlock returns the serve block of a label, nil if there is none.
func (b *builder) serveBlock(label string) *built[Serve, serveSchema] {
	for i := range b.serves {
		if b.serves[i].value.Label == label {
			return &b.serves[i]
		}
	}
	return nil
}

// linkServes records in each serve block the hosts that route to it, and
// warns of a block whose sign-in no host offers.
func (b *builder) linkServes() {
	// From b.hosts, which holds no duplicate host.
	for _, bh := range b.hosts {
		if s := b.serveBlock(bh.value.Serving); s != nil && bh.value.Serving != "" {
			s.value.Hosts = append(s.value.Hosts, bh.value.Hostname)
		}
	}
	for _, bs := range b.serves {
		if len(bs.value.Hosts) == 0 && bs.raw.RequireATProto != nil {
			l := bs.value.Label
			b.warnf(bs.raw.RequireATProto.DefRange, "Serve block without a host", "Nobody can sign in to serve %q: reached on its port it admits API keys and public paths only. Route a host to it with backend = \"serving:%s\", or remove require_atproto.", l, l)
		}
	}
}
