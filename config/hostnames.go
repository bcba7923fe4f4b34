package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
)

// hostnameLabel is one dot-separated label of a lower-case host name.
var hostnameLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// validHostname reports whether name is a lower-case DNS name or an IP
// address.
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
