package config

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"golang.org/x/net/http/httpguts"

	"github.com/ioproxy/ioproxy/access"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/httpx"
)

const fuzzFilename = "fuzz.hcl"

// fuzzDeadline is far above what parsing a config file takes.
const fuzzDeadline = 5 * time.Second

// fuzzEnv is a fixed environment: env() must give the same answer on
// every run, or the determinism property below would test the process's
// environment rather than the parser.
func fuzzEnv(name string) (string, bool) {
	switch name {
	case "NOMAD_TOKEN":
		return "token-from-env", true
	case "PORT":
		return "8080", true
	case "HOST":
		return "app.example.com", true
	case "API_KEYS", "GRAFANA_API_KEYS":
		return "ci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", true
	case "EMPTY":
		return "", true
	case "GOOGLE_CLIENT_ID":
		return "1234-abc.apps.googleusercontent.com", true
	case "GOOGLE_CLIENT_SECRET":
		return "GOCSPX-fuzz", true
	case "CRLF":
		return "Bearer x\r\nX-Admin: 1", true
	}
	return "", false
}

// FuzzParse feeds arbitrary HCL text to Parse, the code that reads every
// operator's configuration file.
//
// Properties: Parse never panics; every diagnostic points into the file it
// read (filename, line ≥ 1, a byte range inside the source), so an operator
// can always find the mistake; a Config comes back exactly when there is
// no error; parsing is deterministic; and a built Config survives being
// validated again, piece by piece, by the same parsers that built it.
func FuzzParse(f *testing.F) {
	examples, err := filepath.Glob(filepath.Join("..", "examples", "*.hcl"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range examples {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	// The configurations of the unit tests, good and bad, read from the
	// test file itself so that new cases become seeds too.
	for _, name := range []string{"config_test.go", "serve_test.go", "oauth_test.go"} {
		for _, s := range testFileStrings(f, name) {
			f.Add([]byte(s))
		}
	}
	f.Add([]byte(`host "a.example.com" { backend = "localhost:3000" }`))
	f.Add([]byte("host \"a.example.com\" {\n  backend = \"localhost:1\"\n  apikey_auth {\n    users = <<EOT\nci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\nEOT\n  }\n}"))
	f.Add([]byte(`nomad { token = env("NOMAD_TOKEN") }` + "\n" + `host "a.example.com" { backend = "nomad:web" }`))

	f.Fuzz(func(t *testing.T, src []byte) {
		opts := Options{LookupEnv: fuzzEnv}
		var (
			cfg   *Config
			diags hcl.Diagnostics
		)
		// A hung worker makes the fuzzer stall without naming the input;
		// a deadline turns the hang into a failure that does.
		done := make(chan struct{})
		go func() {
			defer close(done)
			cfg, diags = Parse(src, fuzzFilename, opts)
		}()
		select {
		case <-done:
		case <-time.After(fuzzDeadline):
			t.Fatalf("Parse did not return within %s", fuzzDeadline)
		}
		checkDiagnostics(t, src, diags)
		if diags.HasErrors() != (cfg == nil) {
			t.Fatalf("errors: %v, config nil: %v; want a config exactly when there is no error", diags.HasErrors(), cfg == nil)
		}

		cfg2, diags2 := Parse(src, fuzzFilename, opts)
		// Compared as sets: gohcl reports unsupported attributes in map
		// order, so the order of diagnostics changes from run to run.
		if got, want := formatAll(diags2), formatAll(diags); got != want {
			t.Fatalf("second parse gave other diagnostics:\n%s\nfirst:\n%s", got, want)
		}
		if !reflect.DeepEqual(cfg, cfg2) {
			t.Fatalf("second parse gave another config:\n%+v\nfirst:\n%+v", cfg2, cfg)
		}
		if cfg != nil {
			revalidate(t, cfg)
		}
	})
}

// checkDiagnostics asserts that each diagnostic can be shown as
// file:line:col inside src.
func checkDiagnostics(t *testing.T, src []byte, diags hcl.Diagnostics) {
	t.Helper()
	for _, d := range diags {
		if d.Severity != hcl.DiagError && d.Severity != hcl.DiagWarning {
			t.Errorf("diagnostic %q has severity %v", d.Summary, d.Severity)
		}
		if d.Summary == "" {
			t.Errorf("diagnostic without summary: %+v", d)
		}
		s := d.Subject
		if s == nil {
			if d.Severity == hcl.DiagError {
				t.Errorf("error %q (%s) has no subject: the operator cannot find it", d.Summary, d.Detail)
			}
			continue
		}
		if s.Filename != fuzzFilename || s.Start.Line < 1 || s.Start.Column < 1 {
			t.Errorf("%s %q is at %q line %d col %d; want %s, line and column ≥ 1", severity(d), d.Summary, s.Filename, s.Start.Line, s.Start.Column, fuzzFilename)
		}
		if s.Start.Byte < 0 || s.Start.Byte > s.End.Byte || s.End.Byte > len(src) {
			t.Errorf("%s %q has byte range %d-%d outside the %d-byte source", severity(d), d.Summary, s.Start.Byte, s.End.Byte, len(src))
		}
		if line := FormatDiagnostic(d); !strings.HasPrefix(line, fuzzFilename+":") {
			t.Errorf("diagnostic formats as %q; want it to start with %s:", line, fuzzFilename)
		}
	}
}

func severity(d *hcl.Diagnostic) string {
	if d.Severity == hcl.DiagError {
		return "error"
	}
	return "warning"
}

// formatAll renders diagnostics sorted, for comparing two runs.
func formatAll(diags hcl.Diagnostics) string {
	lines := make([]string, 0, len(diags))
	for _, d := range diags {
		lines = append(lines, FormatDiagnostic(d))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// revalidate runs the values of a built Config through the parsers that
// produced them: each must come back unchanged, or the Config holds a
// value that its own validation would refuse.
func revalidate(t *testing.T, cfg *Config) {
	t.Helper()
	if cfg.Filename != fuzzFilename {
		t.Errorf("Filename = %q", cfg.Filename)
	}
	for _, h := range cfg.Hosts {
		if h.Hostname != NormalizeHost(h.Hostname) || !validHostname(h.Hostname) {
			t.Errorf("host name %q is not a normalized host name", h.Hostname)
		}
		if got, ok := cfg.Host(h.Hostname); !ok || got.Hostname != h.Hostname {
			t.Errorf("cfg.Host(%q) does not find the host", h.Hostname)
		}
		if h.Backend.Kind != BackendNone {
			be, err := ParseBackend(h.Backend.Raw)
			if err != nil || !reflect.DeepEqual(be, h.Backend) {
				t.Errorf("backend %q parses again as %+v, %v; want %+v", h.Backend.Raw, be, err, h.Backend)
			}
		}
		if h.ATProto != nil && !strings.Contains(" "+h.ATProto.Scope()+" ", " atproto ") {
			t.Errorf("host %q signs in without the atproto scope: %q", h.Hostname, h.ATProto.Scope())
		}
		if h.Backend.Kind == BackendServing {
			t.Errorf("host %q keeps the backend %q instead of its serve block's", h.Hostname, h.Backend.Raw)
		}
		if h.Serving != "" {
			s, ok := cfg.Serve(h.Serving)
			if !ok || !slices.Contains(s.Hosts, h.Hostname) || h.Access != s.Access || !reflect.DeepEqual(h.Backend, s.Backend) {
				t.Errorf("host %q routes to serve %q, which does not list it or gives it other rules or another backend: %+v", h.Hostname, h.Serving, s)
			}
		}
		if h.Access != nil {
			revalidateAccess(t, "host "+strconv.Quote(h.Hostname), h.Access)
		}
		revalidateOAuth(t, h)
	}
	serves := map[string]bool{}
	for _, s := range cfg.Serves {
		what := "serve " + strconv.Quote(s.Label)
		if serves[s.Label] {
			t.Errorf("%s appears twice", what)
		}
		serves[s.Label] = true
		if !validServiceName(s.Label) || s.Port < 1 || s.Port > 65535 {
			t.Errorf("%s has an invalid label or port %d", what, s.Port)
		}
		if be, err := ParseBackend(s.Backend.Raw); (s.Backend.Kind != BackendURL && s.Backend.Kind != BackendNomad) || err != nil || !reflect.DeepEqual(be, s.Backend) {
			t.Errorf("%s backend %+v parses again as %+v, %v", what, s.Backend, be, err)
		}
		if s.Access == nil || (s.Access.Rules == nil && len(s.Access.APIKeys) == 0) || s.Access.OAuth != nil {
			t.Errorf("%s has no access rules, or OAuth rules it cannot take: %+v", what, s.Access)
		} else {
			revalidateAccess(t, what, s.Access)
		}
		for _, name := range s.Hosts {
			if h, ok := cfg.Host(name); !ok || h.Serving != s.Label {
				t.Errorf("%s lists host %q, which does not route to it", what, name)
			}
		}
	}
	labels := map[string]bool{}
	for _, c := range cfg.Calls {
		if c.Port < 1 || c.Port > 65535 {
			t.Errorf("call %q has port %d", c.Label, c.Port)
		}
		if labels[c.Label] {
			t.Errorf("call label %q appears twice", c.Label)
		}
		labels[c.Label] = true
		for _, op := range c.Operations {
			if !strings.HasPrefix(op.Path, "/") || !op.Matches(op.Method, op.Path) {
				t.Errorf("call %q operation %+v does not match its own method and path", c.Label, op)
			}
		}
		revalidateCallAuth(t, cfg, c)
	}
}

// revalidateOAuth runs a host's oauth blocks through the checks that
// built them, and holds its require_oauth rules to naming them.
func revalidateOAuth(t *testing.T, h Host) {
	t.Helper()
	what := "host " + strconv.Quote(h.Hostname)
	if h.Serving != "" && len(h.OAuth) > 0 {
		t.Errorf("%s routes to a serve block and signs in with %+v", what, h.OAuth)
	}
	names := map[string]bool{}
	for _, p := range h.OAuth {
		if names[p.Name] || !providerName.MatchString(p.Name) || p.Name == reservedProvider {
			t.Errorf("%s: provider name %q is repeated, invalid or reserved", what, p.Name)
		}
		names[p.Name] = true
		if got, ok := h.OAuthProvider(p.Name); !ok || !reflect.DeepEqual(got, p) {
			t.Errorf("%s: OAuthProvider(%q) = %+v, %v", what, p.Name, got, ok)
		}
		// An issuer, the two URLs, or (with openid) both: the URLs stay
		// and the issuer is their origin's, for the keys.
		urls := p.AuthorizeURL != ""
		if p.Issuer == "" && !urls || (p.AuthorizeURL == "") != (p.TokenURL == "") || p.Issuer != "" && urls && !p.OpenID() {
			t.Errorf("%s: provider %q has issuer %q, authorize_url %q and access_token_url %q", what, p.Name, p.Issuer, p.AuthorizeURL, p.TokenURL)
		}
		b := &builder{}
		for _, u := range []struct {
			attr, val string
			issuer    bool
		}{{"issuer", p.Issuer, true}, {"authorize_url", p.AuthorizeURL, false}, {"access_token_url", p.TokenURL, false}, {"userinfo_url", p.UserinfoURL, false}} {
			if u.val != "" {
				b.providerURL(hcl.Range{}, u.attr, u.val, "https://example.com", u.issuer)
			}
		}
		if len(b.diags) != 0 {
			t.Errorf("%s: provider %q has URLs that validation refuses: %v", what, p.Name, b.diags)
		}
		seen := map[string]bool{}
		for _, s := range p.Scopes {
			if seen[s] || !scopeToken(s) {
				t.Errorf("%s: provider %q has the repeated or invalid scope %q", what, p.Name, s)
			}
			seen[s] = true
		}
		if len(p.Scopes) == 0 || p.OpenID() != slices.Contains(p.Scopes, "openid") {
			t.Errorf("%s: provider %q has scopes %q", what, p.Name, p.Scopes)
		}
		for k, vs := range p.AuthorizeParams {
			if _, reserved := ioproxySetsParameter[strings.ToLower(k)]; reserved || k == "" || len(vs) != 1 || vs[0] == "" {
				t.Errorf("%s: provider %q sends the parameter %q = %q", what, p.Name, k, vs)
			}
		}
	}
	if h.Access == nil {
		return
	}
	if h.Access.OAuth != nil && len(h.Access.OAuth) == 0 {
		t.Errorf("%s: require_oauth is an empty map, not nil", what)
	}
	for name, r := range h.Access.OAuth {
		if !names[name] || r == nil {
			t.Errorf("%s: require_oauth %q names no provider of the host (or has no rules)", what, name)
			continue
		}
		for _, e := range r.Emails {
			if got, err := access.ParseEmail(e); err != nil || got != e || !r.Admits(e, true) || r.Admits(e, false) {
				t.Errorf("%s: require_oauth %q email %q re-validates as %q, %v, or is not admitted as verified only", what, name, e, got, err)
			}
		}
		for _, d := range r.Domains {
			if got, err := access.ParseEmailDomain(d); err != nil || got != d {
				t.Errorf("%s: require_oauth %q domain %q re-validates as %q, %v", what, name, d, got, err)
			}
		}
	}
}

// revalidateCallAuth holds a call's auth block to what validation
// promises: none towards the PDS, a canonical header of the call's own, a
// provider that some host defines, or else a fixed credential.
func revalidateCallAuth(t *testing.T, cfg *Config, c Call) {
	t.Helper()
	a := c.Auth
	if a == nil {
		return
	}
	what := "call " + strconv.Quote(c.Label)
	if c.Endpoint.Kind == EndpointPDS {
		t.Errorf("%s to the PDS has an auth block: %+v", what, a)
	}
	switch a.Location {
	case CallAuthHeader:
		_, owned := ioproxyHeaders[a.Name]
		if a.Name != http.CanonicalHeaderKey(a.Name) || !httpguts.ValidHeaderFieldName(a.Name) || owned || httpx.IsHopByHop(a.Name) || contract.IsIdentity(a.Name) {
			t.Errorf("%s puts its credential in the header %q", what, a.Name)
		}
		if a.Static != "" && !httpguts.ValidHeaderFieldValue(a.Static) {
			t.Errorf("%s has a credential that cannot go in a header", what)
		}
	case CallAuthQuery:
		if a.Name == "" || url.QueryEscape(a.Name) != a.Name {
			t.Errorf("%s puts its credential in the query parameter %q", what, a.Name)
		}
	default:
		t.Errorf("%s has the location %q", what, a.Location)
	}
	if a.Provider == "" {
		return
	}
	if a.Static != "" {
		t.Errorf("%s has both a provider and a fixed credential", what)
	}
	for _, h := range cfg.Hosts {
		if _, ok := h.OAuthProvider(a.Provider); ok {
			return
		}
	}
	t.Errorf("%s sends the token of provider %q, which no host defines", what, a.Provider)
}

// revalidateAccess runs access rules through the parsers that built them.
func revalidateAccess(t *testing.T, what string, a *Access) {
	t.Helper()
	if r := a.Rules; r != nil {
		for _, d := range r.DIDs {
			if got, err := access.ParseDID(d); err != nil || got != d {
				t.Errorf("%s: allowed DID %q re-validates as %q, %v", what, d, got, err)
			}
		}
		for _, hd := range r.Handles {
			if got, dom, err := access.ParseHandlePattern(hd); err != nil || got != hd || dom != "" {
				t.Errorf("%s: allowed handle %q re-validates as %q %q, %v", what, hd, got, dom, err)
			}
		}
		for _, d := range r.Domains {
			if got, dom, err := access.ParseHandlePattern("*" + d); err != nil || got != "" || dom != d {
				t.Errorf("%s: allowed domain %q re-validates as %q %q, %v", what, d, got, dom, err)
			}
		}
		for _, p := range r.Public {
			if got, err := access.ParsePathPattern(p.String()); err != nil || got != p {
				t.Errorf("%s: public path %q re-validates as %+v, %v", what, p, got, err)
			}
		}
	}
	seen := map[string]bool{}
	for _, e := range a.APIKeys {
		if got, err := access.ParseKeyEntry(e.Name + ":" + e.Hash); err != nil || got != e {
			t.Errorf("%s: API key entry %q re-validates as %+v, %v", what, e.Name, got, err)
		}
		if seen[e.Name] {
			t.Errorf("%s: API key name %q appears twice", what, e.Name)
		}
		seen[e.Name] = true
	}
}

// testFileStrings returns the string literals of a test file in this
// package that look like configuration (they hold a block or an
// attribute).
func testFileStrings(f *testing.F, name string) []string {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
	if err != nil {
		f.Fatalf("read seeds from %s: %v", name, err)
	}
	var out []string
	ast.Inspect(file, func(n ast.Node) bool {
		lit, ok := n.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return true
		}
		s, err := strconv.Unquote(lit.Value)
		if err == nil && (strings.Contains(s, "{") || strings.Contains(s, "=")) {
			out = append(out, s)
		}
		return true
	})
	return out
}
