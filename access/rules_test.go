package access

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

const (
	didAlice = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
	didBob   = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestRulesAdmits(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	rules := &Rules{
		DIDs:    []string{didAlice},
		Handles: []string{"bob.example.net"},
		Domains: []string{".example.com"},
	}
	for _, tt := range []struct {
		name        string
		rules       *Rules
		did, handle string
		want        bool
	}{
		{"listed DID", rules, didAlice, "whoever.example.org", true},
		{"listed DID with unverified handle", rules, didAlice, "handle.invalid", true},
		{"listed DID without handle", rules, didAlice, "", true},
		{"listed handle", rules, didBob, "bob.example.net", true},
		{"listed handle, other case", rules, didBob, "BoB.Example.NET", true},
		{"listed handle with extra label", rules, didBob, "x.bob.example.net", false},
		{"handle is a prefix of a listed one", rules, didBob, "bob.example", false},
		{"domain: one label", rules, didBob, "a.example.com", true},
		{"domain: two labels", rules, didBob, "a.b.example.com", true},
		{"domain: other case", rules, didBob, "A.EXAMPLE.COM", true},
		{"domain itself", rules, didBob, "example.com", false},
		{"domain without dot", rules, didBob, "aexample.com", false},
		{"domain as a prefix", rules, didBob, "a.example.com.evil.net", false},
		{"domain as a label", rules, didBob, "example.com.evil.net", false},
		{"unverified handle", rules, didBob, "handle.invalid", false},
		{"unverified handle, other case", rules, didBob, "Handle.Invalid", false},
		{"no handle", rules, didBob, "", false},
		{"unlisted", rules, didBob, "mallory.example.org", false},
		{"DID in the handle field", rules, didBob, didAlice, false},
		{"empty lists: any account", &Rules{}, didBob, "mallory.example.org", true},
		{"empty lists: even unverified handles", &Rules{}, didBob, "handle.invalid", true},
		{"only public paths: any account", &Rules{Public: []PathPattern{{Path: "/healthz"}}}, didBob, "x.test", true},
		{"only DIDs", &Rules{DIDs: []string{didAlice}}, didBob, "a.example.com", false},
		{"domain rule and handle.invalid", &Rules{Domains: []string{".invalid"}}, didBob, "handle.invalid", false},
		{"handle rule and handle.invalid", &Rules{Handles: []string{"handle.invalid"}}, didBob, "handle.invalid", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rules.Judge(Account{DID: tt.did, Handle: tt.handle, HandleChecked: now}, now) == Admitted; got != tt.want {
				t.Errorf("Judge(%q, %q) admits: %v, want %v", tt.did, tt.handle, got, tt.want)
			}
		})
	}
}

// TestRulesHandleCheckAge: a handle admits only while its last check is
// recent; a DID needs none.
func TestRulesHandleCheckAge(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	rules := &Rules{DIDs: []string{didAlice}, Handles: []string{"bob.example.net"}, Domains: []string{".example.com"}}
	custom := &Rules{Handles: []string{"bob.example.net"}, HandleMaxAge: 10 * time.Minute}
	for _, tt := range []struct {
		name    string
		rules   *Rules
		acct    Account
		checked time.Duration // how long ago the handle was checked
		want    Verdict
	}{
		{"handle checked just now", rules, Account{DID: didBob, Handle: "bob.example.net"}, 0, Admitted},
		{"handle checked within the default grace", rules, Account{DID: didBob, Handle: "bob.example.net"}, DefaultHandleMaxAge, Admitted},
		{"handle checked too long ago", rules, Account{DID: didBob, Handle: "bob.example.net"}, DefaultHandleMaxAge + time.Second, HandleUnchecked},
		{"domain handle checked too long ago", rules, Account{DID: didBob, Handle: "x.example.com"}, 3 * time.Hour, HandleUnchecked},
		{"never checked", rules, Account{DID: didBob, Handle: "bob.example.net"}, -1, HandleUnchecked},
		{"DID rule needs no check", rules, Account{DID: didAlice, Handle: "bob.example.net"}, 30 * 24 * time.Hour, Admitted},
		{"unnamed account is not named, however fresh", rules, Account{DID: didBob, Handle: "mallory.example.org"}, 0, NotNamed},
		{"unnamed account checked long ago is still not named", rules, Account{DID: didBob, Handle: "mallory.example.org"}, 3 * time.Hour, NotNamed},
		{"open rules need no check", &Rules{}, Account{DID: didBob, Handle: "bob.example.net"}, 30 * 24 * time.Hour, Admitted},
		{"custom grace: inside", custom, Account{DID: didBob, Handle: "bob.example.net"}, 10 * time.Minute, Admitted},
		{"custom grace: past", custom, Account{DID: didBob, Handle: "bob.example.net"}, 11 * time.Minute, HandleUnchecked},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.acct
			if tt.checked >= 0 {
				a.HandleChecked = now.Add(-tt.checked)
			}
			if got := tt.rules.Judge(a, now); got != tt.want {
				t.Errorf("Judge = %v, want %v", got, tt.want)
			}
		})
	}
}

