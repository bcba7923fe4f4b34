package config

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

func noEnv(string) (string, bool) { return "", false }

func parse(t *testing.T, src string) (*Config, hcl.Diagnostics) {
	t.Helper()
	return Parse([]byte(src), "test.hcl", Options{LookupEnv: noEnv})
}

func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot find test file")
	}
	return filepath.Dir(filepath.Dir(file))
}

func TestExamplesLoad(t *testing.T) {
	for _, name := range []string{"io.hcl", "local.hcl", "internal-tool.hcl", "serve.hcl", "oauth-google.hcl"} {
		t.Run(name, func(t *testing.T) {
			// With the Google client that oauth-google.hcl reads (an unset
			// one is a warning, see TestOAuthExampleFile).
			cfg, diags := Load(filepath.Join(repoRoot(t), "examples", name), Options{LookupEnv: googleEnv})
			if diags.HasErrors() || cfg == nil {
				var buf bytes.Buffer
				_ = WriteDiagnostics(&buf, diags)
				t.Fatalf("examples/%s does not load:\n%s", name, buf.String())
			}
			if len(diags) != 0 {
				t.Errorf("examples/%s has warnings: %v", name, diags)
			}
		})
	}
}

func TestIOExample(t *testing.T) {
	cfg, diags := Load(filepath.Join(repoRoot(t), "examples", "io.hcl"), Options{LookupEnv: noEnv})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	h, ok := cfg.Host("Statusphere.Example.COM:443")
	if !ok {
		t.Fatal("host not found by case-insensitive name with port")
	}
	if h.Backend.Kind != BackendNomad || h.Backend.Service != "statusphere" {
		t.Errorf("backend = %+v, want nomad service statusphere", h.Backend)
	}
	if h.ATProto == nil || h.ATProto.Scope() != "atproto repo:xyz.statusphere.status" || h.ATProto.ClientName != "Statusphere" {
		t.Errorf("atproto = %+v", h.ATProto)
	}
	if h.TLS.Mode != TLSACME {
		t.Errorf("public host TLS mode = %q, want acme", h.TLS.Mode)
	}
	if len(cfg.Calls) != 1 {
		t.Fatalf("calls = %d", len(cfg.Calls))
	}
	c := cfg.Calls[0]
	if c.Endpoint.Kind != EndpointPDS || c.Addr() != "127.0.0.1:7000" || len(c.Operations) != 3 {
		t.Errorf("call = %+v", c)
	}
	if op, ok := c.Operation("POST", "/xrpc/com.atproto.repo.createRecord"); !ok || op.Name != "CreateRecord" {
		t.Errorf("operation match = %+v %v", op, ok)
	}
	if _, ok := c.Operation("GET", "/xrpc/com.atproto.repo.createRecord"); ok {
		t.Error("operation matched the wrong method")
	}
	if cfg.Ingress.HTTPAddr != ":80" || cfg.Ingress.HTTPSAddr != ":443" || cfg.DataDir != "./data" || cfg.Admin.Listen != "127.0.0.1:9901" {
		t.Errorf("defaults = %+v %+v %q", cfg.Ingress, cfg.Admin, cfg.DataDir)
	}
}

func TestLocalExample(t *testing.T) {
	cfg, diags := Load(filepath.Join(repoRoot(t), "examples", "local.hcl"), Options{LookupEnv: noEnv})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	h, _ := cfg.Host("localhost")
	if h.ATProto == nil || h.ATProto.Local != 9000 || !h.ServesHTTP() || h.TLS.Mode != TLSSelfSigned {
		t.Errorf("localhost host = %+v", h)
	}
	if h.Backend.URL.String() != "http://localhost:3000" {
		t.Errorf("backend = %s", h.Backend.URL)
	}
	var found bool
	for _, c := range cfg.Calls {
		if c.Label == "statusphere" {
			found = true
			if c.Endpoint.Kind != EndpointHost || c.Endpoint.Host != "localhost" || !c.Insecure || c.Port != 9000 {
				t.Errorf("statusphere call = %+v", c)
			}
		}
	}
	if !found {
		t.Error("call statusphere missing")
	}
}

