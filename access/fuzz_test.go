package access

import (
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/text/unicode/norm"
)

// FuzzIsPublic checks IsPublic, which lets a request past sign-in.
//
// Property: when IsPublic says yes, the path has one reading only. Every
// way a backend might read it (percent-decoding once or twice, "\" as
// "/", ";params" dropped, dot segments and doubled slashes removed, lower
// case, trailing dots and spaces of segments trimmed as Windows does,
// NFKC) is matched by the public pattern that matched the path itself, so
// no reading escapes the public prefix.
func FuzzIsPublic(f *testing.F) {
	for _, s := range []string{
		"/static/app.js", "/static/", "/static", "/healthz", "/healthz/", "/public/", "/public", "/public/x",
		"/static/../admin", "/static/..%2fadmin", "/static/%2e%2e/admin", "/static/%252e%252e/admin", "/static/..;/admin",
		`/static/..\admin`, "/static/%5c../admin", "/static//admin", "/static/./x", "/static/.../admin", "/static/.. /admin",
		"/static/. ./admin", "/static/x%00", "/static/%c0%ae%c0%ae/admin", "/static/%ef%bc%8e%ef%bc%8e/admin",
		"/static/\uff0e\uff0e/admin", "/static/%2F..%2Fadmin", "/STATIC/x", "/static/a;b", "/healthz;x", "/healthz%3b",
		"/static/%u002e%u002e/admin", "/static/a%3Fb", "/static/a%23b", "/static/a b", "/static/a+b", "/static/a%20b",
		"/static/x.", "/healthz.", "/healthz%20", "/static/%7e", "/static/a\x7f", "//static/x", "/./static/x",
	} {
		f.Add(s)
	}
	// A prefix, an exact path, and an exact path ending in a slash.
	var rules Rules
	for _, s := range []string{"/static/*", "/healthz", "/public/"} {
		p, err := ParsePathPattern(s)
		if err != nil {
			f.Fatalf("ParsePathPattern(%q): %v", s, err)
		}
		rules.Public = append(rules.Public, p)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		// As net/http parses a request line, and as code might build a
		// URL from a decoded path.
		var urls []*url.URL
		if u, err := url.ParseRequestURI(raw); err == nil {
			urls = append(urls, u)
		}
		urls = append(urls, &url.URL{Path: raw})
		for _, u := range urls {
			if !rules.IsPublic(u) {
				continue
			}
			var pat PathPattern
			for _, p := range rules.Public {
				if p.Matches(u.Path) {
					pat = p
					break
				}
			}
			if pat.Path == "" {
				t.Fatalf("IsPublic(%q) but no pattern matches its path %q", u.EscapedPath(), u.Path)
			}
			for name, reading := range readings(u.EscapedPath()) {
				if !pat.Matches(reading) {
					t.Fatalf("IsPublic(%q) by %s, but a backend that reads it %s sees %q", u.EscapedPath(), pat, name, reading)
				}
			}
		}
	})
}

