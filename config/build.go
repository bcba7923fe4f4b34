package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Defaults for settings the file leaves out.
const (
	DefaultDataDir      = "./data"
	DefaultHTTPAddr     = ":80"
	DefaultHTTPSAddr    = ":443"
	DefaultPLCURL       = "https://plc.directory"
	DefaultNomadAddress = "http://127.0.0.1:4646"
	DefaultNomadRefresh = 10 * time.Second
	DefaultAdminListen  = "127.0.0.1:9901"
	DefaultCallBind     = "127.0.0.1"
	DefaultMaxBodyBytes = 16 << 20
	DefaultCallTimeout  = 30 * time.Second

	DefaultMaxConnections     = 10000
	DefaultBodyIdleTimeout    = 20 * time.Second
	DefaultBodyMinRate        = 256
	DefaultCallMaxConnections = 1024
	DefaultMaxSessions        = 100000
	DefaultMaxPerAccount      = 10
)

// Below this many connections a listener turns away ordinary traffic: one
// browser alone opens several.
const lowMaxConnections = 16

// A handle_max_age over this admits a handle that moved to another account
// for that long after its checks started failing.
const longHandleMaxAge = 24 * time.Hour

// builder accumulates diagnostics while turning the schema into a Config.
type builder struct {
	diags hcl.Diagnostics
	opts  Options
	// trustedProxies counts ingress { trusted_proxies }, for host checks.
	trustedProxies int
	// hosts and calls are what Config.Hosts and Config.Calls are made of,
	// each beside the block it came from. Duplicates are left out of both,
	// so an index into Config never names the same block in fileSchema:
	// checks across blocks must take their ranges from here.
	hosts []builtHost
	calls []builtCall
}

// builtHost is a host together with the block it was built from.
type builtHost struct {
	host Host
	raw  *hostSchema
}

// builtCall is a call together with the block it was built from.
type builtCall struct {
	call Call
	raw  *callSchema
}

func (b *builder) errorf(rng hcl.Range, summary, detailFormat string, args ...any) {
	r := rng
	b.diags = append(b.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detailFormat, args...),
		Subject:  &r,
	})
}

// at renders a range as file:line for use inside a message.
func at(r hcl.Range) string { return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line) }

func (b *builder) warnf(rng hcl.Range, summary, detailFormat string, args ...any) {
	r := rng
	b.diags = append(b.diags, &hcl.Diagnostic{
		Severity: hcl.DiagWarning,
		Summary:  summary,
		Detail:   fmt.Sprintf(detailFormat, args...),
		Subject:  &r,
	})
}

func (b *builder) env(name string) string {
	lookup := b.opts.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, _ := lookup(name)
	return v
}

func build(raw *fileSchema, opts Options) (*Config, hcl.Diagnostics) {
	b := &builder{opts: opts}
	cfg := &Config{DataDir: DefaultDataDir}
	if raw.DataDir != nil {
		if *raw.DataDir == "" {
			b.errorf(raw.DataDirRange, "Empty data_dir", `data_dir holds sessions and keys; write a directory such as data_dir = "./data", or leave it out for that default.`)
		}
		cfg.DataDir = *raw.DataDir
	}
	cfg.Ingress = b.ingress(raw.Ingress)
	b.trustedProxies = len(cfg.Ingress.TrustedProxies)
	cfg.Identity = b.identity(raw.Identity)
	cfg.Nomad = b.nomad(raw.Nomad)
	cfg.Admin = b.admin(raw.Admin)
	cfg.Sessions = b.sessions(raw.Sessions)
	cfg.Log = b.log(raw.Log)
	cfg.TLS = b.tls(raw.TLS)
	hostRanges := map[string]hcl.Range{}
	for i := range raw.Hosts {
		rh := &raw.Hosts[i]
		h := b.host(rh, cfg.TLS)
		if prev, dup := hostRanges[h.Name]; dup {
			b.errorf(rh.HostnameRange, "Duplicate host", "Host %q is already defined at %s. Each host name may appear once; merge the two blocks.", h.Name, at(prev))
			continue
		}
		hostRanges[h.Name] = rh.HostnameRange
		b.hosts = append(b.hosts, builtHost{host: h, raw: rh})
		cfg.Hosts = append(cfg.Hosts, h)
	}
	// The label names the calling port in logs, metrics and the traffic
	// view, so two calls may not share one.
	callRanges := map[string]hcl.Range{}
	for i := range raw.Calls {
		rc := &raw.Calls[i]
		c := b.call(rc, cfg)
		if prev, dup := callRanges[c.Label]; dup {
			b.errorf(rc.LabelRange, "Duplicate call", "Call %q is already defined at %s. Give each call block a label of its own.", c.Label, at(prev))
			continue
		}
		callRanges[c.Label] = rc.LabelRange
		b.calls = append(b.calls, builtCall{call: c, raw: rc})
		cfg.Calls = append(cfg.Calls, c)
	}
	b.checkPorts(raw, cfg)
	b.checkLocalClients(cfg)
	b.checkACMEEmail(raw, cfg)
	if b.diags.HasErrors() {
		return nil, b.diags
	}
	return cfg, b.diags
}