func TestGoodConfigs(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "call named @ with NSID operations",
			src: `
host "app.example.org" { backend = "http://10.0.0.5:8080/base/" }
call "@" {
  name = "@"
  port = 7000
  endpoint = "@"
  operation "com.atproto.repo.createRecord" { method = "POST" }
  operation "com.atproto.repo.listRecords" {
    method = "GET"
    path = "/xrpc/com.atproto.repo.listRecords"
  }
  operation "blobs" {
    method = "POST"
    path = "/xrpc/com.atproto.repo."
  }
}`,
			check: func(t *testing.T, c *Config) {
				call := c.Calls[0]
				if call.Label != "@" || call.ShortName != "@" {
					t.Errorf("call = %+v", call)
				}
				if op, ok := call.Operation("POST", "/xrpc/com.atproto.repo.createRecord"); !ok || op.Name != "com.atproto.repo.createRecord" {
					t.Errorf("NSID operation did not default its path: %+v", call.Operations)
				}
				if c.Hosts[0].Backend.URL.String() != "http://10.0.0.5:8080/base" {
					t.Errorf("backend = %s", c.Hosts[0].Backend.URL)
				}
			},
		},
		{
			name: "prefix operations and all top-level settings",
			src: `
data_dir = "/var/lib/ioproxy"
ingress {
  http = "127.0.0.1:8080"
  https = 8443
  trusted_proxies = ["10.0.0.0/8", "192.168.1.7"]
}
identity {
  plc_url = "https://plc.example.net/"
  handle_resolver = "https://bsky.social"
}
nomad {
  address = "http://nomad.internal:4646"
  token = env("NOMAD_TOKEN", "from-default")
  refresh = "30s"
}
admin {
  listen = ""
  hosts  = ["admin.internal"]
  pprof  = true
}
log {
  level = "debug"
  format = "json"
}
host "internal.example.org" {
  backend = "localhost:3000"
  atproto {}
  require_atproto {
    dids         = ["did:plc:ewvi7nxzyoun6zhxrhs64oiz"]
    handles      = ["Alice.Example.com", "*.team.example.com"]
    public_paths = ["/healthz", "/static/*"]
  }
  apikey_auth {
    users = <<EOT
# CI and the deploy bot
ci:$2y$05$5Q/IvMRNNkd1Tuk2rBvZ5OF8eQK.gTYpvUAaN5gS0SrTqXMa6a1r.
deploy:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=
EOT
  }
  tls { mode = "off" }
}
call "api" {
  port = 7001
  bind = "10.1.2.3"
  endpoint = "api.example.net:8443"
  operations_only = true
  max_body_bytes = 1024
  timeout = "5s"
  operation "records" {
    method = "GET"
    path = "/xrpc/"
  }
}`,
			check: func(t *testing.T, c *Config) {
				if c.Ingress.HTTPAddr != "127.0.0.1:8080" || c.Ingress.HTTPSAddr != ":8443" || len(c.Ingress.TrustedProxies) != 2 {
					t.Errorf("ingress = %+v", c.Ingress)
				}
				if c.Identity.PLCURL != "https://plc.example.net" {
					t.Errorf("plc url = %q", c.Identity.PLCURL)
				}
				if c.Nomad.Token != "from-default" || c.Nomad.Refresh != 30*time.Second {
					t.Errorf("nomad = %+v", c.Nomad)
				}
				if c.Admin.Listen != "" || len(c.Admin.Hosts) != 1 || !c.Admin.Pprof || c.Log.Format != "json" || c.Log.Level.String() != "DEBUG" {
					t.Errorf("admin/log = %+v %+v", c.Admin, c.Log)
				}
				h := c.Hosts[0]
				if h.ATProto.Scope() != "atproto" || h.TLS.Mode != TLSOff || !h.ServesHTTP() || h.ServesHTTPS() {
					t.Errorf("host = %+v %+v", h, h.ATProto)
				}
				rules := h.Access.Rules
				if !slices.Equal(rules.DIDs, []string{"did:plc:ewvi7nxzyoun6zhxrhs64oiz"}) || !slices.Equal(rules.Handles, []string{"alice.example.com"}) ||
					!slices.Equal(rules.Domains, []string{".team.example.com"}) || len(rules.Public) != 2 || !rules.Public[1].Prefix {
					t.Errorf("require_atproto = %+v", rules)
				}
				if keys := h.Access.APIKeys; len(keys) != 2 || keys[0].Name != "ci" || keys[1].Name != "deploy" {
					t.Errorf("apikey_auth = %+v", keys)
				}
				call := c.Calls[0]
				if call.Addr() != "10.1.2.3:7001" || call.Endpoint.URL.String() != "https://api.example.net:8443" || call.MaxBodyBytes != 1024 || call.Timeout != 5*time.Second {
					t.Errorf("call = %+v", call)
				}
				if _, ok := call.Operation("GET", "/xrpc/anything"); !ok {
					t.Error("prefix operation did not match")
				}
			},
		},
		{
			name: "connection limits, body timeouts, service proxies and call hosts",
			src: `
ingress {
  max_connections   = 500
  body_idle_timeout = "1m"
  body_min_rate     = 1024
}
sessions {
  max_sessions    = 2000
  max_per_account = 3
}
host "a.example.com" {
  backend = "localhost:1"
  require_atproto {
    handles        = ["alice.example.com"]
    handle_max_age = "30m"
  }
}
call "pds" {
  port            = 7000
  endpoint        = "@"
  max_connections = 64
  service_proxies = ["did:web:api.bsky.app#bsky_appview", "did:plc:ar7c4by46qjdydhdevvrndac#atproto_labeler"]
  hosts           = ["IOProxy.Service.Consul.", "calls.internal"]
}`,
			check: func(t *testing.T, c *Config) {
				if in := c.Ingress; in.MaxConnections != 500 || in.BodyIdleTimeout != time.Minute || in.BodyMinRate != 1024 {
					t.Errorf("ingress = %+v", in)
				}
				if c.Sessions != (Sessions{Store: StoreBolt, KeyPrefix: DefaultKeyPrefix, MaxSessions: 2000, MaxPerAccount: 3}) {
					t.Errorf("sessions = %+v", c.Sessions)
				}
				if got := c.Hosts[0].Access.Rules.HandleMaxAge; got != 30*time.Minute {
					t.Errorf("handle_max_age = %s", got)
				}
				call := c.Calls[0]
				if call.MaxConnections != 64 {
					t.Errorf("call max_connections = %d", call.MaxConnections)
				}
				want := []string{"did:web:api.bsky.app#bsky_appview", "did:plc:ar7c4by46qjdydhdevvrndac#atproto_labeler"}
				if !call.ServiceProxiesSet || !slices.Equal(call.ServiceProxies, want) {
					t.Errorf("service_proxies = %q (set %v)", call.ServiceProxies, call.ServiceProxiesSet)
				}
				if !call.AllowsServiceProxy("did:web:api.bsky.app#bsky_appview") || call.AllowsServiceProxy("did:web:evil.example#bsky_appview") {
					t.Error("AllowsServiceProxy does not follow service_proxies")
				}
				if !slices.Equal(call.Hosts, []string{"ioproxy.service.consul", "calls.internal"}) {
					t.Errorf("call hosts = %q", call.Hosts)
				}
			},
		},
		{
			name: "body_min_rate = 0 turns the check off",
			src: `
ingress { body_min_rate = 0 }
host "a.example.com" { backend = "localhost:1" }`,
			check: func(t *testing.T, c *Config) {
				if c.Ingress.BodyMinRate != 0 {
					t.Errorf("body_min_rate = %d, want 0", c.Ingress.BodyMinRate)
				}
			},
		},
		{
			name: "an empty service_proxies allows no Atproto-Proxy",
			src: `
call "pds" {
  port            = 7000
  endpoint        = "@"
  service_proxies = []
}`,
			check: func(t *testing.T, c *Config) {
				call := c.Calls[0]
				if !call.ServiceProxiesSet || call.ServiceProxies == nil || len(call.ServiceProxies) != 0 {
					t.Errorf("service_proxies = %#v (set %v), want empty and set", call.ServiceProxies, call.ServiceProxiesSet)
				}
				if call.AllowsServiceProxy("did:web:api.bsky.app#bsky_appview") {
					t.Error("an empty service_proxies allowed a value")
				}
			},
		},
		{
			name: "a small max_sessions lowers the default per-account limit",
			src:  `sessions { max_sessions = 5 }`,
			check: func(t *testing.T, c *Config) {
				if c.Sessions != (Sessions{Store: StoreBolt, KeyPrefix: DefaultKeyPrefix, MaxSessions: 5, MaxPerAccount: 5}) {
					t.Errorf("sessions = %+v", c.Sessions)
				}
			},
		},
		{
			name: "a Redis store with a key to rotate to",
			src: `
sessions {
  store          = "redis"
  url            = "rediss://:s3cret@redis.service.consul:6380/2"
  key_prefix     = "app1:"
  encryption_key = ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "HxceHRwbGhkYFxYVFBMSERAPDg0MCwoJCAcGBQQDAgE="]
}`,
			check: func(t *testing.T, c *Config) {
				s := c.Sessions
				if s.Store != StoreRedis || s.URL != "rediss://:s3cret@redis.service.consul:6380/2" || s.KeyPrefix != "app1:" {
					t.Errorf("sessions = %+v", s)
				}
				if s.EncryptionKey == nil || s.EncryptionKey.Len() != 2 {
					t.Fatalf("encryption_key = %v, want two keys", s.EncryptionKey)
				}
			},
		},
		{
			name: "one encryption_key seals the bbolt store",
			src:  `sessions { encryption_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" }`,
			check: func(t *testing.T, c *Config) {
				if c.Sessions.Store != StoreBolt || c.Sessions.EncryptionKey == nil || c.Sessions.EncryptionKey.Len() != 1 {
					t.Errorf("sessions = %+v", c.Sessions)
				}
			},
		},
		{
			name: "env reads the environment",
			src: `
nomad { token = env("IOPROXY_TEST_TOKEN") }
host "a.example.com" { backend = "nomad:web" }`,
			check: func(t *testing.T, c *Config) {
				if c.Nomad.Token != "" {
					t.Errorf("unset env gave %q", c.Nomad.Token)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parse(t, tt.src)
			if diags.HasErrors() {
				var buf bytes.Buffer
				_ = WriteDiagnostics(&buf, diags)
				t.Fatalf("unexpected errors:\n%s", buf.String())
			}
			tt.check(t, cfg)
		})
	}
}

