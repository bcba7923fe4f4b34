package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// Defaults of the ingress and admin blocks.
const (
	DefaultHTTPAddr         = ":80"
	DefaultHTTPSAddr        = ":443"
	DefaultMaxConnections   = 10000
	DefaultBodyIdleTimeout  = 20 * time.Second
	DefaultBodyMinRate      = 256
	DefaultWriteIdleTimeout = time.Minute
	DefaultAdminListen      = "127.0.0.1:9901"
)

// DefaultMaxConnectionsPerClient is a client's share of a listener's
// connections when max_connections_per_client is left out: a twentieth
// (so twenty addresses are needed to fill it), at least 16 (a browser
// opens several, an office behind one address more).
func DefaultMaxConnectionsPerClient(maxConnections int) int {
	return max(16, maxConnections/20)
}

// Below this many connections a listener turns away ordinary traffic: one
// browser alone opens several.
const lowMaxConnections = 16

// ingress builds the ingress block: the public listeners and the limits
// on their connections and request bodies.
func (b *builder) ingress(raw *ingressSchema) Ingress {
	in := Ingress{
		HTTPAddr:         DefaultHTTPAddr,
		HTTPSAddr:        DefaultHTTPSAddr,
		MaxConnections:   DefaultMaxConnections,
		BodyIdleTimeout:  DefaultBodyIdleTimeout,
		BodyMinRate:      DefaultBodyMinRate,
		WriteIdleTimeout: DefaultWriteIdleTimeout,
	}
	if raw == nil {
		in.MaxConnectionsPerClient = DefaultMaxConnectionsPerClient(in.MaxConnections)
		return in
	}
	if raw.MaxConnections != nil {
		in.MaxConnections = b.limit(raw.MaxConnectionsRange, "max_connections", *raw.MaxConnections, DefaultMaxConnections,
			"how many connections each ingress listener (http and https) holds open at once, past which ioproxy answers 503")
		if n := in.MaxConnections; n >= 1 && n < lowMaxConnections {
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
	if raw.WriteIdleTimeout != nil {
		in.WriteIdleTimeout = b.duration(raw.WriteIdleTimeoutRange, "write_idle_timeout", *raw.WriteIdleTimeout, time.Second, "1m")
	}
	in.MaxConnectionsPerClient = DefaultMaxConnectionsPerClient(in.MaxConnections)
	if raw.MaxConnectionsPerClient != nil {
		in.MaxConnectionsPerClient = *raw.MaxConnectionsPerClient
		if in.MaxConnectionsPerClient < 0 {
			b.errorf(raw.MaxConnectionsPerClientRange, "Invalid max_connections_per_client", "%d is not a limit: max_connections_per_client is how many connections one client address holds on each listener. Write a number such as max_connections_per_client = %d, or 0 to turn the share off.", in.MaxConnectionsPerClient, DefaultMaxConnectionsPerClient(DefaultMaxConnections))
			in.MaxConnectionsPerClient = 0
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

// parsePrefix reads a trusted proxy: a CIDR range, or one address.
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

// admin builds the admin block: the listener for metrics, health and the
// traffic view, and the names it answers under.
func (b *builder) admin(raw *adminSchema) Admin {
	a := Admin{Listen: DefaultAdminListen}
	if raw == nil {
		return a
	}
	a.Hosts, a.Pprof = raw.Hosts, raw.Pprof
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