func (b *builder) ingress(raw *ingressSchema) Ingress {
	in := Ingress{
		HTTPAddr:        DefaultHTTPAddr,
		HTTPSAddr:       DefaultHTTPSAddr,
		MaxConnections:  DefaultMaxConnections,
		BodyIdleTimeout: DefaultBodyIdleTimeout,
		BodyMinRate:     DefaultBodyMinRate,
	}
	if raw == nil {
		return in
	}
	if raw.MaxConnections != nil {
		in.MaxConnections = *raw.MaxConnections
		switch n := in.MaxConnections; {
		case n < 1:
			b.errorf(raw.MaxConnectionsRange, "Invalid max_connections", "%d is not a limit: max_connections is how many connections each ingress listener (http and https) holds open at once, past which ioproxy answers 503. Write a number of at least 1, such as max_connections = %d, or leave it out for that default.", n, DefaultMaxConnections)
		case n < lowMaxConnections:
			b.warnf(raw.MaxConnectionsRange, "Very few connections", "max_connections = %d lets only %d connections in at once on each listener, and one browser opens several: such a low limit answers most visitors with 503. Write a few thousand, such as max_connections = %d, unless a tiny limit is what was meant.", n, n, DefaultMaxConnections)
		}
	}
	if raw.BodyIdleTimeout != nil {
		in.BodyIdleTimeout = b.duration(raw.BodyIdleTimeoutRange, "body_idle_timeout", *raw.BodyIdleTimeout, time.Second, "20s")
	}
	if raw.BodyMinRate != nil {
		in.BodyMinRate = *raw.BodyMinRate
		if in.BodyMinRate < 0 {
			b.errorf(raw.BodyMinRateRange, "Invalid body_min_rate", "%d is not a rate: body_min_rate is the slowest a request body may arrive, in bytes per second. Write a number such as body_min_rate = %d, or body_min_rate = 0 to turn the check off.", in.BodyMinRate, DefaultBodyMinRate)
		}
	}
	in.HTTPAddr = b.listenAddr(raw.HTTP, "http", DefaultHTTPAddr)
	in.HTTPSAddr = b.listenAddr(raw.HTTPS, "https", DefaultHTTPSAddr)
	for _, s := range raw.TrustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			b.errorf(raw.TrustedProxiesRange, "Invalid trusted proxy", "%v. Write addresses or CIDR ranges, such as trusted_proxies = [\"10.0.0.0/8\", \"192.168.1.7\"].", err)
			continue
		}
		in.TrustedProxies = append(in.TrustedProxies, p)
	}
	return in
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR range", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// listenAddr evaluates a port number or an "address:port" string.
func (b *builder) listenAddr(expr hcl.Expression, attr, def string) string {
	if expr == nil {
		return def
	}
	v, diags := expr.Value(nil)
	b.diags = append(b.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return def
	}
	rng := expr.Range()
	help := fmt.Sprintf("Write a port, as in %s = 8080, or an address and port, as in %s = \"127.0.0.1:8080\".", attr, attr)
	if v.Type() == cty.Number {
		bf := v.AsBigFloat()
		n, acc := bf.Int64()
		if !bf.IsInt() || acc != 0 || n < 1 || n > 65535 {
			b.errorf(rng, "Invalid port", "%s is not a port from 1 to 65535. %s", v.AsBigFloat().String(), help)
			return def
		}
		return ":" + strconv.FormatInt(n, 10)
	}
	sv, err := convert.Convert(v, cty.String)
	if err != nil || !sv.IsKnown() {
		b.errorf(rng, "Invalid listen address", "%s", help)
		return def
	}
	s := sv.AsString()
	if _, err := parsePort(s); err == nil {
		return ":" + s
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		b.errorf(rng, "Invalid listen address", "%q is not an address and port. %s", s, help)
		return def
	}
	if _, err := parsePort(port); err != nil {
		b.errorf(rng, "Invalid listen address", "%v. %s", err, help)
		return def
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		b.errorf(rng, "Invalid listen address", "%q is not an IP address to listen on. %s", host, help)
		return def
	}
	return s
}