// Rules built through the parsers, as the configuration does.
func TestRulesAdmitsParsed(t *testing.T) {
	r := &Rules{}
	for _, s := range []string{"Alice.Example.NET", "@carol.example.org", "*.Example.COM"} {
		h, d, err := ParseHandlePattern(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if h != "" {
			r.Handles = append(r.Handles, h)
		}
		if d != "" {
			r.Domains = append(r.Domains, d)
		}
	}
	for handle, want := range map[string]bool{
		"alice.example.net": true,
		"ALICE.example.net": true,
		"carol.example.org": true,
		"a.example.com":     true,
		"a.b.example.com":   true,
		"example.com":       false,
		"aexample.com":      false,
		"bob.example.net":   false,
	} {
		now := time.Now()
		if got := r.Judge(Account{DID: didBob, Handle: handle, HandleChecked: now}, now) == Admitted; got != want {
			t.Errorf("Judge(%q) admits: %v, want %v", handle, got, want)
		}
	}
}

func mustPatterns(t *testing.T, ss ...string) []PathPattern {
	t.Helper()
	var ps []PathPattern
	for _, s := range ss {
		p, err := ParsePathPattern(s)
		if err != nil {
			t.Fatalf("ParsePathPattern(%q): %v", s, err)
		}
		ps = append(ps, p)
	}
	return ps
}

// parseRequestURI reads a path as the HTTP server reads a request line.
func parseRequestURI(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.ParseRequestURI(raw)
	if err != nil {
		t.Fatalf("ParseRequestURI(%q): %v", raw, err)
	}
	return u
}

func TestRulesIsPublic(t *testing.T) {
	r := &Rules{Public: mustPatterns(t, "/healthz", "/static/*", "/docs*", "/a/b/")}
	public := []string{
		"/healthz",
		"/healthz?probe=1",
		"/static/",
		"/static/app.css",
		"/static/img/logo.png",
		"/static/a%20b.css", // an escaped space is one reading
		"/static/%41.css",   // an escaped letter too
		"/docs",
		"/docs/",
		"/docs-v2/x",
		"/a/b/",
	}
	for _, p := range public {
		if !r.IsPublic(parseRequestURI(t, p)) {
			t.Errorf("%s is not public; it should be", p)
		}
	}
	notPublic := []string{
		// Not under a pattern.
		"/", "/admin", "/healthz/", "/healthz/x", "/healthzx", "/static", "/a/b", "/a/b/c",
		// Mixed case: patterns are exact.
		"/Healthz", "/HEALTHZ", "/Static/app.css", "/STATIC/app.css",
		// Dot segments.
		"/static/../admin", "/static/./app.css", "/static/..", "/static/x/../../admin", "/./healthz", "/healthz/.", "/static/.",
		// Doubled slashes.
		"//healthz", "/static//app.css", "//static/app.css", "/static///admin",
		// Percent-encoded slash, backslash and dot, in either case.
		"/static/..%2fadmin", "/static/..%2Fadmin", "/static%2f..%2fadmin", "/static/%2e%2e/admin", "/static/%2E%2E/admin",
		"/static/%2e/app.css", "/%2e/healthz", "/healthz%2f", "/static/%5c..%5cadmin", "/static/%5C..%5Cadmin", "/static/x%5c",
		"/static/%2e%2e%2fadmin",
		// Double encoding, for backends that decode twice.
		"/static/%252e%252e/admin", "/static/..%252fadmin", "/static/%255c..%255cadmin",
		// Backslashes, raw.
		"/static\\..\\admin", "/static/\\admin", "/static/x\\",
		// ";" path parameters, raw and encoded.
		"/static;/../admin", "/static/;/../admin", "/healthz;x", "/static/app.css;jsessionid=1", "/static/x%3b/../admin", "/static/x%3B",
		// NUL, raw-escaped.
		"/healthz%00", "/static/app.css%00.png", "/static/%00/../admin",
		// Overlong UTF-8 for "/" and "." (read as such by some old decoders).
		"/static/%c0%af..%c0%afadmin", "/static/%c0%ae%c0%ae/admin", "/static/%e0%80%af",
	}
	for _, p := range notPublic {
		if r.IsPublic(parseRequestURI(t, p)) {
			t.Errorf("%s is public; it must not be", p)
		}
	}
	// URLs no HTTP server parses, built directly.
	for _, u := range []*url.URL{
		{Path: ""},
		{Path: "healthz"},
		{Path: "/healthz\x00"},
		{Path: "/static/\x00/x"},
		{Path: "/static/x", RawPath: "/static%2fx"},
		{Opaque: "/healthz"},
	} {
		if r.IsPublic(u) {
			t.Errorf("%#v is public; it must not be", u)
		}
	}
	if (&Rules{}).IsPublic(parseRequestURI(t, "/healthz")) {
		t.Error("no public paths, yet /healthz is public")
	}
}

func TestParsePathPattern(t *testing.T) {
	good := []struct {
		in   string
		want PathPattern
	}{
		{"/healthz", PathPattern{Path: "/healthz"}},
		{"/static/*", PathPattern{Path: "/static/", Prefix: true}},
		{"/static*", PathPattern{Path: "/static", Prefix: true}},
		{"/a/b/", PathPattern{Path: "/a/b/"}},
		{"/", PathPattern{Path: "/"}},
		{"/@alice", PathPattern{Path: "/@alice"}},
		{"/.well-known/*", PathPattern{Path: "/.well-known/", Prefix: true}},
	}
	for _, tt := range good {
		got, err := ParsePathPattern(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParsePathPattern(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("%q reads back as %q", tt.in, got.String())
		}
	}
	bad := []struct {
		in   string
		want string // in the error
	}{
		{"healthz", `write a path such as "/healthz"`},
		{"", `does not start with "/"`},
		{"*", `does not start with "/"`},
		{"static/*", `"/static/*" for everything under /static/`},
		{"/a/*/b", `only a final "*" is supported`},
		{"/a**", `only a final "*"`},
		{"/healthz?x=1", "leave out queries"},
		{"/healthz#top", "fragments"},
		{"/static%2f*", "percent-escapes"},
		{"/static\\*", "backslashes"},
		{"/static;x", "semicolons"},
		{"/my page", "spaces"},
		{"/tab\there", "spaces"},
		{"/nul\x00", "control characters"},
		{"/line\nbreak", "control characters"},
		{"/*", "would make every path public; remove require_atproto instead"},
		{"/@/signin", "always reachable; remove it"},
		{"/@/*", "ioproxy's own routes"},
		{"/@", "ioproxy's own routes"},
		{"/@*", "ioproxy's own routes"},
		{"/static/../admin", `write "/admin"`},
		{"/static/./app.css", `write "/static/app.css"`},
		{"//healthz", `write "/healthz"`},
		{"/static//*", `write "/static/*"`},
		{"//*", "would make every path public"},
		{"/./*", "would make every path public"},
		{"/x/../@/signin", "always reachable"},
		{"/static/../assets/*", `write "/assets/*"`},
		{"/a/./b/", `write "/a/b/"`},
	}
	for _, tt := range bad {
		p, err := ParsePathPattern(tt.in)
		if err == nil {
			t.Errorf("ParsePathPattern(%q) = %+v, want an error", tt.in, p)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParsePathPattern(%q) error %q does not say %q", tt.in, err, tt.want)
		}
	}
}

func TestPathPatternMatches(t *testing.T) {
	for _, tt := range []struct {
		pat, path string
		want      bool
	}{
		{"/healthz", "/healthz", true},
		{"/healthz", "/healthz/", false},
		{"/healthz", "/healthzx", false},
		{"/static/*", "/static/", true},
		{"/static/*", "/static/x/y", true},
		{"/static/*", "/static", false},
		{"/static/*", "/staticx", false},
	} {
		p, err := ParsePathPattern(tt.pat)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Matches(tt.path); got != tt.want {
			t.Errorf("%s matches %s = %v, want %v", tt.pat, tt.path, got, tt.want)
		}
	}
}

func TestParseDID(t *testing.T) {
	for _, s := range []string{
		"did:plc:ewvi7nxzyoun6zhxrhs64oiz",
		didAlice,
		"did:plc:234567234567234567234567",
		"did:web:example.com",
		"did:web:localhost%3A8080",
	} {
		got, err := ParseDID(s)
		if err != nil || got != s {
			t.Errorf("ParseDID(%q) = %q, %v", s, got, err)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"alice.bsky.social", `a handle goes in handles`},
		{"", `write one such as "did:plc:ewvi7nxzyoun6zhxrhs64oiz"`},
		{"did:plc:", "is not a DID"},
		{"did:plc:abc", `24 characters from a-z and 2-7`},
		{"did:plc:ewvi7nxzyoun6zhxrhs64oizz", `24 characters`},
		{"did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ", `a-z and 2-7`},
		{"did:plc:ewvi7nxzyoun6zhxrhs64oi1", `a-z and 2-7`},
		{"did:plc:ewvi7nxzyoun6zhxrhs64oi8", `a-z and 2-7`},
		{"did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", `uses the method "key"; AT Protocol accounts are did:plc or did:web`},
		{"did:example:123", `did:plc or did:web`},
		{" did:plc:ewvi7nxzyoun6zhxrhs64oiz", "is not a DID"},
		{"@alice.bsky.social", "handles"},
	} {
		got, err := ParseDID(tt.in)
		if err == nil {
			t.Errorf("ParseDID(%q) = %q, want an error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseDID(%q) error %q does not say %q", tt.in, err, tt.want)
		}
	}
}

func TestParseHandlePattern(t *testing.T) {
	for _, tt := range []struct{ in, handle, domain string }{
		{"alice.example.com", "alice.example.com", ""},
		{"Alice.Example.COM", "alice.example.com", ""},
		{"@alice.bsky.social", "alice.bsky.social", ""},
		{"*.example.com", "", ".example.com"},
		{"*.Team.Example.com", "", ".team.example.com"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", ""},
	} {
		h, d, err := ParseHandlePattern(tt.in)
		if err != nil || h != tt.handle || d != tt.domain {
			t.Errorf("ParseHandlePattern(%q) = %q, %q, %v; want %q, %q", tt.in, h, d, err, tt.handle, tt.domain)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"did:plc:ewvi7nxzyoun6zhxrhs64oiz", "put it in dids"},
		{"alice", `write one such as "alice.example.com"`},
		{"", "is not a handle"},
		{"alice..example.com", "is not a handle"},
		{"alice example.com", "is not a handle"},
		{"https://alice.example.com", "is not a handle"},
		{"*", `a handle domain is written "*.example.com"`},
		{"*example.com", `"*" in the wrong place`},
		{"alice.*.com", `wrong place`},
		{"alice.example.*", `wrong place`},
		{"@*.example.com", `wrong place`},
		{"*.", `write "*." and a domain, as in "*.example.com"`},
		{"*.com", `not a handle domain`},
		{"*.*.example.com", `not a handle domain`},
		{"*.example..com", `not a handle domain`},
		{"handle.invalid", "unverified handle and matches no one"},
		{"Handle.Invalid", "matches no one"},
	} {
		h, d, err := ParseHandlePattern(tt.in)
		if err == nil {
			t.Errorf("ParseHandlePattern(%q) = %q, %q; want an error", tt.in, h, d)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseHandlePattern(%q) error %q does not say %q", tt.in, err, tt.want)
		}
	}
}

// Paths that backends which normalize Unicode, or trim spaces and
// trailing dots, read as "..": never public. Review findings.
func TestRulesIsPublicLenientBackends(t *testing.T) {
	r := &Rules{Public: []PathPattern{{Path: "/static/", Prefix: true}}}
	for _, raw := range []string{"/static/%20../admin", "/static/..%20/admin", "/static/.../admin", "/static/.%20./admin", "/static/%EF%BC%8E%EF%BC%8E/admin", "/static/caf%C3%A9/../../admin"} {
		u, err := url.Parse("http://h" + raw)
		if err != nil {
			t.Fatal(err)
		}
		if r.IsPublic(u) {
			t.Errorf("%s is public", raw)
		}
	}
	for _, raw := range []string{"/static/a%20b.css", "/static/v1.2/app.js", "/static/.well-known-ish/x"} {
		u, _ := url.Parse("http://h" + raw)
		if !r.IsPublic(u) {
			t.Errorf("%s is not public; it should be", raw)
		}
	}
}

func TestParseDIDWeb(t *testing.T) {
	for in, want := range map[string]string{
		"did:web:Example.COM":         "did:web:example.com",
		"did:web:localhost%3A2583":    "did:web:localhost%3A2583",
		"did:web:example.com:user:a":  "has a path",
		"did:web:example.com%3A8443":  "has a port",
		"did:web:example.com%3a8443":  "has a port",
		"did:web:sub.example.com":     "did:web:sub.example.com",
		"did:web:LOCALHOST%3a8080":    "did:web:localhost%3A8080",
		"did:web:example.com:8443:xy": "has a path",
	} {
		got, err := ParseDID(in)
		switch {
		case strings.HasPrefix(want, "did:"):
			if err != nil || got != want {
				t.Errorf("ParseDID(%q) = %q, %v; want %q", in, got, err, want)
			}
		case err == nil || !strings.Contains(err.Error(), want):
			t.Errorf("ParseDID(%q) = %q, %v; want an error saying %q", in, got, err, want)
		}
	}
}
