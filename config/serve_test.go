package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// serveExample is the serve block of IO's documentation, with the host
// that routes to it.
const serveExample = `serve "nomad" {
  name    = "nomad"
  port    = 9009
  backend = "127.0.0.1:4646"
  require_atproto { handles = ["alice.example.com"] }
}
host "nomad.example.com" {
  backend = "serving:nomad"
  atproto { name = "Nomad" }
}
`

// apiKey is an entry whose bcrypt cost draws no warning.
const apiKey = `ci:$2a$10$MoTUEl2sLaxZyhYsvZQsuO0b1ggcIT9SjiLinuDCGokd0B3rxy4xu`

// diagLines renders diagnostics as validate prints them.
func diagLines(diags hcl.Diagnostics) []string {
	var lines []string
	for _, d := range diags {
		lines = append(lines, FormatDiagnostic(d))
	}
	return lines
}

// findDiag reports whether a line is at file:pos with the severity
// ("error" or "warning") and contains want.
func findDiag(lines []string, file, pos, severity, want string) bool {
	for _, l := range lines {
		if strings.HasPrefix(l, file+":"+pos+": "+severity+": ") && strings.Contains(l, want) {
			return true
		}
	}
	return false
}

func TestServeExample(t *testing.T) {
	cfg, diags := parse(t, serveExample)
	if diags.HasErrors() || cfg == nil {
		t.Fatalf("does not load:\n%s", strings.Join(diagLines(diags), "\n"))
	}
	if len(diags) != 0 {
		t.Errorf("diagnostics:\n%s", strings.Join(diagLines(diags), "\n"))
	}
	if len(cfg.Serves) != 1 {
		t.Fatalf("serves = %+v", cfg.Serves)
	}
	s, ok := cfg.Serve("nomad")
	if !ok {
		t.Fatal(`cfg.Serve("nomad") found nothing`)
	}
	if _, ok := cfg.Serve("Nomad"); ok {
		t.Error("labels are matched exactly, but Serve found \"Nomad\"")
	}
	if s.Label != "nomad" || s.ShortName != "nomad" || s.Port != 9009 || s.Bind != "127.0.0.1" || s.Addr() != "127.0.0.1:9009" {
		t.Errorf("serve = %+v", s)
	}
	if s.Backend.Kind != BackendURL || s.Backend.URL.String() != "http://127.0.0.1:4646" || s.Backend.Raw != "127.0.0.1:4646" {
		t.Errorf("serve backend = %+v", s.Backend)
	}
	if s.Access == nil || s.Access.Rules == nil || !slices.Equal(s.Access.Rules.Handles, []string{"alice.example.com"}) || len(s.Access.APIKeys) != 0 {
		t.Errorf("serve access = %+v", s.Access)
	}
	if !slices.Equal(s.Hosts, []string{"nomad.example.com"}) {
		t.Errorf("serve hosts = %q", s.Hosts)
	}
	h, ok := cfg.Host("nomad.example.com")
	if !ok {
		t.Fatal("host missing")
	}
	if h.Serving != "nomad" {
		t.Errorf("host Serving = %q", h.Serving)
	}
	// Ingress proxies straight to the service, under the serve block's
	// rules.
	if h.Backend.Kind != BackendURL || h.Backend.URL.String() != "http://127.0.0.1:4646" {
		t.Errorf("host backend = %+v, want the serve block's", h.Backend)
	}
	if h.Access != s.Access {
		t.Errorf("host access = %+v, want the serve block's %+v", h.Access, s.Access)
	}
	if h.ATProto == nil || h.ATProto.ClientName != "Nomad" || h.ATProto.Scope() != "atproto" {
		t.Errorf("host atproto = %+v", h.ATProto)
	}
}