func (b *builder) identity(raw *identitySchema) Identity {
	id := Identity{PLCURL: DefaultPLCURL}
	if raw == nil {
		return id
	}
	id.AllowInsecure = raw.AllowInsecure
	if raw.PLCURL != nil {
		id.PLCURL = strings.TrimSuffix(*raw.PLCURL, "/")
		b.checkServiceURL(raw.PLCURLRange, "plc_url", id.PLCURL, id.AllowInsecure, `plc_url = "https://plc.directory"`)
	}
	if raw.HandleResolver != nil && *raw.HandleResolver != "" {
		id.HandleResolver = strings.TrimSuffix(*raw.HandleResolver, "/")
		b.checkServiceURL(raw.HandleResolverRange, "handle_resolver", id.HandleResolver, id.AllowInsecure, `handle_resolver = "https://bsky.social"`)
	}
	return id
}

// checkServiceURL requires an absolute URL without path; http only with
// allow_insecure.
func (b *builder) checkServiceURL(rng hcl.Range, attr, s string, allowHTTP bool, example string) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		b.errorf(rng, "Invalid "+attr, "%q is not an http(s) URL; write, for example, %s.", s, example)
		return
	}
	if u.Scheme == "http" && !allowHTTP {
		b.errorf(rng, "Insecure "+attr, "%q uses http://. Use https://, or set allow_insecure = true in the identity block for a local development atmosphere.", s)
	}
	if u.Path != "" && u.Path != "/" {
		b.errorf(rng, "Invalid "+attr, "%q has a path; write only the scheme and host, as in %s.", s, example)
	}
}

func (b *builder) nomad(raw *nomadSchema) Nomad {
	n := Nomad{Address: DefaultNomadAddress, Refresh: DefaultNomadRefresh, Token: b.env("NOMAD_TOKEN")}
	if addr := b.env("NOMAD_ADDR"); addr != "" {
		n.Address = addr
	}
	if raw == nil {
		return n
	}
	if raw.Address != nil {
		n.Address = strings.TrimSuffix(*raw.Address, "/")
		b.checkServiceURL(raw.AddressRange, "address", n.Address, true, `address = "http://127.0.0.1:4646"`)
	}
	if raw.Token != "" {
		n.Token = raw.Token
	}
	n.Namespace, n.Region = raw.Namespace, raw.Region
	if raw.Refresh != nil {
		n.Refresh = b.duration(raw.RefreshRange, "refresh", *raw.Refresh, time.Second, "30s")
	}
	return n
}

// duration parses a duration attribute of at least min; example is a
// good value to suggest, as "30s".
func (b *builder) duration(rng hcl.Range, attr, s string, min time.Duration, example string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil || d < min {
		b.errorf(rng, "Invalid "+attr, "%q is not a duration of at least %s; write, for example, %s = %q.", s, shortDuration(min), attr, example)
		return min
	}
	return d
}

