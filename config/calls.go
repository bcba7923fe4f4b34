package config

import (
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/hashicorp/hcl/v2"
)

// Defaults of a call block.
const (
	DefaultCallBind           = "127.0.0.1"
	DefaultMaxBodyBytes       = 16 << 20
	DefaultCallTimeout        = 30 * time.Second
	DefaultCallMaxConnections = 1024
)

// uniqueCalls builds the call blocks. The label names the calling port in
// logs, metrics and the traffic view, so two calls may not share one.
func (b *builder) uniqueCalls(raws []callSchema, cfg *Config) []Call {
	dup := duplicate{"Duplicate call", "Call %q is already defined at %s. Give each call block a label of its own."}
	b.calls = uniqueBlocks(b, raws, dup, func(rc *callSchema) (Call, string, hcl.Range) {
		c := b.call(rc, cfg)
		return c, c.Label, rc.LabelRange
	})
	return values(b.calls)
}

// call builds one call block: a calling port and where it sends requests.
func (b *builder) call(raw *callSchema, cfg *Config) Call {
	c := Call{
		Label:          raw.Label,
		ShortName:      raw.Name,
		Port:           raw.Port,
		Bind:           DefaultCallBind,
		Insecure:       raw.Insecure,
		OperationsOnly: raw.OperationsOnly,
		MaxBodyBytes:   DefaultMaxBodyBytes,
		Timeout:        DefaultCallTimeout,
		MaxConnections: DefaultCallMaxConnections,
	}
	if c.ShortName == "" {
		c.ShortName = c.Label
	}
	b.blockPort(raw.PortRange, c.Port, 7000)
	if raw.Bind != nil {
		c.Bind = *raw.Bind
		b.blockBind(raw.BindRange, c.Bind, "The calling port carries users' credentials: keep the default \"127.0.0.1\", or bind a private address such as bind = \"10.0.0.5\" (or \"0.0.0.0\" inside a container network).")
	}
	b.callLimits(raw, &c)
	c.Hosts = b.callHosts(raw.Hosts)
	c.Endpoint = b.endpoint(raw, cfg)
	if c.Insecure && c.Endpoint.Kind == EndpointPDS {
		b.warnf(raw.EndpointRange, "insecure has no effect", "insecure applies to endpoints that are URLs or host:port; calls to users' PDSs always verify certificates (or follow identity.allow_insecure).")
	}
	if b.written(raw.ServiceProxies) {
		c.ServiceProxies, c.ServiceProxiesSet = b.serviceProxies(raw.ServiceProxies), true
		// Kind 0 is an endpoint already refused above: one error is enough.
		if c.Endpoint.Kind != EndpointPDS && c.Endpoint.Kind != 0 {
			b.warnf(raw.ServiceProxies.Range(), "service_proxies has no effect", "service_proxies limits the Atproto-Proxy header of calls to the signed-in user's PDS (endpoint = \"@\"); this call's endpoint is %q. Remove service_proxies here.", raw.Endpoint)
		}
	}
	c.Auth = b.callAuth(raw, c)
	c.Operations = b.operations(raw)
	if c.OperationsOnly && len(c.Operations) == 0 {
		b.errorf(raw.DefRange, "No operations", "operations_only = true refuses every call that matches no operation, and this call block has none; add operation blocks or remove operations_only.")
	}
	return c
}

// callLimits reads how large a call's body, how long a call and how many
// connections at once the calling port allows.
func (b *builder) callLimits(raw *callSchema, c *Call) {
	if raw.MaxBodyBytes != nil {
		if *raw.MaxBodyBytes < 1 {
			b.errorf(raw.MaxBodyBytesRange, "Invalid max_body_bytes", "max_body_bytes is the largest request body a call may carry, in bytes, such as max_body_bytes = 16777216.")
		}
		c.MaxBodyBytes = *raw.MaxBodyBytes
	}
	if raw.Timeout != nil {
		c.Timeout = b.duration(raw.TimeoutRange, "timeout", *raw.Timeout, time.Second, "30s")
	}
	if raw.MaxConnections != nil {
		c.MaxConnections = b.limit(raw.MaxConnectionsRange, "max_connections", *raw.MaxConnections, DefaultCallMaxConnections,
			"how many connections the calling port holds open at once")
	}
}

// serviceFragment is a service id in a DID document, the part of an
// Atproto-Proxy value after "#".
var serviceFragment = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// serviceProxies reads service_proxies: "<DID>#<service id>" values, as a
// client sends them in Atproto-Proxy. It returns a non-nil slice, so that
// an empty list written out stays apart from none written.
func (b *builder) serviceProxies(expr hcl.Expression) []string {
	const example = "did:web:api.bsky.app#bsky_appview"
	out := []string{}
	for _, item := range b.stringList(expr, "service_proxies") {
		did, service, _ := strings.Cut(item.value, "#")
		if _, err := syntax.ParseDID(did); err != nil {
			b.errorf(item.rng, "Invalid service proxy", "%q does not start with a DID; write the service's DID, \"#\" and its service id, as in %q.", item.value, example)
			continue
		}
		if service == "" {
			b.errorf(item.rng, "Invalid service proxy", "%q names no service; write %q (the DID, \"#\" and the id of a service in its DID document, such as bsky_appview or atproto_labeler).", item.value, did+"#bsky_appview")
			continue
		}
		if !serviceFragment.MatchString(service) {
			b.errorf(item.rng, "Invalid service proxy", "%q is not a service id: it holds only letters, digits, \"_\" and \"-\", as in %q.", service, example)
			continue
		}
		out = append(out, item.value)
	}
	return out
}

