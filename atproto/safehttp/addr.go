package safehttp

import (
	"fmt"
	"net/netip"
)

// blockedRange is a prefix we refuse to dial, with the reason shown to the user.
type blockedRange struct {
	prefix netip.Prefix
	reason string
}

// Lists follow the IANA special-purpose address registries. They are built by
// a function, not kept in package variables, so the package has no mutable
// state; the cost is paid once per client.
func blockedV4() []blockedRange {
	return []blockedRange{
		{netip.MustParsePrefix("0.0.0.0/8"), "unspecified (\"this network\") address"},
		{netip.MustParsePrefix("10.0.0.0/8"), "private address"},
		{netip.MustParsePrefix("100.64.0.0/10"), "carrier-grade NAT (shared) address"},
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback address"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local address"},
		{netip.MustParsePrefix("172.16.0.0/12"), "private address"},
		{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignment address"},
		{netip.MustParsePrefix("192.0.2.0/24"), "documentation address"},
		{netip.MustParsePrefix("192.31.196.0/24"), "AS112 address"},
		{netip.MustParsePrefix("192.52.193.0/24"), "AMT address"},
		{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay anycast address"},
		{netip.MustParsePrefix("192.168.0.0/16"), "private address"},
		{netip.MustParsePrefix("192.175.48.0/24"), "AS112 address"},
		{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking address"},
		{netip.MustParsePrefix("198.51.100.0/24"), "documentation address"},
		{netip.MustParsePrefix("203.0.113.0/24"), "documentation address"},
		{netip.MustParsePrefix("224.0.0.0/4"), "multicast address"},
		{netip.MustParsePrefix("240.0.0.0/4"), "reserved address"},
	}
}

func blockedV6() []blockedRange {
	return []blockedRange{
		{netip.MustParsePrefix("::/128"), "unspecified address"},
		{netip.MustParsePrefix("::1/128"), "loopback address"},
		{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64 address"},
		{netip.MustParsePrefix("100::/64"), "discard-only address"},
		{netip.MustParsePrefix("2001:db8::/32"), "documentation address"},
		{netip.MustParsePrefix("2001::/23"), "IETF protocol assignment address (Teredo, benchmarking, ORCHID)"},
		{netip.MustParsePrefix("2002::/16"), "6to4 address"},
		{netip.MustParsePrefix("3fff::/20"), "documentation address"},
		{netip.MustParsePrefix("5f00::/16"), "segment routing (SRv6) address"},
		{netip.MustParsePrefix("fc00::/7"), "unique local (private) address"},
		{netip.MustParsePrefix("fe80::/10"), "link-local address"},
		{netip.MustParsePrefix("fec0::/10"), "site-local address"},
		{netip.MustParsePrefix("ff00::/8"), "multicast address"},
	}
}

// nat64Prefix is the well-known NAT64 prefix: it embeds an IPv4 address in
// its last 32 bits (RFC 6052). A DNS64 network legitimately returns these for
// public IPv4 hosts, so the embedded address decides.
func nat64Prefix() netip.Prefix { return netip.MustParsePrefix("64:ff9b::/96") }

// ipv6GlobalUnicast is the only IPv6 block IANA allocates for public use;
// anything outside it that no rule above named is still refused.
func ipv6GlobalUnicast() netip.Prefix { return netip.MustParsePrefix("2000::/3") }

// addrPolicy decides which addresses may be dialled.
type addrPolicy struct {
	v4, v6 []blockedRange
	nat64  netip.Prefix
	global netip.Prefix
}

func newAddrPolicy() *addrPolicy {
	return &addrPolicy{v4: blockedV4(), v6: blockedV6(), nat64: nat64Prefix(), global: ipv6GlobalUnicast()}
}

// reason returns why addr must not be dialled, or "" when it may be.
func (p *addrPolicy) reason(addr netip.Addr) string {
	if !addr.IsValid() {
		return "invalid address"
	}
	addr = addr.WithZone("")
	if addr.Is4In6() {
		// ::ffff:127.0.0.1 reaches 127.0.0.1 on a dual-stack socket.
		if r := p.reason(addr.Unmap()); r != "" {
			return "IPv4-mapped " + r
		}
		return ""
	}
	if addr.Is4() {
		for _, b := range p.v4 {
			if b.prefix.Contains(addr) {
				return b.reason
			}
		}
		return ""
	}
	if p.nat64.Contains(addr) {
		b := addr.As16()
		embedded := netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
		if r := p.reason(embedded); r != "" {
			return fmt.Sprintf("NAT64 address embedding %s (%s)", embedded, r)
		}
		return ""
	}
	for _, b := range p.v6 {
		if b.prefix.Contains(addr) {
			return b.reason
		}
	}
	if !p.global.Contains(addr) {
		return "reserved IPv6 address (outside 2000::/3)"
	}
	return ""
}

// CheckAddr reports whether addr is a public unicast address that an
// outbound fetch chosen by user input may reach. It returns nil for a public
// address and a *RefusedError otherwise.
func CheckAddr(addr netip.Addr) error {
	if r := newAddrPolicy().reason(addr); r != "" {
		return &RefusedError{Target: addr.String(), Reason: r, Hint: DefaultHint}
	}
	return nil
}