// shortDuration writes d as a person would: "1m" and "24h" rather than
// time.Duration's "1m0s" and "24h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (b *builder) admin(raw *adminSchema) Admin {
	a := Admin{Listen: DefaultAdminListen}
	if raw == nil {
		return a
	}
	a.Hosts = raw.Hosts
	if raw.Listen == nil {
		return a
	}
	a.Listen = *raw.Listen
	if a.Listen == "" {
		return a
	}
	host, port, err := net.SplitHostPort(a.Listen)
	if err == nil {
		_, err = parsePort(port)
	}
	if err == nil && host != "" && net.ParseIP(host) == nil && host != "localhost" {
		err = fmt.Errorf("%q is not an IP address", host)
	}
	if err != nil {
		b.errorf(raw.ListenRange, "Invalid admin listen address", "%q: %v. Write an address and port such as listen = \"127.0.0.1:9901\", or listen = \"\" to turn the admin listener off.", a.Listen, err)
	}
	return a
}

func (b *builder) sessions(raw *sessionsSchema) Sessions {
	s := Sessions{MaxSessions: DefaultMaxSessions, MaxPerAccount: DefaultMaxPerAccount}
	if raw == nil {
		return s
	}
	if raw.MaxSessions != nil {
		s.MaxSessions = *raw.MaxSessions
		if s.MaxSessions < 1 {
			b.errorf(raw.MaxSessionsRange, "Invalid max_sessions", "%d is not a limit: max_sessions is how many sessions ioproxy stores at once, across all accounts. Write a number of at least 1, such as max_sessions = %d, or leave it out for that default.", s.MaxSessions, DefaultMaxSessions)
			return s
		}
	}
	if raw.MaxPerAccount == nil {
		// The default per-account limit never exceeds a smaller total
		// that was written: asking for both would be a chore, not a fix.
		s.MaxPerAccount = min(s.MaxPerAccount, s.MaxSessions)
		return s
	}
	s.MaxPerAccount = *raw.MaxPerAccount
	switch {
	case s.MaxPerAccount < 1:
		b.errorf(raw.MaxPerAccountRange, "Invalid max_per_account", "%d is not a limit: max_per_account is how many sessions one account may hold at once (each sign-in from another browser is one). Write a number of at least 1, such as max_per_account = %d.", s.MaxPerAccount, DefaultMaxPerAccount)
	case s.MaxPerAccount > s.MaxSessions:
		b.errorf(raw.MaxPerAccountRange, "max_per_account over max_sessions", "One account may not hold more sessions (%d) than all accounts together (max_sessions = %d); write max_per_account = %d or less, or raise max_sessions.", s.MaxPerAccount, s.MaxSessions, s.MaxSessions)
	}
	return s
}

func (b *builder) log(raw *logSchema) Log {
	l := Log{Level: slog.LevelInfo, Format: "text"}
	if raw == nil {
		return l
	}
	if raw.Level != nil {
		if err := l.Level.UnmarshalText([]byte(*raw.Level)); err != nil {
			b.errorf(raw.LevelRange, "Invalid log level", "%q is not a level; write one of \"debug\", \"info\", \"warn\" or \"error\".", *raw.Level)
		}
	}
	if raw.Format != nil {
		switch *raw.Format {
		case "text", "json":
			l.Format = *raw.Format
		default:
			b.errorf(raw.FormatRange, "Invalid log format", "%q is not a format; write format = \"text\" or format = \"json\".", *raw.Format)
		}
	}
	return l
}

func (b *builder) tls(raw *tlsSchema) TLS {
	t := TLS{ACME: ACME{Directory: LetsEncryptDirectory}}
	if raw == nil {
		return t
	}
	if (raw.CertFile == "") != (raw.KeyFile == "") {
		rng := raw.CertFileRange
		if raw.CertFile == "" {
			rng = raw.KeyFileRange
		}
		b.errorf(rng, "Incomplete certificate pair", "cert_file and key_file go together; write both or neither.")
	}
	t.CertFile, t.KeyFile = raw.CertFile, raw.KeyFile
	t.CertFileRange, t.KeyFileRange = raw.CertFileRange, raw.KeyFileRange
	b.checkFile(raw.CertFileRange, "cert_file", t.CertFile)
	b.checkFile(raw.KeyFileRange, "key_file", t.KeyFile)
	if a := raw.ACME; a != nil {
		t.ACME.Email = a.Email
		if a.Email != "" && !strings.Contains(a.Email, "@") {
			b.errorf(a.EmailRange, "Invalid ACME email", "%q is not an email address; write email = \"ops@example.com\".", a.Email)
		}
		if a.Directory != nil {
			t.ACME.Directory = *a.Directory
			b.checkServiceURLWithPath(a.DirectoryRange, "directory", t.ACME.Directory)
		}
		t.ACME.CAFile, t.ACME.CAFileRange = a.CAFile, a.CAFileRange
		b.checkFile(a.CAFileRange, "ca_file", a.CAFile)
	}
	return t
}