// Settings left out get their documented defaults.
func TestDefaults(t *testing.T) {
	const src = `
ingress {}
sessions {}
host "a.example.com" {
  backend = "localhost:1"
  require_atproto { handles = ["alice.example.com"] }
}
call "pds" {
  port     = 7000
  endpoint = "@"
}`
	withBlocks, diags := parse(t, src)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	// Without ingress and sessions blocks, the same defaults.
	bare, diags := parse(t, `call "pds" {
  port     = 7000
  endpoint = "@"
}`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	tests := []struct {
		name string
		got  func(c *Config) any
		want any
	}{
		{"ingress max_connections", func(c *Config) any { return c.Ingress.MaxConnections }, 10000},
		{"ingress body_idle_timeout", func(c *Config) any { return c.Ingress.BodyIdleTimeout }, 20 * time.Second},
		{"ingress body_min_rate", func(c *Config) any { return c.Ingress.BodyMinRate }, int64(256)},
		{"ingress write_idle_timeout", func(c *Config) any { return c.Ingress.WriteIdleTimeout }, time.Minute},
		{"ingress max_connections_per_client", func(c *Config) any { return c.Ingress.MaxConnectionsPerClient }, 500},
		{"sessions", func(c *Config) any { return c.Sessions }, Sessions{Store: StoreBolt, KeyPrefix: DefaultKeyPrefix, MaxSessions: 100000, MaxPerAccount: 10}},
		{"call max_connections", func(c *Config) any { return c.Calls[0].MaxConnections }, 1024},
		{"call service_proxies", func(c *Config) any { return c.Calls[0].ServiceProxies == nil && !c.Calls[0].ServiceProxiesSet }, true},
		{"call forwards any Atproto-Proxy", func(c *Config) any { return c.Calls[0].AllowsServiceProxy("did:web:api.bsky.app#bsky_appview") }, true},
		{"call hosts", func(c *Config) any { return c.Calls[0].Hosts == nil }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []*Config{withBlocks, bare} {
				if got := tt.got(c); got != tt.want {
					t.Errorf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
	// 0 leaves the access package's DefaultHandleMaxAge in force.
	if got := withBlocks.Hosts[0].Access.Rules.HandleMaxAge; got != 0 {
		t.Errorf("handle_max_age = %s, want 0", got)
	}
}

func TestEnvFunction(t *testing.T) {
	env := map[string]string{"TOKEN": "s3cret"}
	cfg, diags := Parse([]byte(`nomad { token = env("TOKEN") }`), "t.hcl", Options{LookupEnv: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	if diags.HasErrors() || cfg.Nomad.Token != "s3cret" {
		t.Fatalf("token = %v %v", cfg, diags)
	}
}

// Each bad config must fail with a diagnostic at the given line:col whose
// text contains want.
func TestBadConfigs(t *testing.T) {
	tests := []struct {
		name string
		src  string
		pos  string // "line:col" of the diagnostic
		want string
	}{
		{"unknown attribute with suggestion", "host \"a.example.com\" {\n  backnd = \"localhost:3000\"\n  backend = \"localhost:3000\"\n}", "2:3", `Did you mean "backend"?`},
		{"unknown block", "hots \"a.example.com\" {\n}", "1:1", `Unsupported block type`},
		{"missing call port", "call \"x\" {\n  endpoint = \"@\"\n}", "1:10", `The argument "port" is required`},
		{"two calls on one port", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n}\ncall \"b\" {\n  port = 7000\n  endpoint = \"@\"\n}", "6:10", `Port 7000 is already used by call "a"`},
		{"call port equals ingress port", "ingress { http = 8080 }\ncall \"a\" {\n  port = 8080\n  endpoint = \"@\"\n}", "3:10", `already used by the ingress http listener`},
		{"call port equals admin port", "call \"a\" {\n  port = 9901\n  endpoint = \"@\"\n}", "2:10", `already used by the admin listener`},
		{"duplicate host names", "host \"A.example.com\" { backend = \"localhost:1\" }\nhost \"a.example.com.\" { backend = \"localhost:2\" }", "2:6", `already defined at test.hcl:1`},
		{"backend without port", "host \"a.example.com\" { backend = \"localhost\" }", "1:34", `write "host:port"`},
		{"backend with bad scheme", "host \"a.example.com\" { backend = \"ftp://x\" }", "1:34", `use http:// or https://`},
		{"backend with bad port", "host \"a.example.com\" { backend = \"localhost:99999\" }", "1:34", `port "99999"`},
		{"nomad backend without service", "host \"a.example.com\" { backend = \"nomad:\" }", "1:34", `not a Nomad service name`},
		{"lower-case method", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  operation \"x\" {\n    method = \"post\"\n    path = \"/x\"\n  }\n}", "5:14", `write method = "POST"`},
		{"nonsense method", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  operation \"x\" {\n    method = \"GET /x\"\n    path = \"/x\"\n  }\n}", "5:14", `is not an HTTP method`},
		{"relative operation path", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  operation \"x\" {\n    method = \"GET\"\n    path = \"xrpc/x\"\n  }\n}", "6:12", `is not a path`},
		{"operation without path", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  operation \"list\" { method = \"GET\" }\n}", "4:3", `needs a path`},
		{"bad ingress port", "ingress { http = 0 }", "1:18", `not a port from 1 to 65535`},
		{"bad ingress address", "ingress { http = \"example.com:80\" }", "1:18", `is not an IP address`},
		{"http and https share a port", "ingress {\n  http = 8080\n  https = \"127.0.0.1:8080\"\n}\nhost \"a.example.com\" { backend = \"localhost:1\" }", "3:11", `cannot share port 8080`},
		{"scopes without atproto", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  atproto { scopes = [\"transition:generic\"] }\n}", "3:22", `requires the scope "atproto"`},
		{"local port with nothing listening", "host \"localhost\" {\n  backend = \"localhost:3000\"\n  atproto {\n    local = 9000\n  }\n}", "4:13", `http://127.0.0.1:9000/@/callback`},
		{"insecure plc url", "identity { plc_url = \"http://plc.example.com\" }", "1:22", `set allow_insecure = true`},
		{"bad endpoint", "call \"a\" {\n  port = 7000\n  endpoint = \"ftp://x\"\n}", "3:14", `not an http(s) URL`},
		{"bad log level", "log { level = \"loud\" }", "1:15", `write one of "debug"`},
		{"bad tls mode", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  tls { mode = \"letsencrypt\" }\n}", "3:16", `write mode = "acme"`},
		{"missing certificate file", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  tls {\n    cert_file = \"/nonexistent/cert.pem\"\n    key_file = \"/nonexistent/key.pem\"\n  }\n}", "4:17", `Cannot read cert_file`},
		{"acme for localhost", "host \"localhost\" {\n  backend = \"localhost:1\"\n  tls { mode = \"acme\" }\n}", "3:16", `use mode = "self_signed"`},
		{"bad host name", "host \"https://a.example.com\" { backend = \"localhost:1\" }", "1:6", `is not a host name`},
		{"operations_only without operations", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  operations_only = true\n}", "1:1", `has none`},
		{"bad bind", "call \"a\" {\n  port = 7000\n  bind = \"everywhere\"\n  endpoint = \"@\"\n}", "3:10", `is not an IP address`},
		{"duplicate ingress block", "ingress {}\ningress {}", "2:1", `Duplicate ingress block`},
		{"allowed_dids moved", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  atproto { allowed_dids = [\"did:plc:ewvi7nxzyoun6zhxrhs64oiz\"] }\n}", "3:13", `require_atproto { dids = ["did:plc:ewvi7nxzyoun6zhxrhs64oiz"] }`},
		{"signin_required moved", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  atproto {\n    signin_required = true\n  }\n}", "4:5", `write require_atproto {}`},
		{"handle in dids", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto {\n    dids = [\"did:plc:ewvi7nxzyoun6zhxrhs64oiz\", \"alice.bsky.social\"]\n  }\n}", "4:49", `a handle goes in handles`},
		{"short did:plc", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { dids = [\"did:plc:abc\"] }\n}", "3:29", `24 characters`},
		{"did with another method", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { dids = [\"did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme\"] }\n}", "3:29", `did:plc or did:web`},
		{"did in handles", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { handles = [\"did:plc:ewvi7nxzyoun6zhxrhs64oiz\"] }\n}", "3:32", `put it in dids`},
		{"bad handle", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { handles = [\"alice\"] }\n}", "3:32", `is not a handle`},
		{"bad handle pattern", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { handles = [\"alice.*.com\"] }\n}", "3:32", `"*.example.com"`},
		{"bare wildcard", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { handles = [\"*\"] }\n}", "3:32", `wrong place`},
		{"handles not a list", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { handles = \"alice.example.com\" }\n}", "3:31", `is a list of strings`},
		{"relative public path", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { public_paths = [\"healthz\"] }\n}", "3:37", `does not start with "/"`},
		{"public path with inner star", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { public_paths = [\"/a/*/b\"] }\n}", "3:37", `only a final "*"`},
		{"public path with dot segment", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { public_paths = [\"/static/../admin\"] }\n}", "3:37", `write "/admin"`},
		{"everything public", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { public_paths = [\"/*\"] }\n}", "3:37", `every path public`},
		{"public path under /@/", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { public_paths = [\"/@/signin\"] }\n}", "3:37", `always reachable`},
		{"plain-text API key", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  apikey_auth {\n    users = <<EOT\nci:$2y$05$5Q/IvMRNNkd1Tuk2rBvZ5OF8eQK.gTYpvUAaN5gS0SrTqXMa6a1r.\nbot:hunter2\nEOT\n  }\n}", "6:1", `plain-text secret`},
		{"API key entry without hash", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"ci\"] }\n}", "3:26", `is not a "name:hash" entry`},
		{"damaged bcrypt hash", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"ci:$2y$05$short\"] }\n}", "3:26", `is damaged`},
		{"apr1 API key hash", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"ci:$apr1$abc$def\"] }\n}", "3:26", `htpasswd -nbB ci`},
		{"duplicate API key name", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"ci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\", \"ci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\"] }\n}", "3:66", `already has an entry at test.hcl:3`},
		{"bad API key name", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"c i:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\"] }\n}", "3:26", `may hold only letters`},
		{"no API keys", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  apikey_auth { users = \"\" }\n}", "3:3", `lists no users`},
		{"keys beside sign-in without rules", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  atproto {}\n  apikey_auth { users = [\"ci:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\"] }\n}", "4:3", `add require_atproto {}`},
		{"missing backend", "host \"a.example.com\" {\n  atproto {}\n}", "1:1", `needs a backend`},
		{"env with too many arguments", "nomad { token = env(\"A\", \"b\", \"c\") }", "1:17", `at most one default`},
		{"ACME CA that requires an email", "tls {\n  acme { directory = \"https://acme.zerossl.com/v2/DV90\" }\n}\nhost \"a.example.com\" { backend = \"localhost:1\" }", "2:22", `ZeroSSL issues certificates only to accounts with a contact email`},
		{"client_uri on another host", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  atproto { client_uri = \"https://b.example.com/\" }\n}", "3:26", `client_uri must be on this host`},
		{"attribute of another block", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  listen = \"x\"\n}", "4:3", `"listen" belongs in an admin block`},
		{"syntax error", "host \"a\" {", "1:10", `Unclosed configuration block`},
		{"ingress max_connections zero", "ingress { max_connections = 0 }", "1:29", `0 is not a limit: max_connections is how many connections each ingress listener (http and https) holds open at once, past which ioproxy answers 503. Write a number of at least 1, such as max_connections = 10000`},
		{"ingress max_connections negative", "ingress { max_connections = -5 }", "1:29", `-5 is not a limit`},
		{"body_idle_timeout under a second", "ingress { body_idle_timeout = \"500ms\" }", "1:31", `"500ms" is not a duration of at least 1s; write, for example, body_idle_timeout = "20s".`},
		{"body_idle_timeout not a duration", "ingress { body_idle_timeout = \"soon\" }", "1:31", `"soon" is not a duration of at least 1s`},
		{"negative body_min_rate", "ingress { body_min_rate = -1 }", "1:27", `-1 is not a rate: body_min_rate is the slowest a request body may arrive, in bytes per second. Write a number such as body_min_rate = 256, or body_min_rate = 0 to turn the check off.`},
		{"negative max_connections_per_client", "ingress { max_connections_per_client = -3 }", "1:40", `-3 is not a limit: max_connections_per_client is how many connections one client address holds on each listener. Write a number such as max_connections_per_client = 500, or 0 to turn the share off.`},
		{"short write_idle_timeout", `ingress { write_idle_timeout = "10ms" }`, "1:32", `"10ms" is not a duration of at least 1s; write, for example, write_idle_timeout = "1m".`},
		{"call max_connections zero", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  max_connections = 0\n}", "4:21", `0 is not a limit: max_connections is how many connections the calling port holds open at once. Write a number of at least 1, such as max_connections = 1024`},
		{"service proxy without service", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  service_proxies = [\"did:web:api.bsky.app#bsky_appview\", \"did:web:api.bsky.app\"]\n}", "4:59", `"did:web:api.bsky.app" names no service; write "did:web:api.bsky.app#bsky_appview"`},
		{"service proxy with empty service", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  service_proxies = [\"did:web:api.bsky.app#\"]\n}", "4:22", `"did:web:api.bsky.app#" names no service; write "did:web:api.bsky.app#bsky_appview"`},
		{"service proxy with bad service id", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  service_proxies = [\"did:web:api.bsky.app#bsky.appview\"]\n}", "4:22", `"bsky.appview" is not a service id: it holds only letters, digits, "_" and "-"`},
		{"service proxy without DID", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  service_proxies = [\"bsky_appview\"]\n}", "4:22", `"bsky_appview" does not start with a DID; write the service's DID, "#" and its service id, as in "did:web:api.bsky.app#bsky_appview"`},
		{"service proxy with bad DID", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  service_proxies = [\"did:web:#bsky_appview\"]\n}", "4:22", `"did:web:#bsky_appview" does not start with a DID`},
		{"service_proxies not a list", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  service_proxies = \"did:web:api.bsky.app#bsky_appview\"\n}", "4:21", `service_proxies is a list of strings`},
		{"call host with port", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  hosts = [\"calls.internal\", \"IOProxy.service.consul:7000\"]\n}", "4:30", `"IOProxy.service.consul:7000" has a port, and any port is answered; write only the name, "ioproxy.service.consul"`},
		{"call host as URL", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  hosts = [\"http://ioproxy.service.consul/\"]\n}", "4:12", `"http://ioproxy.service.consul/" is a URL; write only its host name, "ioproxy.service.consul"`},
		{"call host with path", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  hosts = [\"ioproxy.service.consul/x\"]\n}", "4:12", `"ioproxy.service.consul/x" has a path; write only the name, "ioproxy.service.consul"`},
		{"call host not a name", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  hosts = [\"ioproxy service\"]\n}", "4:12", `"ioproxy service" is not a host name; write a bare host name such as "ioproxy.service.consul"`},
		{"short handle_max_age", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  require_atproto { handle_max_age = \"30s\" }\n}", "3:38", `"30s" is not a duration of at least 1m; write, for example, handle_max_age = "2h".`},
		{"zero max_sessions", "sessions { max_sessions = 0 }", "1:27", `0 is not a limit: max_sessions is how many sessions ioproxy stores at once, across all accounts. Write a number of at least 1, such as max_sessions = 100000`},
		{"zero max_per_account", "sessions { max_per_account = 0 }", "1:30", `0 is not a limit: max_per_account is how many sessions one account may hold at once`},
		{"max_per_account over max_sessions", "sessions {\n  max_sessions    = 5\n  max_per_account = 10\n}", "3:21", `One account may not hold more sessions (10) than all accounts together (max_sessions = 5); write max_per_account = 5 or less, or raise max_sessions.`},
		{"unknown session store", "sessions { store = \"postgres\" }", "1:20", `"postgres" is not a session store; write store = "bbolt" (one file in data_dir, the default) or store = "redis"`},
		{"redis without url", "sessions {\n  store = \"redis\"\n  encryption_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n}", "1:1", `store = "redis" needs the server: write url = env("IOPROXY_REDIS_URL")`},
		{"redis with an empty url", "sessions {\n  store = \"redis\"\n  url = env(\"IOPROXY_REDIS_URL\")\n  encryption_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n}", "3:9", `the url is empty (an env() that is not set?)`},
		{"redis url with another scheme", "sessions {\n  store = \"redis\"\n  url = \"http://redis:6379\"\n  encryption_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n}", "3:9", `the url's scheme is "http", not redis, rediss or unix`},
		{"redis url without host", "sessions {\n  store = \"redis\"\n  url = \"redis:///0\"\n  encryption_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n}", "3:9", `the url names no host`},
		{"redis without encryption_key", "sessions {\n  store = \"redis\"\n  url = \"redis://127.0.0.1:6379/0\"\n}", "1:1", `write encryption_key = env("IOPROXY_SESSION_KEY")`},
		{"short encryption_key", "sessions {\n  store = \"redis\"\n  url = \"redis://127.0.0.1:6379/0\"\n  encryption_key = \"c2hvcnQ=\"\n}", "4:20", `encryption key 1 is 5 bytes`},
		{"same key twice", "sessions {\n  encryption_key = [\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\", \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"]\n}", "2:20", `are the same key`},
		{"encryption_key with a misspelt function", "sessions {\n  encryption_key = envv(\"K\")\n}", "2:20", `There is no function named "envv"`},
		{"url without redis", "sessions {\n  url = \"redis://127.0.0.1:6379/0\"\n}", "2:9", `url is a setting of the Redis store; write store = "redis" in this block too`},
		{"empty key_prefix", "sessions {\n  store = \"redis\"\n  url = \"redis://127.0.0.1:6379/0\"\n  key_prefix = \"\"\n  encryption_key = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n}", "4:16", `write a word without spaces, such as key_prefix = "ioproxy:"`},
		{"misspelt max_connections", "ingress {\n  max_conections = 10\n}", "2:3", `Did you mean "max_connections"?`},
		{"max_sessions outside sessions", "ingress {\n  max_sessions = 10\n}", "2:3", `"max_sessions" belongs in a sessions block.`},
		{"body_min_rate in a call", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  body_min_rate = 10\n}", "4:3", `"body_min_rate" belongs in an ingress block.`},
		{"handle_max_age in atproto", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  atproto { handle_max_age = \"2h\" }\n}", "3:13", `"handle_max_age" belongs in a require_atproto block.`},
		{"misspelt service_proxies", "call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  service_proxys = []\n}", "4:3", `Did you mean "service_proxies"?`},
		{"hosts in a host block", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  hosts = [\"b.example.com\"]\n}", "3:3", `"hosts" belongs in an admin block or a call block.`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parse(t, tt.src)
			if !diags.HasErrors() || cfg != nil {
				t.Fatalf("config loaded; want an error containing %q", tt.want)
			}
			var lines []string
			for _, d := range diags {
				lines = append(lines, FormatDiagnostic(d))
			}
			for _, l := range lines {
				if strings.HasPrefix(l, "test.hcl:"+tt.pos+": ") && strings.Contains(l, tt.want) {
					return
				}
			}
			t.Errorf("no diagnostic at test.hcl:%s containing %q; got:\n%s", tt.pos, tt.want, strings.Join(lines, "\n"))
		})
	}
}

// A block dropped as a duplicate must not shift the blocks after it: each
// check across blocks reports at the block its value came from (this used
// to pair built hosts and raw blocks by index, and panicked).
func TestDiagnosticsAfterDuplicates(t *testing.T) {
	type diag struct{ pos, want string }
	tests := []struct {
		name  string
		src   string
		diags []diag // each must appear at its "line:col"
	}{
		{
			name: "duplicate host then a local host",
			src: `host "a.example.com" { backend = "localhost:1" }
host "a.example.com" { backend = "localhost:2" }
host "localhost" {
  backend = "localhost:3000"
  atproto {
    local = 9000
  }
}`,
			diags: []diag{
				{"2:6", `Host "a.example.com" is already defined at test.hcl:1`},
				{"6:13", `http://127.0.0.1:9000/@/callback, but nothing of ioproxy listens there for host "localhost"`},
			},
		},
		{
			name: "duplicate local host then another local host",
			src: `host "a.localhost" { backend = "localhost:1" }
host "a.localhost" {
  backend = "localhost:2"
  atproto { local = 8000 }
}
host "b.localhost" {
  backend = "localhost:3000"
  atproto { local = 9000 }
}`,
			diags: []diag{
				{"2:6", `already defined at test.hcl:1`},
				{"8:21", `http://127.0.0.1:9000/@/callback, but nothing of ioproxy listens there for host "b.localhost"`},
			},
		},
		{
			name: "duplicate host then an ACME host at a CA that needs an email",
			src: `tls {
  acme { directory = "https://acme.zerossl.com/v2/DV90" }
}
host "localhost" { backend = "localhost:1" }
host "localhost" { backend = "localhost:2" }
host "a.example.com" { backend = "localhost:3" }`,
			diags: []diag{
				{"5:6", `Host "localhost" is already defined at test.hcl:4`},
				{"2:22", `host "a.example.com" (test.hcl:6) gets its certificate from ZeroSSL`},
			},
		},
		{
			name: "duplicate call then a call whose port collides",
			src: `call "a" {
  port     = 7000
  endpoint = "@"
}
call "a" {
  port     = 7001
  endpoint = "@"
}
call "b" {
  port     = 7000
  endpoint = "@"
}`,
			diags: []diag{
				{"5:6", `Call "a" is already defined at test.hcl:1`},
				{"10:14", `Port 7000 is already used by call "a"; give call "b" a port of its own`},
			},
		},
		{
			name: "duplicate host before a call whose port collides with the ingress",
			src: `ingress { http = 8080 }
host "localhost" { backend = "localhost:1" }
host "localhost" { backend = "localhost:2" }
call "a" {
  port     = 7000
  endpoint = "@"
}
call "b" {
  port     = 8080
  endpoint = "@"
}`,
			diags: []diag{
				{"3:6", `already defined at test.hcl:2`},
				{"9:14", `Port 8080 is already used by the ingress http listener; give call "b" a port of its own`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				cfg   *Config
				diags hcl.Diagnostics
			)
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("Parse panicked: %v", p)
					}
				}()
				cfg, diags = parse(t, tt.src)
			}()
			if !diags.HasErrors() || cfg != nil {
				t.Fatalf("config loaded; want errors")
			}
			var lines []string
			for _, d := range diags {
				lines = append(lines, FormatDiagnostic(d))
			}
			for _, want := range tt.diags {
				found := false
				for _, l := range lines {
					if strings.HasPrefix(l, "test.hcl:"+want.pos+": error: ") && strings.Contains(l, want.want) {
						found = true
					}
				}
				if !found {
					t.Errorf("no error at test.hcl:%s containing %q; got:\n%s", want.pos, want.want, strings.Join(lines, "\n"))
				}
			}
			if len(lines) != len(tt.diags) {
				t.Errorf("got %d diagnostics, want %d:\n%s", len(lines), len(tt.diags), strings.Join(lines, "\n"))
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, diags := Load(filepath.Join(t.TempDir(), "nope.hcl"), Options{})
	if !diags.HasErrors() || !strings.Contains(FormatDiagnostic(diags[0]), "-config") {
		t.Fatalf("diags = %v", diags)
	}
}

func TestParseBackend(t *testing.T) {
	tests := []struct {
		in, url, svc string
		bad          bool
	}{
		{in: "localhost:3000", url: "http://localhost:3000"},
		{in: "[::1]:3000", url: "http://[::1]:3000"},
		{in: "https://app.internal", url: "https://app.internal"},
		{in: "nomad:statusphere", svc: "statusphere"},
		{in: "", bad: true},
		{in: "localhost", bad: true},
		{in: ":3000", bad: true},
		{in: "http://", bad: true},
		{in: "http://a/?q=1", bad: true},
		{in: "nomad:-x", bad: true},
	}
	for _, tt := range tests {
		b, err := ParseBackend(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("ParseBackend(%q) = %+v, want error", tt.in, b)
		case !tt.bad && err != nil:
			t.Errorf("ParseBackend(%q): %v", tt.in, err)
		case tt.url != "" && b.URL.String() != tt.url:
			t.Errorf("ParseBackend(%q).URL = %s, want %s", tt.in, b.URL, tt.url)
		case tt.svc != "" && b.Service != tt.svc:
			t.Errorf("ParseBackend(%q).Service = %s", tt.in, b.Service)
		}
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM":      "example.com",
		"example.com:8443": "example.com",
		"example.com.":     "example.com",
		"[::1]:80":         "::1",
		"127.0.0.1:9000":   "127.0.0.1",
	} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

// Settings that work but are seldom what was meant load with a warning
// that says what to write instead.
func TestWarnings(t *testing.T) {
	const backend = "  backend = \"localhost:1\"\n"
	tests := []struct {
		name, src, pos, want string
	}{
		{"empty allow lists", "host \"a.example.com\" {\n" + backend + "  require_atproto {\n    dids = []\n  }\n}", "3:3", `any account that signs in gets in`},
		{"public server's handle domain", "host \"a.example.com\" {\n" + backend + "  require_atproto { handles = [\"*.bsky.social\"] }\n}", "3:32", `anyone can create`},
		{"prefix without a slash", "host \"a.example.com\" {\n" + backend + "  require_atproto { public_paths = [\"/static*\"] }\n}", "3:37", `write "/static/*"`},
		{"public paths on a forward-auth host", "ingress { trusted_proxies = [\"127.0.0.1\"] }\nhost \"a.example.com\" {\n  require_atproto { public_paths = [\"/healthz\"] }\n}", "3:37", `auth_request off`},
		{"forward-auth without trusted proxies", "host \"a.example.com\" {\n  require_atproto {}\n}", "1:1", `List the proxy's address in trusted_proxies`},
		{"cheap bcrypt", "host \"a.example.com\" {\n" + backend + "  apikey_auth { users = [\"ci:$2y$05$5Q/IvMRNNkd1Tuk2rBvZ5OF8eQK.gTYpvUAaN5gS0SrTqXMa6a1r.\"] }\n}", "3:26", `htpasswd -nbB -C 10 ci`},
		{"long handle_max_age", "host \"a.example.com\" {\n" + backend + "  require_atproto { handle_max_age = \"48h\" }\n}", "3:38", `would still be admitted for up to 48h after its checks started failing`},
		{"very few ingress connections", "ingress { max_connections = 8 }", "1:29", `max_connections = 8 lets only 8 connections in at once on each listener, and one browser opens several: such a low limit answers most visitors with 503`},
		{"service_proxies on a URL endpoint", "call \"a\" {\n  port = 7000\n  endpoint = \"https://api.example.net\"\n  service_proxies = [\"did:web:api.bsky.app#bsky_appview\"]\n}", "4:21", `this call's endpoint is "https://api.example.net". Remove service_proxies here.`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parse(t, tt.src)
			if cfg == nil || diags.HasErrors() {
				t.Fatalf("does not load: %v", diags)
			}
			var lines []string
			for _, d := range diags {
				lines = append(lines, FormatDiagnostic(d))
			}
			found := false
			for _, l := range lines {
				if strings.HasPrefix(l, "test.hcl:"+tt.pos+": warning: ") && strings.Contains(l, tt.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no warning at test.hcl:%s containing %q; got:\n%s", tt.pos, tt.want, strings.Join(lines, "\n"))
			}
		})
	}
	// Settings at the edge of a warning, or written out on purpose, load
	// without any.
	for _, src := range []string{
		// Any account is what was meant.
		"host \"a.example.com\" {\n" + backend + "  require_atproto {}\n}",
		"host \"a.example.com\" {\n" + backend + "  require_atproto { handle_max_age = \"24h\" }\n}",
		"ingress { max_connections = 16 }",
		"call \"a\" {\n  port = 7000\n  endpoint = \"@\"\n  service_proxies = []\n}",
	} {
		if _, diags := parse(t, src); len(diags) != 0 {
			t.Errorf("%s: %v", src, diags)
		}
	}
}

// A Redis url may hold a password and encryption_key holds keys: no
// diagnostic quotes either.
func TestSessionDiagnosticsHideSecrets(t *testing.T) {
	for _, src := range []string{
		"sessions {\n  store = \"redis\"\n  url = \"http://:s3cretpw@redis:6379\"\n  encryption_key = \"c2VjcmV0a2V5c2VjcmV0a2V5\"\n}",
		"sessions {\n  store = \"redis\"\n  url = \"redis://:s3cretpw@\"\n  encryption_key = [\"c2VjcmV0a2V5c2VjcmV0a2V5\"]\n}",
	} {
		_, diags := parse(t, src)
		if !diags.HasErrors() {
			t.Fatalf("no error for:\n%s", src)
		}
		var buf bytes.Buffer
		_ = WriteDiagnostics(&buf, diags)
		for _, secret := range []string{"s3cretpw", "c2VjcmV0a2V5c2VjcmV0a2V5"} {
			if strings.Contains(buf.String(), secret) {
				t.Errorf("a diagnostic quotes %q:\n%s", secret, buf.String())
			}
		}
	}
}

// TestIOSpellings: the names IO's configurations use since 2026 get
// diagnostics that say what to write in ioproxy.
func TestIOSpellings(t *testing.T) {
	for _, tc := range []struct{ src, pos, want string }{
		{"calling \"api\" {\n  target = \"localhost:3000\"\n}", "1:1", `write call in place of calling, and endpoint in place of target`},
		{"call \"api\" {\n  port = 7000\n  target = \"localhost:3000\"\n}", "3:3", `IO's target is ioproxy's endpoint: write endpoint = …`},
		{"ingress \"a.example.com\" {\n  backend = \"localhost:3000\"\n}", "1:9", `IO's ingress "<host>" { … } is ioproxy's host "<host>" { … }: write host in place of ingress.`},
		{"oauth_client {\n}", "1:1", `write atproto { name = …, scopes = [...] } inside the host block, and remove oauth_client.`},
		{"host \"a.example.com\" {\n  backend = \"localhost:3000\"\n  apply_header {\n  }\n}", "3:3", `remove apply_header`},
	} {
		_, diags := Parse([]byte(tc.src), "io.hcl", Options{LookupEnv: func(string) (string, bool) { return "", false }})
		var b strings.Builder
		_ = WriteDiagnostics(&b, diags)
		if !strings.Contains(b.String(), "io.hcl:"+tc.pos) || !strings.Contains(b.String(), tc.want) {
			t.Errorf("%q:\n%s\nwant at %s: %s", tc.src, b.String(), tc.pos, tc.want)
		}
	}
}

// TestLoadAll: several files, and a directory's *.hcl files in name
// order, merge into one configuration; a host defined in two files is
// an error at the second naming the first; a directory without files is
// an error that says so.
func TestLoadAll(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := write("base.hcl", "ingress {\n  http = \"127.0.0.1:8080\"\n}\n")
	write("hosts/10-a.hcl", "host \"a.example.com\" {\n  backend = \"localhost:1\"\n  tls { mode = \"off\" }\n}\n")
	write("hosts/20-b.hcl", "host \"b.example.com\" {\n  backend = \"localhost:2\"\n  tls { mode = \"off\" }\n}\n")
	write("hosts/notes.txt", "not HCL")
	write("hosts/.#10-a.hcl", "an editor's lock file")
	_ = os.MkdirAll(filepath.Join(dir, "hosts", "old.hcl"), 0o755)
	cfg, diags := LoadAll([]string{base, filepath.Join(dir, "hosts")}, Options{})
	if diags.HasErrors() {
		t.Fatalf("load: %v", diags)
	}
	if len(cfg.Hosts) != 2 || cfg.Hosts[0].Hostname != "a.example.com" || cfg.Hosts[1].Hostname != "b.example.com" || cfg.Ingress.HTTPAddr != "127.0.0.1:8080" {
		t.Errorf("merged: %d hosts, http %q", len(cfg.Hosts), cfg.Ingress.HTTPAddr)
	}
	if len(cfg.Files) != 3 || !strings.HasSuffix(cfg.Files[2], "20-b.hcl") {
		t.Errorf("files read: %v", cfg.Files)
	}

	dup := write("dup.hcl", "host \"A.example.com\" {\n  backend = \"localhost:3\"\n}\n")
	_, diags = LoadAll([]string{filepath.Join(dir, "hosts"), dup}, Options{})
	var b strings.Builder
	_ = WriteDiagnostics(&b, diags)
	if !strings.Contains(b.String(), dup+":1:6") || !strings.Contains(b.String(), "already defined at "+filepath.Join(dir, "hosts", "10-a.hcl")+":1") {
		t.Errorf("a host in two files:\n%s", b.String())
	}
	twice := write("twice.hcl", "ingress {\n  http = \"127.0.0.1:9090\"\n}\n")
	if _, diags = LoadAll([]string{base, twice}, Options{}); !diags.HasErrors() {
		t.Error("two ingress blocks in two files were accepted")
	}
	empty := filepath.Join(dir, "empty")
	_ = os.MkdirAll(empty, 0o755)
	b.Reset()
	_, diags = LoadAll([]string{empty}, Options{})
	_ = WriteDiagnostics(&b, diags)
	if !strings.Contains(b.String(), "holds no *.hcl file") {
		t.Errorf("an empty directory: %s", b.String())
	}
}