func TestServeGood(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "bind left out listens on loopback",
			src:  "serve \"x\" {\n  port = 9009\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"" + apiKey + "\"] }\n}",
			check: func(t *testing.T, c *Config) {
				if s := c.Serves[0]; s.Bind != DefaultServeBind || s.Addr() != "127.0.0.1:9009" || s.ShortName != "x" {
					t.Errorf("serve = %+v", s)
				}
			},
		},
		{
			name: "bind written",
			src:  "serve \"x\" {\n  port = 9009\n  bind = \"0.0.0.0\"\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"" + apiKey + "\"] }\n}",
			check: func(t *testing.T, c *Config) {
				if s := c.Serves[0]; s.Bind != "0.0.0.0" || s.Addr() != "0.0.0.0:9009" {
					t.Errorf("serve = %+v", s)
				}
			},
		},
		{
			name: "IPv6 bind",
			src:  "serve \"x\" {\n  port = 9009\n  bind = \"::1\"\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"" + apiKey + "\"] }\n}",
			check: func(t *testing.T, c *Config) {
				if got := c.Serves[0].Addr(); got != "[::1]:9009" {
					t.Errorf("addr = %q", got)
				}
			},
		},
		{
			name: "a host without atproto gets the default sign-in",
			src: `serve "x" {
  port    = 9009
  backend = "nomad:web"
  require_atproto {}
}
host "x.example.com" {
  name    = "X"
  backend = "serving:x"
}`,
			check: func(t *testing.T, c *Config) {
				h := c.Hosts[0]
				if h.ATProto == nil || h.ATProto.ClientName != "X" || h.ATProto.Scope() != "atproto" {
					t.Errorf("atproto = %+v", h.ATProto)
				}
				if h.Backend.Kind != BackendNomad || h.Backend.Service != "web" || h.Serving != "x" {
					t.Errorf("backend = %+v, serving %q", h.Backend, h.Serving)
				}
				if h.Access == nil || h.Access.Rules == nil || !h.Access.Rules.OpenToAnyAccount() {
					t.Errorf("access = %+v", h.Access)
				}
			},
		},
		{
			name: "keys alone: the hosts in front offer no sign-in",
			src: `serve "ci" {
  port    = 9009
  backend = "localhost:1"
  apikey_auth { users = ["` + apiKey + `"] }
}
host "ci.example.com" { backend = "serving:ci" }`,
			check: func(t *testing.T, c *Config) {
				h := c.Hosts[0]
				if h.ATProto != nil {
					t.Errorf("atproto = %+v, want none", h.ATProto)
				}
				if h.Access == nil || h.Access.Rules != nil || len(h.Access.APIKeys) != 1 || h.Access.APIKeys[0].Name != "ci" {
					t.Errorf("access = %+v", h.Access)
				}
			},
		},
		{
			name: "several hosts in file order, and a serve block for each",
			src: `serve "a" {
  port    = 9009
  backend = "localhost:1"
  require_atproto {}
}
serve "b" {
  name    = "B"
  port    = 9010
  backend = "localhost:2"
  require_atproto {}
  apikey_auth { users = ["` + apiKey + `"] }
}
host "z.example.com" { backend = "serving:a" }
host "y.example.com" { backend = "serving:b" }
host "x.example.com" { backend = "serving:a" }
host "w.example.com" { backend = "localhost:3" }`,
			check: func(t *testing.T, c *Config) {
				a, _ := c.Serve("a")
				b, _ := c.Serve("b")
				if !slices.Equal(a.Hosts, []string{"z.example.com", "x.example.com"}) || !slices.Equal(b.Hosts, []string{"y.example.com"}) {
					t.Errorf("hosts: a %q, b %q", a.Hosts, b.Hosts)
				}
				if b.ShortName != "B" || b.Access.Rules == nil || len(b.Access.APIKeys) != 1 {
					t.Errorf("serve b = %+v", b)
				}
				if h, _ := c.Host("w.example.com"); h.Serving != "" || h.Access != nil {
					t.Errorf("a host of its own = %+v", h)
				}
			},
		},
		{
			name: "a serve port beside a call on another address",
			src: `call "a" {
  port     = 9009
  bind     = "10.0.0.5"
  endpoint = "@"
}
serve "x" {
  port    = 9009
  bind    = "10.0.0.6"
  backend = "localhost:1"
  apikey_auth { users = ["` + apiKey + `"] }
}`,
			check: func(t *testing.T, c *Config) {
				if c.Serves[0].Addr() != "10.0.0.6:9009" || c.Calls[0].Addr() != "10.0.0.5:9009" {
					t.Errorf("serve %s, call %s", c.Serves[0].Addr(), c.Calls[0].Addr())
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parse(t, tt.src)
			if diags.HasErrors() || cfg == nil {
				t.Fatalf("does not load:\n%s", strings.Join(diagLines(diags), "\n"))
			}
			if len(diags) != 0 {
				t.Errorf("diagnostics:\n%s", strings.Join(diagLines(diags), "\n"))
			}
			tt.check(t, cfg)
		})
	}
}