func (b *builder) checkServiceURLWithPath(rng hcl.Range, attr, s string) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		b.errorf(rng, "Invalid "+attr, "%q is not an http(s) URL; write, for example, directory = %q.", s, LetsEncryptDirectory)
	}
}

func (b *builder) checkFile(rng hcl.Range, attr, path string) {
	if path == "" {
		return
	}
	if _, err := os.Stat(path); err != nil {
		b.errorf(rng, "Cannot read "+attr, "%v. Write the path of an existing PEM file (relative paths start from the directory ioproxy runs in).", err)
	}
}

var hostnameLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

func validHostname(name string) bool {
	if _, err := netip.ParseAddr(name); err == nil {
		return true
	}
	if name == "" || len(name) > 253 {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if !hostnameLabel.MatchString(label) {
			return false
		}
	}
	return true
}

func (b *builder) host(raw *hostSchema, globalTLS TLS) Host {
	name := strings.ToLower(strings.TrimSuffix(raw.Hostname, "."))
	if !validHostname(name) {
		b.errorf(raw.HostnameRange, "Invalid host name", "%q is not a host name. Write the bare name the browser uses, without scheme or port, as in host \"statusphere.example.com\" { … }.", raw.Hostname)
	}
	h := Host{Name: name, Label: raw.Name}
	if h.Label == "" {
		h.Label = name
	}
	switch {
	case raw.Backend != nil:
		be, err := ParseBackend(*raw.Backend)
		if err != nil {
			b.errorf(raw.BackendRange, "Invalid backend", "%v.", err)
		}
		h.Backend = be
	case raw.RequireATProto == nil && raw.APIKeyAuth == nil:
		b.errorf(raw.DefRange, "Missing backend", "Host %q needs a backend, as in backend = \"localhost:3000\". (Only a host with require_atproto or apikey_auth may leave it out: it then answers forward-auth requests from another proxy at /@/auth.)", name)
	}
	if raw.ATProto != nil {
		h.ATProto = b.atproto(raw.ATProto, h)
	} else if raw.RequireATProto != nil {
		// require_atproto means signing in; the defaults of an empty
		// atproto block (scope "atproto", the host's name) are enough.
		h.ATProto = b.atproto(&atprotoSchema{DefRange: raw.RequireATProto.DefRange}, h)
	}
	h.Access = b.access(raw)
	h.TLS = b.hostTLS(raw.TLS, h, globalTLS)
	return h
}