// callHosts reads a call's hosts: bare host names, which it lower-cases.
func (b *builder) callHosts(expr hcl.Expression) []string {
	var out []string
	for _, item := range b.stringList(expr, "hosts") {
		name, err := parseHostName(item.value)
		if err != nil {
			b.errorf(item.rng, "Invalid host name", "%v.", err)
			continue
		}
		out = append(out, name)
	}
	return out
}

// endpoint reads where a call sends requests: the user's PDS, one of the
// file's hosts, or a URL.
func (b *builder) endpoint(raw *callSchema, cfg *Config) Endpoint {
	s := strings.TrimSpace(raw.Endpoint)
	e := Endpoint{Raw: raw.Endpoint}
	help := `Write "@" (the signed-in user's PDS), the name of one of this file's hosts (such as "localhost"), "host:port", or a URL such as "https://api.example.com".`
	switch {
	case s == "@":
		e.Kind = EndpointPDS
		return e
	case s == "":
		b.errorf(raw.EndpointRange, "Empty endpoint", "%s", help)
		return e
	}
	if _, ok := cfg.Host(s); ok && !strings.Contains(s, "://") && !strings.Contains(s, ":") {
		e.Kind, e.Host = EndpointHost, NormalizeHost(s)
		return e
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			b.errorf(raw.EndpointRange, "Invalid endpoint", "%q is not an http(s) URL. %s", s, help)
			return e
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		e.Kind, e.URL = EndpointURL, u
		return e
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if validHostname(strings.ToLower(s)) {
			// A bare name that is not one of our hosts: HTTPS on 443.
			e.Kind, e.URL = EndpointURL, &url.URL{Scheme: "https", Host: s}
			return e
		}
		b.errorf(raw.EndpointRange, "Invalid endpoint", "%q is not an endpoint. %s", s, help)
		return e
	}
	if _, err := parsePort(port); err != nil || host == "" {
		b.errorf(raw.EndpointRange, "Invalid endpoint", "%q: the port must be a number from 1 to 65535. %s", s, help)
		return e
	}
	// As in the original IO proxy, a host:port endpoint speaks HTTPS.
	e.Kind, e.URL = EndpointURL, &url.URL{Scheme: "https", Host: s}
	return e
}

// operations builds a call's operation blocks, refusing a second one of
// a name.
func (b *builder) operations(raw *callSchema) []Operation {
	dup := duplicate{"Duplicate operation", "Operation %q is already defined at %s; give each operation its own name."}
	return values(uniqueBlocks(b, raw.Operations, dup, func(ro *operationSchema) (Operation, string, hcl.Range) {
		op := b.operation(ro)
		return op, op.Name, ro.NameRange
	}))
}

// methodToken is the shape of an HTTP method, and nsidPattern that of an
// NSID (which names an XRPC method).
var (
	methodToken = regexp.MustCompile(`^[A-Z]+$`)
	nsidPattern = regexp.MustCompile(`^[a-zA-Z]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+\.[a-zA-Z][a-zA-Z0-9]*$`)
)

// knownMethods are the methods an operation is expected to name.
var knownMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// operation builds one operation block: a kind of call by method and path.
func (b *builder) operation(raw *operationSchema) Operation {
	op := Operation{Name: raw.Name, Method: raw.Method, Description: raw.Description}
	if up := strings.ToUpper(op.Method); up != op.Method && slices.Contains(knownMethods, up) {
		b.errorf(raw.MethodRange, "Invalid method", "Methods are upper case; write method = %q.", up)
	} else if !methodToken.MatchString(op.Method) {
		b.errorf(raw.MethodRange, "Invalid method", "%q is not an HTTP method; write one of %s.", op.Method, quoteList(knownMethods))
	} else if !slices.Contains(knownMethods, op.Method) {
		b.warnf(raw.MethodRange, "Unusual method", "%q is not one of %s; check the spelling.", op.Method, quoteList(knownMethods))
	}
	switch {
	case raw.Path != nil:
		op.Path = *raw.Path
		if !strings.HasPrefix(op.Path, "/") || strings.ContainsAny(op.Path, "?# ") {
			b.errorf(raw.PathRange, "Invalid path", "%q is not a path; write an absolute path without query, such as path = \"/xrpc/com.atproto.repo.createRecord\" (end it with \"/\" to match a prefix).", op.Path)
		}
	case nsidPattern.MatchString(op.Name):
		// Operations named by NSID default to that method's XRPC path.
		op.Path = "/xrpc/" + op.Name
	default:
		b.errorf(raw.DefRange, "Missing path", "Operation %q needs a path, such as path = \"/xrpc/com.atproto.repo.listRecords\" (or name the operation by its NSID, as in operation \"com.atproto.repo.listRecords\" { … }).", op.Name)
	}
	return op
}
