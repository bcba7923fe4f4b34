// Package endpoint judges the URL of an OAuth provider's endpoint (an
// issuer, an authorization, token or userinfo endpoint): the one rule
// that config applies to what an operator writes and that provider
// applies to what discovery answers, each with its own words.
package endpoint

import (
	"net"
	"net/url"
	"strings"
)

// Problem is what makes a URL unfit for an endpoint; None when it is fit.
type Problem int

const (
	None Problem = iota
	// NotURL: not an absolute http(s) URL with a host.
	NotURL
	// UserInfo: user:password@ before the host; the client secret goes
	// elsewhere.
	UserInfo
	// Fragment: a #fragment, which is never sent to the server.
	Fragment
	// PlainHTTP: http:// on a host other than this machine, which would
	// carry codes, secrets and tokens in the clear.
	PlainHTTP
)

// Check returns the parsed URL (nil only when it does not parse) and the
// first problem it has: https URLs are fit, and http ones on a loopback
// host only (a provider in a test or beside ioproxy).
func Check(raw string) (*url.URL, Problem) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, NotURL
	case !u.IsAbs() || u.Host == "" || u.Opaque != "" || (u.Scheme != "https" && u.Scheme != "http"):
		return u, NotURL
	case u.User != nil:
		return u, UserInfo
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return u, Fragment
	case u.Scheme == "http" && !isLoopback(u.Hostname()):
		return u, PlainHTTP
	}
	return u, None
}

// isLoopback reports whether a URL's host is this machine: localhost,
// 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