func (b *builder) atproto(raw *atprotoSchema, h Host) *ATProto {
	a := &ATProto{
		ClientName: raw.Name,
		Scopes:     raw.Scopes,
		ClientURI:  raw.ClientURI,
		LogoURI:    raw.LogoURI,
		TOSURI:     raw.TOSURI,
		PolicyURI:  raw.PolicyURI,
	}
	if a.ClientName == "" {
		a.ClientName = h.Label
	}
	if len(a.Scopes) == 0 {
		a.Scopes = []string{"atproto"}
	} else if !slices.Contains(a.Scopes, "atproto") {
		b.errorf(raw.ScopesRange, "Missing atproto scope", "AT Protocol OAuth requires the scope \"atproto\"; write scopes = [\"atproto\", %s].", quoteList(a.Scopes))
	}
	for _, s := range a.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\n\"\\") {
			b.errorf(raw.ScopesRange, "Invalid scope", "%q is not a scope; scopes are single words such as \"atproto\" or \"transition:generic\".", s)
		}
	}
	if raw.Local != nil {
		if *raw.Local < 1 || *raw.Local > 65535 {
			b.errorf(raw.LocalRange, "Invalid local port", "local is the loopback port the browser uses for sign-in, from 1 to 65535, as in local = 9000.")
		}
		a.Local = *raw.Local
	}
	for _, u := range []struct {
		attr, val string
		rng       hcl.Range
	}{
		{"client_uri", a.ClientURI, raw.ClientURIRange},
		{"logo_uri", a.LogoURI, raw.LogoURIRange},
		{"tos_uri", a.TOSURI, raw.TOSURIRange},
		{"policy_uri", a.PolicyURI, raw.PolicyURIRange},
	} {
		if u.val == "" {
			continue
		}
		pu, err := url.Parse(u.val)
		if err != nil || pu.Scheme != "https" || pu.Host == "" {
			b.errorf(u.rng, "Invalid "+u.attr, "%q is not an https:// URL; write, for example, %s = \"https://%s/\".", u.val, u.attr, h.Name)
			continue
		}
		// Authorization servers refuse a client whose client_uri is on
		// another host than its client_id; say so now, not at sign-in.
		if u.attr == "client_uri" && !strings.EqualFold(pu.Hostname(), h.Name) {
			b.errorf(u.rng, "client_uri on another host", "client_uri must be on this host (%s), as authorization servers require; write client_uri = \"https://%s/\" or leave it out.", h.Name, h.Name)
		}
	}
	if raw.SigninRequired != nil {
		b.errorf(raw.SigninRequiredRange, "signin_required has moved", "Access rules now have their own block beside atproto: remove signin_required and write require_atproto {} in the host block (every path then needs sign-in; public_paths lists exceptions).")
	}
	if raw.AllowedDIDs != nil {
		b.errorf(raw.AllowedDIDsRange, "allowed_dids has moved", "Access rules now have their own block beside atproto: write require_atproto { dids = [%s] } in the host block instead.", quoteList(*raw.AllowedDIDs))
	}
	return a
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func (b *builder) hostTLS(raw *hostTLSSchema, h Host, global TLS) HostTLS {
	t := HostTLS{}
	if raw != nil {
		t = HostTLS{Mode: TLSMode(raw.Mode), CertFile: raw.CertFile, KeyFile: raw.KeyFile,
			CertFileRange: raw.CertFileRange, KeyFileRange: raw.KeyFileRange}
		switch t.Mode {
		case TLSAuto, TLSACME, TLSFiles, TLSSelfSigned, TLSOff:
		default:
			b.errorf(raw.ModeRange, "Invalid TLS mode", "%q is not a mode; write mode = \"acme\", \"files\", \"self_signed\" or \"off\".", raw.Mode)
		}
		if (t.CertFile == "") != (t.KeyFile == "") {
			b.errorf(raw.DefRange, "Incomplete certificate pair", "cert_file and key_file go together; write both or neither.")
		}
		if t.CertFile != "" && t.Mode == TLSAuto {
			t.Mode = TLSFiles
		}
		if t.CertFile != "" && t.Mode != TLSFiles {
			b.errorf(raw.CertFileRange, "Certificate files unused", "cert_file is used only with mode = \"files\"; remove it or set the mode.")
		}
		b.checkFile(raw.CertFileRange, "cert_file", t.CertFile)
		b.checkFile(raw.KeyFileRange, "key_file", t.KeyFile)
	}
	if t.Mode == TLSAuto {
		switch {
		case h.IsLocal():
			t.Mode = TLSSelfSigned
		default:
			t.Mode = TLSACME
		}
	}
	if t.Mode == TLSFiles && t.CertFile == "" {
		if global.CertFile == "" {
			r := hcl.Range{}
			if raw != nil {
				r = raw.DefRange
			}
			b.errorf(r, "No certificate files", "Host %q uses mode = \"files\" but names no cert_file and key_file, here or in the top-level tls block.", h.Name)
		}
		t.CertFile, t.KeyFile = global.CertFile, global.KeyFile
		t.CertFileRange, t.KeyFileRange = global.CertFileRange, global.KeyFileRange
	}
	if t.Mode == TLSACME && h.IsLocal() {
		r := hcl.Range{}
		if raw != nil {
			r = raw.ModeRange
		}
		b.errorf(r, "ACME for a local host", "No public CA issues certificates for %q; use mode = \"self_signed\" for local hosts.", h.Name)
	}
	return t
}