// Each bad serve configuration fails with an error at line:col that
// contains want.
func TestServeBad(t *testing.T) {
	const keys = "  apikey_auth { users = [\"" + apiKey + "\"] }\n"
	const rules = "  require_atproto {}\n"
	serve := func(label, body string) string {
		return "serve \"" + label + "\" {\n" + body + "}\n"
	}
	tests := []struct {
		name, src, pos, want string
	}{
		{"unknown serve, none defined",
			"host \"a.example.com\" {\n  backend = \"serving:nomad\"\n}",
			"2:13", `serving:nomad names a serve block, and there is none: add serve "nomad" { port = 9009, backend = "127.0.0.1:4646", require_atproto { … } }, or write the service's address here`},
		{"unknown serve among others",
			serve("b", "  port = 9009\n  backend = \"localhost:1\"\n"+rules) + serve("a", "  port = 9010\n  backend = \"localhost:2\"\n"+keys) + "host \"a.example.com\" {\n  backend = \"serving:nomad\"\n}",
			"12:13", `There is no serve "nomad"; the serve blocks are "b", "a". Write backend = "serving:<label>" with one of them, or add serve "nomad" { … }.`},
		{"bad label in serving:",
			"host \"a.example.com\" {\n  backend = \"serving:-x\"\n}",
			"2:13", `"-x" is not the label of a serve block`},
		{"duplicate serve",
			serve("x", "  port = 9009\n  backend = \"localhost:1\"\n"+keys) + serve("x", "  port = 9010\n  backend = \"localhost:2\"\n"+keys),
			"6:7", `Serve "x" is already defined at test.hcl:1. Give each serve block a label of its own.`},
		{"no access rules",
			serve("x", "  port = 9009\n  backend = \"localhost:1\"\n"),
			"1:1", `Serve "x" would let anyone in. Add require_atproto { handles = ["alice.example.com"] } for accounts that sign in on a host with backend = "serving:x", apikey_auth { users = "ci:<bcrypt hash>" }`},
		{"serving: as a serve block's backend",
			serve("x", "  port = 9009\n  backend = \"serving:y\"\n"+keys),
			"3:13", `A serve block's backend is the service's address, such as backend = "127.0.0.1:4646" or "nomad:<service>". serving:y is how a host routes to a serve block`},
		{"bad backend",
			serve("x", "  port = 9009\n  backend = \"localhost\"\n"+keys),
			"3:13", `write "host:port"`},
		{"missing backend",
			serve("x", "  port = 9009\n"+keys),
			"1:1", `Serve "x" needs the address of the service it guards, as in backend = "127.0.0.1:4646"`},
		{"missing port",
			serve("x", "  backend = \"localhost:1\"\n"+keys),
			"1:1", `Serve "x" listens on a port of its own; write one, as in port = 9009.`},
		{"port 0",
			serve("x", "  port = 0\n  backend = \"localhost:1\"\n"+keys),
			"2:10", `0 is not a port from 1 to 65535; write, for example, port = 9009.`},
		{"port too large",
			serve("x", "  port = 70000\n  backend = \"localhost:1\"\n"+keys),
			"2:10", `70000 is not a port from 1 to 65535`},
		{"port not a number",
			serve("x", "  port = \"nine\"\n  backend = \"localhost:1\"\n"+keys),
			"2:11", `a number is required`},
		{"bad bind",
			serve("x", "  port = 9009\n  bind = \"everywhere\"\n  backend = \"localhost:1\"\n"+keys),
			"3:10", `"everywhere" is not an IP address. Leave bind out for "127.0.0.1" (this machine only)`},
		{"bad serve label",
			serve("no way", "  port = 9009\n  backend = \"localhost:1\"\n"+keys),
			"1:7", `"no way" cannot be named in a host's backend = "serving:…"`},
		{"host with serving: and require_atproto",
			serve("x", "  port = 9009\n  backend = \"localhost:1\"\n"+rules) + "host \"a.example.com\" {\n  backend = \"serving:x\"\n  require_atproto { handles = [\"alice.example.com\"] }\n}",
			"8:3", `the serve block's rules apply to this host; move them into serve "x" (test.hcl:1)`},
		{"host with serving: and apikey_auth",
			serve("x", "  port = 9009\n  backend = \"localhost:1\"\n"+rules) + "host \"a.example.com\" {\n  backend = \"serving:x\"\n" + keys + "}",
			"8:3", `the serve block's rules apply to this host; move them into serve "x"`},
		{"sign-in in front of keys alone",
			serve("x", "  port = 9009\n  backend = \"localhost:1\"\n"+keys) + "host \"a.example.com\" {\n  backend = \"serving:x\"\n  atproto {}\n}",
			"8:3", `Serve "x" (test.hcl:1) has apikey_auth alone, so only API keys get in, and this atproto block's sign-in would lead nowhere. To let signed-in accounts in too, add require_atproto {} to serve "x"`},
		{"port of a call",
			"call \"a\" {\n  port = 9009\n  endpoint = \"@\"\n}\n" + serve("x", "  port = 9009\n  backend = \"localhost:1\"\n"+keys),
			"6:10", `Port 9009 is already used by call "a"; give serve "x" a port of its own.`},
		{"port of the ingress http listener",
			"ingress { http = 8080 }\n" + serve("x", "  port = 8080\n  backend = \"localhost:1\"\n"+keys),
			"3:10", `Port 8080 is already used by the ingress http listener; give serve "x" a port of its own.`},
		{"port of the ingress https listener",
			"ingress { https = \"0.0.0.0:8443\" }\nhost \"a.example.com\" { backend = \"localhost:1\" }\n" + serve("x", "  port = 8443\n  backend = \"localhost:1\"\n"+keys),
			"4:10", `Port 8443 is already used by the ingress https listener; give serve "x" a port of its own.`},
		{"port of the admin listener",
			serve("x", "  port = 9901\n  backend = \"localhost:1\"\n"+keys),
			"2:10", `Port 9901 is already used by the admin listener; give serve "x" a port of its own.`},
		{"two serves on one port",
			serve("x", "  port = 9009\n  backend = \"localhost:1\"\n"+keys) + serve("y", "  port = 9009\n  bind = \"0.0.0.0\"\n  backend = \"localhost:2\"\n"+keys),
			"7:10", `Port 9009 is already used by serve "x"; give serve "y" a port of its own.`},
		{"misspelt serve block",
			"serv \"x\" {\n  port = 9009\n}",
			"1:1", `Did you mean "serve"?`},
		{"misspelt attribute in a serve block",
			serve("x", "  port = 9009\n  bakend = \"localhost:1\"\n"+keys),
			"3:3", `Did you mean "backend"?`},
		{"an attribute of another block",
			serve("x", "  port = 9009\n  backend = \"localhost:1\"\n  endpoint = \"@\"\n"+keys),
			"4:3", `"endpoint" belongs in a call block.`},
		{"bad rule, read as a host's",
			serve("x", "  port = 9009\n  backend = \"localhost:1\"\n  require_atproto { handles = [\"alice\"] }\n"),
			"4:32", `is not a handle`},
		{"no keys, read as a host's",
			serve("x", "  port = 9009\n  backend = \"localhost:1\"\n  apikey_auth { users = \"\" }\n"),
			"4:3", `lists no users`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parse(t, tt.src)
			if !diags.HasErrors() || cfg != nil {
				t.Fatalf("config loaded; want an error containing %q", tt.want)
			}
			if lines := diagLines(diags); !findDiag(lines, "test.hcl", tt.pos, "error", tt.want) {
				t.Errorf("no error at test.hcl:%s containing %q; got:\n%s", tt.pos, tt.want, strings.Join(lines, "\n"))
			}
		})
	}
}

