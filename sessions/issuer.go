package sessions

import (
	"net"
	"net/url"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// IssuerGroup is the registrable domain of an issuer URL's host
// ("https://auth.pds.example.com" → "example.com"), so that one party's
// subdomains share one place; an IP address or a name without a public
// suffix stands for itself.
func IssuerGroup(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil || u.Hostname() == "" {
		return strings.ToLower(issuer)
	}
	host := strings.ToLower(strings.TrimSuffix(u.Hostname(), "."))
	if net.ParseIP(host) != nil {
		return host
	}
	if d, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return d
	}
	return host
}