var (
	methodToken = regexp.MustCompile(`^[A-Z]+$`)
	nsidPattern = regexp.MustCompile(`^[a-zA-Z]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+\.[a-zA-Z][a-zA-Z0-9]*$`)
)

// knownMethods are the methods an operation is expected to name.
func knownMethods() []string {
	return []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
}

func (b *builder) call(raw *callSchema, cfg *Config) Call {
	c := Call{
		Label:          raw.Label,
		Name:           raw.Name,
		Port:           raw.Port,
		Bind:           DefaultCallBind,
		Insecure:       raw.Insecure,
		OperationsOnly: raw.OperationsOnly,
		MaxBodyBytes:   DefaultMaxBodyBytes,
		Timeout:        DefaultCallTimeout,
		MaxConnections: DefaultCallMaxConnections,
	}
	if c.Name == "" {
		c.Name = c.Label
	}
	if c.Port < 1 || c.Port > 65535 {
		b.errorf(raw.PortRange, "Invalid port", "%d is not a port from 1 to 65535; write, for example, port = 7000.", c.Port)
	}
	if raw.Bind != nil {
		c.Bind = *raw.Bind
		if net.ParseIP(c.Bind) == nil && c.Bind != "localhost" {
			b.errorf(raw.BindRange, "Invalid bind address", "%q is not an IP address. The calling port carries users' credentials: keep the default \"127.0.0.1\", or bind a private address such as bind = \"10.0.0.5\" (or \"0.0.0.0\" inside a container network).", c.Bind)
		}
	}
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
		c.MaxConnections = *raw.MaxConnections
		if c.MaxConnections < 1 {
			b.errorf(raw.MaxConnectionsRange, "Invalid max_connections", "%d is not a limit: max_connections is how many connections the calling port holds open at once. Write a number of at least 1, such as max_connections = %d, or leave it out for that default.", c.MaxConnections, DefaultCallMaxConnections)
		}
	}
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
	names := map[string]hcl.Range{}
	for i := range raw.Operations {
		op := b.operation(&raw.Operations[i])
		if prev, dup := names[op.Name]; dup {
			b.errorf(raw.Operations[i].NameRange, "Duplicate operation", "Operation %q is already defined at %s; give each operation its own name.", op.Name, at(prev))
			continue
		}
		names[op.Name] = raw.Operations[i].NameRange
		c.Operations = append(c.Operations, op)
	}
	if c.OperationsOnly && len(c.Operations) == 0 {
		b.errorf(raw.DefRange, "No operations", "operations_only = true refuses every call that matches no operation, and this call block has none; add operation blocks or remove operations_only.")
	}
	return c
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

// parseHostName accepts a bare host name as a Host header carries it
// without port: lower-cased, without a trailing dot. Its errors say what
// to write instead.
func parseHostName(s string) (string, error) {
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if validHostname(name) {
		return name, nil
	}
	const help = "write a bare host name such as \"ioproxy.service.consul\""
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil && validHostname(strings.ToLower(u.Hostname())) {
			return "", fmt.Errorf("%q is a URL; write only its host name, %q", s, strings.ToLower(u.Hostname()))
		}
		return "", fmt.Errorf("%q is a URL; %s", s, help)
	}
	if host, _, err := net.SplitHostPort(s); err == nil && validHostname(strings.ToLower(host)) {
		return "", fmt.Errorf("%q has a port, and any port is answered; write only the name, %q", s, strings.ToLower(host))
	}
	if host, _, ok := strings.Cut(s, "/"); ok && validHostname(strings.ToLower(host)) {
		return "", fmt.Errorf("%q has a path; write only the name, %q", s, strings.ToLower(host))
	}
	return "", fmt.Errorf("%q is not a host name; %s", s, help)
}

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

