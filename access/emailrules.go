package access

import (
	"fmt"
	"slices"
	"strings"
)

// EmailRules is a host's require_oauth "<provider>" block: the accounts of
// that provider that get in, by their verified email. With neither list,
// any account of the provider whose email is verified gets in, as
// require_atproto {} admits any AT Protocol account.
type EmailRules struct {
	// Emails are admitted addresses, lower case and trimmed, as
	// ParseEmail returns them.
	Emails []string
	// Domains are admitted email domains, lower case and trimmed, as
	// ParseEmailDomain returns them: "example.com" admits the addresses
	// @example.com only, "*.example.com" those of its subdomains only
	// (not example.com itself).
	Domains []string
}

// OpenToAnyEmail reports whether any verified email of the provider is
// admitted.
func (r *EmailRules) OpenToAnyEmail() bool {
	return len(r.Emails) == 0 && len(r.Domains) == 0
}

// Admits reports whether an account of the provider whose email is email
// gets in. Only an email the provider says it verified is admitted: an
// unverified one can be anyone's. Letters compare without regard to case,
// in ASCII only: an address with any other character is refused, since
// Unicode case folding would let one mailbox's address match another's
// (the Kelvin sign folds to "k"). An address that is not one local part,
// "@" and a domain is refused too. A nil EmailRules admits no one.
func (r *EmailRules) Admits(email string, verified bool) bool {
	if r == nil || !verified {
		return false
	}
	addr, ok := lowerASCII(email)
	if !ok {
		return false
	}
	_, domain, ok := splitEmail(addr)
	if !ok {
		return false
	}
	if r.OpenToAnyEmail() {
		return true
	}
	if slices.Contains(r.Emails, addr) {
		return true
	}
	for _, d := range r.Domains {
		if parent, wild := strings.CutPrefix(d, "*."); wild {
			if strings.HasSuffix(domain, "."+parent) {
				return true
			}
		} else if domain == d {
			return true
		}
	}
	return false
}

// ParseEmail checks an email of a require_oauth block's emails: a local
// part, "@" and a domain such as example.com, in ASCII. It returns the
// address lower case and trimmed.
func ParseEmail(s string) (string, error) {
	raw := strings.TrimSpace(s)
	if !isASCII(raw) {
		return "", fmt.Errorf("%q has characters other than ASCII; write the address as the provider gives it, with the domain in its xn-- form", s)
	}
	addr := strings.ToLower(raw)
	if !strings.Contains(addr, "@") {
		if validEmailDomain(strings.TrimPrefix(addr, "*.")) {
			return "", fmt.Errorf("%q is a domain; put it in domains, or write one address such as \"alice@%s\"", s, strings.TrimPrefix(addr, "*."))
		}
		return "", fmt.Errorf("%q is not an email; write one such as \"alice@example.com\"", s)
	}
	if strings.Contains(addr, "*") {
		return "", fmt.Errorf("%q has a \"*\": emails are matched exactly; to admit every address of a domain, put the domain in domains, as in domains = [\"example.com\"]", s)
	}
	if _, _, ok := splitEmail(addr); !ok {
		return "", fmt.Errorf("%q is not an email; write one such as \"alice@example.com\" (one \"@\", a local part of letters, digits and .!#$%%&'*+/=?^_`{|}~-, and a domain such as example.com)", s)
	}
	return addr, nil
}

// ParseEmailDomain checks a domain of a require_oauth block's domains:
// "example.com" (the addresses @example.com) or "*.example.com" (those of
// its subdomains). It returns the domain lower case and trimmed.
func ParseEmailDomain(s string) (string, error) {
	raw := strings.TrimSpace(s)
	if !isASCII(raw) {
		return "", fmt.Errorf("%q has characters other than ASCII; write the domain in its xn-- form", s)
	}
	d := strings.ToLower(raw)
	if strings.Contains(d, "@") {
		if _, domain, ok := splitEmail(d); ok {
			return "", fmt.Errorf("%q is an email; put it in emails, or write its domain, %q", s, domain)
		}
		if rest, ok := strings.CutPrefix(d, "@"); ok && validEmailDomain(rest) {
			return "", fmt.Errorf("%q starts with \"@\"; write the domain alone, %q", s, rest)
		}
		return "", fmt.Errorf("%q is not a domain; write one such as \"example.com\", or \"*.example.com\" for its subdomains", s)
	}
	parent, wild := strings.CutPrefix(d, "*.")
	if strings.Contains(parent, "*") {
		return "", fmt.Errorf("%q has a \"*\" in the wrong place; write \"*.example.com\" for the subdomains of example.com", s)
	}
	if !validEmailDomain(parent) {
		return "", fmt.Errorf("%q is not a domain; write one such as \"example.com\" (with at least one dot), or \"*.example.com\" for its subdomains", s)
	}
	if wild {
		return "*." + parent, nil
	}
	return parent, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// lowerASCII lower-cases s, which must be printable ASCII without spaces.
func lowerASCII(s string) (string, bool) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// splitEmail splits a lower-case ASCII address into its local part and
// domain: the checks of an address in common use (RFC 5322's dot-atom, as
// net/mail reads it, without quoted local parts, comments or display
// names, and a DNS domain with at least one dot).
func splitEmail(addr string) (local, domain string, ok bool) {
	if len(addr) > 254 || strings.Count(addr, "@") != 1 {
		return "", "", false
	}
	local, domain, _ = strings.Cut(addr, "@")
	if !validLocalPart(local) || !validEmailDomain(domain) {
		return "", "", false
	}
	return local, domain, true
}

// atext are the characters of a dot-atom besides letters and digits
// (RFC 5322 §3.2.3).
const atext = "!#$%&'*+-/=?^_`{|}~"

func validLocalPart(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || strings.IndexByte(atext, c) >= 0) {
			return false
		}
	}
	return true
}

// validEmailDomain reports whether s is a DNS name of at least two labels
// whose last label is not all digits (no IP addresses).
func validEmailDomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return strings.Trim(labels[len(labels)-1], "0123456789") != ""
}