// A serve block whose require_atproto no host offers loads, with a
// warning at the block; one with keys alone needs no host.
func TestServeWithoutHost(t *testing.T) {
	tests := []struct {
		name, src string
		pos       string // "" when no warning is due
	}{
		{"require_atproto and no host",
			"serve \"nomad\" {\n  port = 9009\n  backend = \"localhost:1\"\n  require_atproto { handles = [\"alice.example.com\"] }\n}",
			"4:3"},
		{"require_atproto and keys, no host",
			"serve \"nomad\" {\n  port = 9009\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"" + apiKey + "\"] }\n  require_atproto {}\n}",
			"5:3"},
		{"keys alone and no host",
			"serve \"nomad\" {\n  port = 9009\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"" + apiKey + "\"] }\n}",
			""},
		{"the host in front is a duplicate, dropped",
			"serve \"nomad\" {\n  port = 9009\n  backend = \"localhost:1\"\n  require_atproto {}\n}\nhost \"a.example.com\" { backend = \"localhost:2\" }\nhost \"a.example.com\" { backend = \"serving:nomad\" }",
			"4:3"},
	}
	const want = `warning: Serve block without a host: Nobody can sign in to serve "nomad": reached on its port it admits API keys and public paths only. Route a host to it with backend = "serving:nomad", or remove require_atproto.`
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parse(t, tt.src)
			lines := diagLines(diags)
			if tt.pos == "" {
				if cfg == nil || len(diags) != 0 {
					t.Fatalf("want no diagnostics; got:\n%s", strings.Join(lines, "\n"))
				}
				if len(cfg.Serves[0].Hosts) != 0 {
					t.Errorf("hosts = %q", cfg.Serves[0].Hosts)
				}
				return
			}
			if !slices.Contains(lines, "test.hcl:"+tt.pos+": "+want) {
				t.Errorf("no warning at test.hcl:%s; got:\n%s", tt.pos, strings.Join(lines, "\n"))
			}
			if strings.Contains(tt.name, "duplicate") {
				return // the duplicate host is an error
			}
			if cfg == nil || diags.HasErrors() || len(diags) != 1 {
				t.Errorf("want a config and one warning; got:\n%s", strings.Join(lines, "\n"))
			}
		})
	}
}