func (b *builder) operation(raw *operationSchema) Operation {
	op := Operation{Name: raw.Name, Method: raw.Method, Description: raw.Description}
	if up := strings.ToUpper(op.Method); up != op.Method && slices.Contains(knownMethods(), up) {
		b.errorf(raw.MethodRange, "Invalid method", "Methods are upper case; write method = %q.", up)
	} else if !methodToken.MatchString(op.Method) {
		b.errorf(raw.MethodRange, "Invalid method", "%q is not an HTTP method; write one of %s.", op.Method, quoteList(knownMethods()))
	} else if !slices.Contains(knownMethods(), op.Method) {
		b.warnf(raw.MethodRange, "Unusual method", "%q is not one of %s; check the spelling.", op.Method, quoteList(knownMethods()))
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

// checkPorts refuses two listeners on one port: calling ports among
// themselves, and against the ingress and admin listeners.
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
	if cfg.servesHTTPS() {
		add(cfg.Ingress.HTTPSAddr, "the ingress https listener")
	}
	if cfg.Admin.Listen != "" {
		add(cfg.Admin.Listen, "the admin listener")
	}
	for _, bc := range b.calls {
		c := bc.call
		if prev, ok := taken[c.Port]; ok && overlaps(prev.host, c.Bind) {
			b.errorf(bc.raw.PortRange, "Port already in use", "Port %d is already used by %s; give call %q a port of its own.", c.Port, prev.what, c.Label)
			continue
		}
		taken[c.Port] = owner{what: fmt.Sprintf("call %q", c.Label), host: c.Bind}
	}
	if cfg.servesHTTPS() && cfg.Ingress.HTTPAddr != "" {
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

func (c *Config) servesHTTPS() bool {
	for _, h := range c.Hosts {
		if h.ServesHTTPS() {
			return true
		}
	}
	return false
}

// ServesHTTPS reports whether any host needs the HTTPS listener.
func (c *Config) ServesHTTPS() bool { return c.servesHTTPS() }

// checkLocalClients makes sure that a localhost OAuth client's redirect
// (http://127.0.0.1:<local>/@/callback) reaches the host's sign-in routes.
func (b *builder) checkLocalClients(cfg *Config) {
	for _, bh := range b.hosts {
		h := bh.host
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
			if c := bc.call; c.Port == h.ATProto.Local && c.Endpoint.Kind == EndpointHost && c.Endpoint.Host == h.Name {
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
			b.errorf(rng, "Sign-in redirect goes nowhere", "The browser returns from sign-in to http://127.0.0.1:%d/@/callback, but nothing of ioproxy listens there for host %q. Add call %q { port = %d, endpoint = %q } or set ingress { http = %d }.", h.ATProto.Local, h.Name, h.Label, h.ATProto.Local, h.Name, h.ATProto.Local)
		}
	}
}

// emailRequiredCA names the CA of an ACME directory host that refuses
// accounts without a contact email (such CAs also want external account
// binding); "" for others.
func emailRequiredCA(host string) string {
	switch host {
	case "acme.zerossl.com":
		return "ZeroSSL"
	case "dv.acme-v02.api.pki.goog":
		return "Google Trust Services"
	case "acme.ssl.com":
		return "SSL.com"
	case "acme.digicert.com":
		return "DigiCert"
	case "acme.sectigo.com":
		return "Sectigo"
	case "acme.entrust.net":
		return "Entrust"
	case "acme-v02.harica.gr":
		return "HARICA"
	case "acme.actalis.com":
		return "Actalis"
	case "acme.globalsign.com", "emea.acme.atlas.globalsign.com":
		return "GlobalSign"
	}
	return ""
}

// checkACMEEmail refuses ACME hosts without an account email when the
// configured CA is one that requires it.
func (b *builder) checkACMEEmail(raw *fileSchema, cfg *Config) {
	if cfg.TLS.ACME.Email != "" {
		return
	}
	var first *builtHost
	for i := range b.hosts {
		if b.hosts[i].host.TLS.Mode == TLSACME {
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
	b.errorf(rng, "ACME email required", "%s issues certificates only to accounts with a contact email, and host %q (%s) gets its certificate from %s; write tls { acme { email = \"ops@example.com\" } }.", ca, first.host.Name, at(first.raw.HostnameRange), ca)
}
