// Package access decides who gets into a host: the accounts a
// require_atproto block admits, the paths it leaves public, and the
// machine credentials of an apikey_auth block. It holds decisions only;
// ingress applies them to requests.
package access

import (
	"fmt"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// Rules is a host's require_atproto block: every path but the public ones
// needs a signed-in account, and when any allow list is given, one that
// the lists name.
type Rules struct {
	// DIDs are admitted accounts by DID, the stable identity.
	DIDs []string
	// Handles are admitted handles, lower case.
	Handles []string
	// Domains are handle domains from "*.example.com" patterns, stored
	// with their leading dot (".example.com").
	Domains []string
	// Public are paths that need no sign-in.
	Public []PathPattern
	// HandleMaxAge is how old the last successful check of a session's
	// handle may be for Handles and Domains to admit it (DIDs need no
	// check). Zero means DefaultHandleMaxAge.
	HandleMaxAge time.Duration
}

// DefaultHandleMaxAge is the grace a verified handle has: twice the access
// token's lifetime at the reference server, so one refresh may fail.
const DefaultHandleMaxAge = 2 * time.Hour

// OpenToAnyAccount reports whether any signed-in account is admitted.
func (r *Rules) OpenToAnyAccount() bool {
	return len(r.DIDs) == 0 && len(r.Handles) == 0 && len(r.Domains) == 0
}

// Account is a signed-in account as the rules see it.
type Account struct {
	DID string
	// Handle is the handle verified at sign-in or at the last check:
	// ioproxy stores "handle.invalid" for a handle that did not resolve
	// back to the DID, and that never matches.
	Handle string
	// HandleChecked is when Handle was last verified.
	HandleChecked time.Time
}

// Verdict is what the rules say of an account.
type Verdict int

const (
	// Admitted: the account may pass.
	Admitted Verdict = iota
	// NotNamed: the rules name neither the account's DID nor its handle.
	NotNamed
	// HandleUnchecked: only the account's handle is named, and it was last
	// verified longer ago than HandleMaxAge. A handle can move to another
	// account at any time; a rule that names it can only trust a recent
	// check.
	HandleUnchecked
)

// Judge decides an account at now. DIDs need no recheck (they never
// change hands); handles admit only while their last check is recent.
func (r *Rules) Judge(a Account, now time.Time) Verdict {
	if r.OpenToAnyAccount() || slices.Contains(r.DIDs, a.DID) {
		return Admitted
	}
	if !r.namesHandle(a.Handle) {
		return NotNamed
	}
	if now.Sub(a.HandleChecked) > r.handleMaxAge() {
		return HandleUnchecked
	}
	return Admitted
}

func (r *Rules) handleMaxAge() time.Duration {
	if r.HandleMaxAge > 0 {
		return r.HandleMaxAge
	}
	return DefaultHandleMaxAge
}

// namesHandle reports whether a handle rule or domain names handle.
func (r *Rules) namesHandle(handle string) bool {
	h := strings.ToLower(handle)
	if h == "" || h == syntax.HandleInvalid.String() {
		return false
	}
	if slices.Contains(r.Handles, h) {
		return true
	}
	for _, d := range r.Domains {
		if strings.HasSuffix(h, d) {
			return true
		}
	}
	return false
}

// IsPublic reports whether a request for u needs no sign-in. A path that
// some backend could read as another path (dot segments, doubled or
// encoded slashes, backslashes, ";" parameters) is never public, so
// "/static/..%2fadmin" cannot borrow the public prefix "/static/*".
func (r *Rules) IsPublic(u *url.URL) bool {
	if len(r.Public) == 0 {
		return false
	}
	p, ok := PlainPath(u)
	if !ok {
		return false
	}
	for _, pat := range r.Public {
		if pat.Matches(p) {
			return true
		}
	}
	return false
}

// PlainPath returns the request's path when it has exactly one reading:
// no backend, however lenient its decoding and normalization, could take
// it for another path. Decisions by path (public paths, a calling port's
// operations) are made only on such paths.
func PlainPath(u *url.URL) (string, bool) {
	raw := u.EscapedPath()
	lower := strings.ToLower(raw)
	// "%25" is an escaped "%": a backend that decodes twice reads
	// "%252e%252e" as "..".
	for _, s := range []string{"%2f", "%5c", "%2e", "%3b", "%00", "%25", "\\", ";"} {
		if strings.Contains(lower, s) {
			return "", false
		}
	}
	p := u.Path
	// Invalid UTF-8 includes overlong forms of "/" and "." ("%c0%af"),
	// which some decoders read as such; other non-ASCII characters
	// (full-width dots) and spaces become dots or vanish in backends that
	// normalize or trim.
	if p == "" || p[0] != '/' || strings.ContainsAny(p, "\\;") || strings.ContainsFunc(p, isControl) || !utf8.ValidString(p) ||
		strings.ContainsFunc(p, func(r rune) bool { return r > 0x7e }) {
		return "", false
	}
	for _, seg := range strings.Split(p, "/") {
		// "...", " .." or ". ." are ".." to a server that trims spaces
		// and trailing dots (as Windows does).
		if seg != "" && strings.Trim(seg, ". ") == "" {
			return "", false
		}
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if clean != p {
		return "", false
	}
	return p, true
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// PathPattern is an exact path ("/healthz") or a prefix ("/static/*").
type PathPattern struct {
	Path   string
	Prefix bool
}

// Matches reports whether a clean path falls under the pattern.
func (p PathPattern) Matches(path string) bool {
	if p.Prefix {
		return strings.HasPrefix(path, p.Path)
	}
	return path == p.Path
}

func (p PathPattern) String() string {
	if p.Prefix {
		return p.Path + "*"
	}
	return p.Path
}

// ParsePathPattern parses a public path: it starts with "/", and a final
// "*" makes it a prefix. Patterns that could only match paths that are
// never public (see IsPublic) are refused, so a mistake is found when the
// file is read, not when a page stays closed.
func ParsePathPattern(s string) (PathPattern, error) {
	if !strings.HasPrefix(s, "/") {
		return PathPattern{}, fmt.Errorf("%q does not start with \"/\"; write a path such as \"/healthz\", or \"/static/*\" for everything under /static/", s)
	}
	p := PathPattern{Path: s}
	if before, ok := strings.CutSuffix(s, "*"); ok {
		p = PathPattern{Path: before, Prefix: true}
	}
	if strings.Contains(p.Path, "*") {
		return PathPattern{}, fmt.Errorf("%q has a \"*\" that is not at the end; only a final \"*\" is supported, as in \"/static/*\"", s)
	}
	if strings.ContainsAny(p.Path, "?#%\\; \t") || strings.ContainsFunc(p.Path, isControl) {
		return PathPattern{}, fmt.Errorf("%q is not a plain path: leave out queries, fragments, percent-escapes, backslashes, semicolons, spaces and control characters", s)
	}
	clean := path.Clean(p.Path)
	if strings.HasSuffix(p.Path, "/") && clean != "/" {
		clean += "/"
	}
	if clean == "/" && p.Prefix {
		return PathPattern{}, fmt.Errorf("%q would make every path public; remove require_atproto instead", s)
	}
	if strings.HasPrefix(clean, "/@/") || clean == "/@" {
		return PathPattern{}, fmt.Errorf("%q is under /@/, ioproxy's own routes, which are always reachable; remove it", s)
	}
	if clean != p.Path {
		// Such a pattern could only match paths that are never public.
		want := clean
		if p.Prefix {
			want += "*"
		}
		return PathPattern{}, fmt.Errorf("%q is not a clean path (no \"//\", \".\" or \"..\" segments); write %q", s, want)
	}
	if _, ok := PlainPath(&url.URL{Path: p.Path}); !ok {
		// Non-ASCII letters and segments of dots and spaces have more
		// than one reading, so paths like these are never public.
		return PathPattern{}, fmt.Errorf("%q would never match: paths with non-ASCII characters or segments made only of dots and spaces are never public (a backend could read them as another path); write the path in plain ASCII", s)
	}
	return p, nil
}

// ParseDID checks an allow-list DID: did:plc or did:web, as the PDS
// reports it.
func ParseDID(s string) (string, error) {
	d, err := syntax.ParseDID(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a DID; write one such as \"did:plc:ewvi7nxzyoun6zhxrhs64oiz\" (a handle goes in handles)", s)
	}
	switch d.Method() {
	case "plc":
		id := d.Identifier()
		if len(id) != 24 || strings.Trim(id, "abcdefghijklmnopqrstuvwxyz234567") != "" {
			return "", fmt.Errorf("%q is not a did:plc identifier: after \"did:plc:\" come 24 characters from a-z and 2-7", s)
		}
	case "web":
		// AT Protocol's did:web names a host only: no path, no port
		// (but on localhost, for development).
		id := strings.ToLower(d.Identifier())
		if strings.Contains(id, ":") {
			return "", fmt.Errorf("%q has a path; AT Protocol's did:web names a host only, as in \"did:web:example.com\"", s)
		}
		host, port, hasPort := strings.Cut(id, "%3a")
		if !hasPort {
			return "did:web:" + host, nil
		}
		if host != "localhost" {
			return "", fmt.Errorf("%q has a port; AT Protocol's did:web allows one only on localhost", s)
		}
		return "did:web:" + host + "%3A" + port, nil
	default:
		return "", fmt.Errorf("%q uses the method %q; AT Protocol accounts are did:plc or did:web", s, d.Method())
	}
	return d.String(), nil
}

// ParseHandlePattern checks a handle rule: a handle ("alice.example.com")
// or a handle domain ("*.example.com", every handle under example.com but
// not example.com itself). It returns the lower-case handle, or the domain
// with its leading dot.
func ParseHandlePattern(s string) (handle, domain string, err error) {
	if strings.HasPrefix(s, "did:") {
		return "", "", fmt.Errorf("%q is a DID; put it in dids, which is the better rule anyway (handles can change hands)", s)
	}
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		h, err := syntax.ParseHandle(rest)
		if err != nil || strings.Contains(rest, "*") {
			return "", "", fmt.Errorf("%q is not a handle domain; write \"*.\" and a domain, as in \"*.example.com\"", s)
		}
		return "", "." + h.Normalize().String(), nil
	}
	if strings.Contains(s, "*") {
		return "", "", fmt.Errorf("%q has a \"*\" in the wrong place; a handle domain is written \"*.example.com\"", s)
	}
	s = strings.TrimPrefix(s, "@")
	h, err := syntax.ParseHandle(s)
	if err != nil {
		return "", "", fmt.Errorf("%q is not a handle; write one such as \"alice.example.com\" or \"alice.bsky.social\"", s)
	}
	if h.Normalize() == syntax.HandleInvalid {
		return "", "", fmt.Errorf("%q is the marker of an unverified handle and matches no one", s)
	}
	return h.Normalize().String(), "", nil
}