// A serve block defined in two files is an error at the second, naming
// the first, as a host is.
func TestServeInTwoFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	block := "serve \"x\" {\n  port    = %s\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"" + apiKey + "\"] }\n}\n"
	first := write("10-first.hcl", strings.Replace(block, "%s", "9009", 1))
	second := write("20-second.hcl", "# the same label again\n"+strings.Replace(block, "%s", "9010", 1))
	for _, paths := range [][]string{{first, second}, {dir}} {
		cfg, diags := LoadAll(paths, Options{LookupEnv: noEnv})
		lines := diagLines(diags)
		if cfg != nil || !findDiag(lines, second, "2:7", "error", `Serve "x" is already defined at `+first+":1") {
			t.Errorf("LoadAll(%q):\n%s", paths, strings.Join(lines, "\n"))
		}
	}
	// A host in one file routes to a serve block in another.
	write("20-second.hcl", "host \"x.example.com\" { backend = \"serving:x\" }\n")
	cfg, diags := LoadAll([]string{dir}, Options{LookupEnv: noEnv})
	if diags.HasErrors() {
		t.Fatalf("load:\n%s", strings.Join(diagLines(diags), "\n"))
	}
	if s, _ := cfg.Serve("x"); !slices.Equal(s.Hosts, []string{"x.example.com"}) {
		t.Errorf("serve x hosts = %q", s.Hosts)
	}
}

func TestParseBackendServing(t *testing.T) {
	tests := []struct {
		in, label string
		bad       bool
	}{
		{in: "serving:nomad", label: "nomad"},
		{in: "  serving:my_ui.v2 ", label: "my_ui.v2"},
		{in: "serving:", bad: true},
		{in: "serving:-x", bad: true},
		{in: "serving:a b", bad: true},
		{in: "serving:" + strings.Repeat("a", 64), bad: true},
	}
	for _, tt := range tests {
		b, err := ParseBackend(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("ParseBackend(%q) = %+v, want error", tt.in, b)
		case tt.bad && strings.Contains(err.Error(), "not in ioproxy yet"):
			t.Errorf("ParseBackend(%q): %v", tt.in, err)
		case !tt.bad && err != nil:
			t.Errorf("ParseBackend(%q): %v", tt.in, err)
		case !tt.bad && (b != Backend{Kind: BackendServing, Serving: tt.label, Raw: tt.in}):
			t.Errorf("ParseBackend(%q) = %+v", tt.in, b)
		}
	}
}