// readings are the paths lenient backends make of an escaped path, each
// named by how it was read.
func readings(escaped string) map[string]string {
	once := lenientUnescape(escaped)
	twice := lenientUnescape(once)
	steps := []struct {
		name string
		f    func(string) string
	}{
		{`with "\" as "/"`, func(s string) string { return strings.ReplaceAll(s, `\`, "/") }},
		{"without ;params", dropParams},
		{"cleaned", cleanKeepSlash},
		{"in lower case", strings.ToLower},
		{"with segments trimmed of trailing dots and spaces", trimSegments},
		{"NFKC-normalized", norm.NFKC.String},
	}
	out := map[string]string{"decoded once": once, "decoded twice": twice}
	for _, s := range steps {
		out["decoded once, "+s.name] = cleanKeepSlash(s.f(once))
		out["decoded twice, "+s.name] = cleanKeepSlash(s.f(twice))
	}
	// Everything at once, in the order that undoes the most.
	all := twice
	for _, s := range steps {
		all = s.f(all)
	}
	out["every way at once"] = cleanKeepSlash(all)
	return out
}

// lenientUnescape decodes every valid %XX and keeps the rest, as
// forgiving decoders do.
func lenientUnescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func dropParams(s string) string {
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		if j := strings.IndexByte(seg, ';'); j >= 0 {
			segs[i] = seg[:j]
		}
	}
	return strings.Join(segs, "/")
}

func trimSegments(s string) string {
	segs := strings.Split(s, "/")
	for i, seg := range segs {
		// Windows drops trailing dots and spaces; a segment of only dots
		// is kept as ".." would be: path.Clean treats it next.
		if t := strings.TrimRight(seg, ". "); t != "" {
			segs[i] = t
		} else if seg != "" {
			segs[i] = ".."
		}
	}
	return strings.Join(segs, "/")
}

// cleanKeepSlash is path.Clean of a rooted path, keeping a trailing slash.
func cleanKeepSlash(s string) string {
	if !strings.HasPrefix(s, "/") {
		s = "/" + s
	}
	c := path.Clean(s)
	if strings.HasSuffix(s, "/") && c != "/" {
		c += "/"
	}
	return c
}

// FuzzParsePathPattern checks the parser of public_paths entries.
//
// Properties: an accepted pattern is rooted and holds no dot segment, no
// "//", "%", "\", ";", "?", "#", space or control character; it prints
// back as written and parses again to itself; and it is consistent with
// IsPublic: its own path is public under it (a pattern that only matches
// paths IsPublic refuses would be a silent no-op, which ParsePathPattern
// promises to refuse), and Matches agrees with the pattern's kind.
func FuzzParsePathPattern(f *testing.F) {
	for _, s := range []string{
		"/healthz", "/static/*", "/static*", "/", "/*", "*", "", "healthz", "/a/*/b", "/static/../admin", "/static/./x",
		"/static//x", "/static/%2e", "/a\\b", "/a;b", "/a?b", "/a#b", "/a b", "/a\tb", "/@/signin", "/@", "/@/*", "/@*",
		"/a/. ./b", "/a/.. /*", "/a..b", "/.well-known/*", "/x/", "/x/**", "//", "/\x7f",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePathPattern(s)
		if err != nil {
			if p != (PathPattern{}) {
				t.Fatalf("ParsePathPattern(%q) failed but returned %+v", s, p)
			}
			return
		}
		if p.String() != s {
			t.Fatalf("ParsePathPattern(%q) prints back as %q", s, p.String())
		}
		if again, err := ParsePathPattern(p.String()); err != nil || again != p {
			t.Fatalf("ParsePathPattern(%q) = %+v, which parses again as %+v, %v", s, p, again, err)
		}
		if !strings.HasPrefix(p.Path, "/") || strings.Contains(p.Path, "//") || strings.ContainsAny(p.Path, "%\\;?#* \t") || strings.ContainsFunc(p.Path, isControl) {
			t.Fatalf("ParsePathPattern(%q) accepted %q", s, p.Path)
		}
		for _, seg := range strings.Split(p.Path, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("ParsePathPattern(%q) accepted the dot segment %q", s, seg)
			}
		}
		if clean := cleanKeepSlash(p.Path); clean == "/@" || strings.HasPrefix(clean, "/@/") {
			t.Fatalf("ParsePathPattern(%q) accepted a path under /@/", s)
		}
		if !p.Matches(p.Path) {
			t.Fatalf("%s does not match its own path %q", p, p.Path)
		}
		if p.Prefix != p.Matches(p.Path+"x") {
			t.Fatalf("%s (prefix %v) gives %v for %q", p, p.Prefix, p.Matches(p.Path+"x"), p.Path+"x")
		}
		r := Rules{Public: []PathPattern{p}}
		if !r.IsPublic(&url.URL{Path: p.Path}) {
			t.Fatalf("ParsePathPattern(%q) accepted a pattern under which its own path %q is never public", s, p.Path)
		}
	})
}

// cheapCost is the bcrypt cost FuzzParseKeyEntry still checks keys for:
// NewKeys makes a decoy at the entries' cost, and Check compares at it, so
// a fuzzed "$2a$31$…" would take days.
const cheapCost = bcrypt.MinCost

// FuzzParseKeyEntry checks the parser of apikey_auth lines, and Keys.Check
// on what it accepts.
//
// Properties: an accepted entry has a valid name (letters, digits,
// . _ @ -, at most 64), is the line itself split at the first ":", is
// bcrypt (60 characters, $2a$, $2b$ or $2y$) or {SHA} (base64 of 20
// bytes); and Keys.Check accepts a key exactly when the hash is of that
// key, again after a good key was remembered, and never for another name.
func FuzzParseKeyEntry(f *testing.F) {
	for _, seed := range []struct{ line, key string }{
		{"ci:$2a$04$z0ck55HHeh2y96PBRponcOJA89.1v5JlKAH2jBe3BI45egakB2MAK", "secret"},
		{"ci:$2b$04$LDKpWudLqur1BAlC7LVLFuO3cugx8XX8PU2t36EPd68XjI/8RGHLe", "secret"},
		{"deploy.bot@x-1:$2y$04$etSLJm6R1mp.tR7qvofFOeYgPY0VaK3xMYhtf3ulkUNUWQ8vCWlo.", "secret"},
		{"w:$2a$04$Rn4Jpf302V9nOODQIkbthuGCzmIUTARpNDWrb2jFFavINN8jtKZhm", "wrong"},
		{"e:$2y$04$RUNoZlogFqoIxaYAWlNXCOrBn2Dnc.As/GimNUJI0hIV5W55X0thy", ""},
		{"deploy:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret"},
		{"w:{SHA}pLSKgc2rHhpd03kH1shcocYd3Hw=", "wrong"},
		{"e:{SHA}2jmj7l5rSw0yVb/vlWAYkK/YBwk=", ""},
		{"ci:$2y$05$5Q/IvMRNNkd1Tuk2rBvZ5OF8eQK.gTYpvUAaN5gS0SrTqXMa6a1r.", "x"},
		{"ci:$2y$31$5Q/IvMRNNkd1Tuk2rBvZ5OF8eQK.gTYpvUAaN5gS0SrTqXMa6a1r.", "x"},
		{"ci:$2y$03$5Q/IvMRNNkd1Tuk2rBvZ5OF8eQK.gTYpvUAaN5gS0SrTqXMa6a1r.", "x"},
		{"ci:$2y$05$short", "x"}, {"ci:$apr1$abc$def", "x"}, {"bot:hunter2", "hunter2"}, {"ci", ""}, {":x", ""},
		{"ci:", ""}, {"c i:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret"}, {"ci:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ", "secret"},
		{"ci:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=:extra", "secret"}, {"ci:$2a$04$z0ck55HHeh2y96PBRponcOJA89.1v5JlKAH2jBe3BI45egakB2MAKci:x", "secret"},
		{strings.Repeat("a", 65) + ":{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret"}, {"é:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "secret"},
	} {
		f.Add(seed.line, seed.key)
	}
	f.Fuzz(func(t *testing.T, line, key string) {
		e, err := ParseKeyEntry(line)
		if err != nil {
			if e != (KeyEntry{}) {
				t.Fatalf("ParseKeyEntry(%q) failed but returned %+v", line, e)
			}
			return
		}
		if e.Name+":"+e.Hash != line {
			t.Fatalf("ParseKeyEntry(%q) = %+v: not the line split at its first colon", line, e)
		}
		if !fuzzValidName(e.Name) {
			t.Fatalf("ParseKeyEntry(%q) accepted the name %q", line, e.Name)
		}
		switch e.Kind {
		case HashBcrypt:
			if len(e.Hash) != 60 || !(strings.HasPrefix(e.Hash, "$2a$") || strings.HasPrefix(e.Hash, "$2b$") || strings.HasPrefix(e.Hash, "$2y$")) {
				t.Fatalf("ParseKeyEntry(%q) accepted the bcrypt hash %q", line, e.Hash)
			}
			if c := e.Cost(); c < bcrypt.MinCost || c > bcrypt.MaxCost {
				t.Fatalf("bcrypt entry %q has cost %d", line, c)
			}
			if e.Cost() > cheapCost {
				return
			}
		case HashSHA1:
			sum, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(e.Hash, "{SHA}"))
			if !strings.HasPrefix(e.Hash, "{SHA}") || err != nil || len(sum) != sha1.Size {
				t.Fatalf("ParseKeyEntry(%q) accepted the {SHA} hash %q", line, e.Hash)
			}
		default:
			t.Fatalf("ParseKeyEntry(%q) returned kind %d", line, e.Kind)
		}

		keys := NewKeys([]KeyEntry{e})
		want := hashIsOf(e, key)
		for i := range 2 { // the second time, a good key is remembered
			if err := keys.Check(e.Name, key); (err == nil) != want {
				t.Fatalf("check %d of %q with key %q: %v; want success %v", i+1, line, key, err, want)
			} else if err != nil && !errors.Is(err, ErrWrongKey) {
				t.Fatalf("check of %q: %v, want ErrWrongKey", line, err)
			}
		}
		if other := key + "x"; !hashIsOf(e, other) {
			if err := keys.Check(e.Name, other); err == nil {
				t.Fatalf("%q accepts %q after %q", line, other, key)
			}
		}
		if err := keys.Check(e.Name+"x", key); err == nil {
			t.Fatalf("%q accepts the name %q", line, e.Name+"x")
		}
	})
}

// hashIsOf compares independently of Keys.
func hashIsOf(e KeyEntry, key string) bool {
	if e.Kind == HashBcrypt {
		return bcrypt.CompareHashAndPassword([]byte(e.Hash), []byte(key)) == nil
	}
	sum := sha1.Sum([]byte(key))
	return subtle.ConstantTimeCompare([]byte("{SHA}"+base64.StdEncoding.EncodeToString(sum[:])), []byte(e.Hash)) == 1
}

// fuzzValidName is the documented name rule, written out again.
func fuzzValidName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._@-", c) >= 0) {
			return false
		}
	}
	return true
}

// FuzzEmailRules checks EmailRules.Admits, which lets an account of an
// OAuth provider past require_oauth, and the parsers of its lists.
//
// Properties: an unverified email is never admitted; the decision does not
// change with the ASCII case of the email; an admitted email is ASCII with
// one "@" and a non-empty local part, and is named by the rules as they
// are documented (an email exactly, a domain exactly, "*.domain" by its
// subdomains only), rechecked here independently; a nil EmailRules admits
// no one. A rule that ParseEmail or ParseEmailDomain accepts is lower case,
// parses again to itself and admits the addresses it names: an email
// itself, an address at a plain domain but not at its subdomains, an
// address at a subdomain of "*.domain" but not at the domain.
func FuzzEmailRules(f *testing.F) {
	for _, s := range []struct {
		email    string
		verified bool
		rule     string
	}{
		{"alice@example.com", true, "alice@example.com"},
		{"Alice@Example.COM", true, "ALICE@example.com"},
		{"alice@example.com", false, "alice@example.com"},
		{"bob@example.com", true, "example.com"},
		{"bob@mail.example.com", true, "example.com"},
		{"bob@mail.example.com", true, "*.example.com"},
		{"bob@example.com", true, "*.example.com"},
		{"bob@badexample.com", true, "example.com"},
		{"alice@evil.com@example.com", true, "example.com"},
		{"@example.com", true, "example.com"},
		{"\u212aevin@example.com", true, "kevin@example.com"},
		{"alice@example.com ", true, " alice@example.com"},
		{"Alice <alice@example.com>", true, "alice@example.com"},
		{`"a@b"@example.com`, true, "example.com"},
		{"a@b.c", true, "b.c"},
		{"a@1.2.3.4", true, "*.2.3.4"},
	} {
		f.Add(s.email, s.verified, s.rule)
	}
	fixed := &EmailRules{Emails: []string{"alice@example.com"}, Domains: []string{"example.net", "*.corp.example"}}
	open := &EmailRules{}
	f.Fuzz(func(t *testing.T, email string, verified bool, rule string) {
		rulesets := []*EmailRules{fixed, open}
		if e, err := ParseEmail(rule); err == nil {
			checkParsedRule(t, rule, e, func(s string) (string, error) { return ParseEmail(s) })
			r := &EmailRules{Emails: []string{e}}
			if !r.Admits(e, true) || !r.Admits(strings.ToUpper(e), true) || r.Admits(e, false) {
				t.Fatalf("EmailRules{Emails: [%q]} does not admit its own verified email exactly", e)
			}
			rulesets = append(rulesets, r)
		}
		if d, err := ParseEmailDomain(rule); err == nil {
			checkParsedRule(t, rule, d, func(s string) (string, error) { return ParseEmailDomain(s) })
			r := &EmailRules{Domains: []string{d}}
			parent, wild := strings.CutPrefix(d, "*.")
			switch {
			case len(d) > 240:
				// "a@sub." would make a longer domain than DNS allows.
			case wild && (!r.Admits("a@sub."+parent, true) || r.Admits("a@"+parent, true)):
				t.Fatalf("EmailRules{Domains: [%q]} admits the domain itself, or not a subdomain", d)
			case !wild && (!r.Admits("a@"+d, true) || r.Admits("a@sub."+d, true)):
				t.Fatalf("EmailRules{Domains: [%q]} admits a subdomain, or not the domain", d)
			}
			rulesets = append(rulesets, r)
		}
		if (*EmailRules)(nil).Admits(email, verified) {
			t.Fatalf("nil EmailRules admits %q", email)
		}
		for _, r := range rulesets {
			got := r.Admits(email, verified)
			if got && !verified {
				t.Fatalf("%+v admits the unverified email %q", r, email)
			}
			for _, other := range []string{asciiCase(email, true), asciiCase(email, false)} {
				if r.Admits(other, verified) != got {
					t.Fatalf("%+v: Admits(%q) = %v but Admits(%q) = %v", r, email, got, other, !got)
				}
			}
			if got && !namedByRules(r, email) {
				t.Fatalf("%+v admits %q, which it does not name", r, email)
			}
		}
	})
}

// checkParsedRule holds a rule the parser accepted to being lower case,
// without spaces, and its own parse.
func checkParsedRule(t *testing.T, in, out string, parse func(string) (string, error)) {
	t.Helper()
	if out != asciiCase(out, false) || strings.ContainsAny(out, " \t\r\n") || out == "" {
		t.Fatalf("parse(%q) = %q: not a trimmed lower-case rule", in, out)
	}
	if again, err := parse(out); err != nil || again != out {
		t.Fatalf("parse(%q) = %q, which parses again as %q, %v", in, out, again, err)
	}
}

// namedByRules is the documented rule, written out again: ASCII, one "@",
// a non-empty local part, and the address or its domain named.
func namedByRules(r *EmailRules, email string) bool {
	for i := 0; i < len(email); i++ {
		if email[i] <= ' ' || email[i] >= 0x7f {
			return false
		}
	}
	at := strings.LastIndexByte(email, '@')
	if at <= 0 || strings.Count(email, "@") != 1 {
		return false
	}
	addr := asciiCase(email, false)
	domain := addr[at+1:]
	if len(r.Emails) == 0 && len(r.Domains) == 0 {
		return true
	}
	for _, e := range r.Emails {
		if e == addr {
			return true
		}
	}
	for _, d := range r.Domains {
		if strings.HasPrefix(d, "*.") {
			if len(domain) > len(d)-1 && domain[len(domain)-(len(d)-1):] == d[1:] {
				return true
			}
		} else if domain == d {
			return true
		}
	}
	return false
}

// asciiCase maps the ASCII letters of s to upper or lower case, leaving
// every other byte alone (strings.ToUpper would map "ſ" to "S").
func asciiCase(s string, upper bool) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case upper && 'a' <= c && c <= 'z':
			b[i] = c - 'a' + 'A'
		case !upper && 'A' <= c && c <= 'Z':
			b[i] = c - 'A' + 'a'
		}
	}
	return string(b)
}
