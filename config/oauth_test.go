package config

import (
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/ioproxy/ioproxy/access"
)

// oauthExample is the shape of the configurations ioproxy follows: a host
// that signs in with Google, admits some of its accounts, and a calling
// port that calls Google's APIs with the user's token.
const oauthExample = `host "tools.example.com" {
  backend = "localhost:3000"
  oauth "google" {
    client_id        = env("GOOGLE_CLIENT_ID")
    client_secret    = env("GOOGLE_CLIENT_SECRET")
    authorize_url    = "https://accounts.google.com/o/oauth2/v2/auth"
    access_token_url = "https://oauth2.googleapis.com/token"
    scopes           = ["openid", "email", "profile", "https://www.googleapis.com/auth/calendar.readonly"]
    authorize_parameter {
      name  = "access_type"
      value = "offline"
    }
  }
  require_oauth "google" {
    emails  = ["alice@example.com"]
    domains = ["example.com"]
  }
}
call "google" {
  port     = 4848
  endpoint = "www.googleapis.com"
  auth {
    name       = "authorization"
    location   = "header"
    credential = "session:google"
  }
}
`

// googleEnv is the environment of the examples: the client of Google's
// console.
func googleEnv(name string) (string, bool) {
	switch name {
	case "GOOGLE_CLIENT_ID":
		return "1234-abc.apps.googleusercontent.com", true
	case "GOOGLE_CLIENT_SECRET":
		return "GOCSPX-not-a-real-secret", true
	case "WEATHER_API_KEY":
		return "weather-key", true
	case "EMPTY":
		return "", true
	}
	return "", false
}

func parseGoogle(t *testing.T, src string) (*Config, hcl.Diagnostics) {
	t.Helper()
	return Parse([]byte(src), "test.hcl", Options{LookupEnv: googleEnv})
}

// oauthHost wraps a host body around the lines of a test.
func oauthHost(lines ...string) string {
	return "host \"tools.example.com\" {\n  backend = \"localhost:3000\"\n" + strings.Join(lines, "\n") + "\n}\n"
}

// google is an oauth block of the provider, with the lines of a test
// after its client settings.
func google(lines ...string) string {
	return "  oauth \"google\" {\n    client_id     = env(\"GOOGLE_CLIENT_ID\")\n    client_secret = env(\"GOOGLE_CLIENT_SECRET\")\n" +
		strings.Join(lines, "\n") + "\n  }"
}

const issuer = `    issuer = "https://accounts.google.com"`

func TestOAuthExample(t *testing.T) {
	cfg, diags := parseGoogle(t, oauthExample)
	if cfg == nil || diags.HasErrors() {
		t.Fatalf("does not load:\n%s", strings.Join(diagLines(diags), "\n"))
	}
	// ioproxy's OpenID Connect client needs the issuer's keys.
	if lines := diagLines(diags); len(lines) != 1 || !findDiag(lines, "test.hcl", "8:24", "warning", "OpenID Connect without issuer") {
		t.Errorf("diagnostics:\n%s", strings.Join(lines, "\n"))
	}
	h, ok := cfg.Host("tools.example.com")
	if !ok {
		t.Fatal("host missing")
	}
	want := []OAuthProvider{{
		Name:            "google",
		ClientID:        "1234-abc.apps.googleusercontent.com",
		ClientSecret:    "GOCSPX-not-a-real-secret",
		Issuer:          "https://accounts.google.com",
		AuthorizeURL:    "https://accounts.google.com/o/oauth2/v2/auth",
		TokenURL:        "https://oauth2.googleapis.com/token",
		Scopes:          []string{"openid", "email", "profile", "https://www.googleapis.com/auth/calendar.readonly"},
		AuthorizeParams: url.Values{"access_type": {"offline"}},
	}}
	if !reflect.DeepEqual(h.OAuth, want) {
		t.Errorf("oauth =\n%+v\nwant\n%+v", h.OAuth, want)
	}
	p, ok := h.OAuthProvider("google")
	if !ok || !p.OpenID() || p.Issuer != "https://accounts.google.com" || p.UserinfoURL != "" {
		t.Errorf("OAuthProvider(google) = %+v, %v", p, ok)
	}
	if _, ok := h.OAuthProvider("github"); ok {
		t.Error("OAuthProvider found github")
	}
	if h.ATProto != nil {
		t.Errorf("atproto = %+v, want none", h.ATProto)
	}
	wantAccess := &Access{OAuth: map[string]*access.EmailRules{"google": {Emails: []string{"alice@example.com"}, Domains: []string{"example.com"}}}}
	if !reflect.DeepEqual(h.Access, wantAccess) {
		t.Errorf("access = %+v, want %+v", h.Access, wantAccess)
	}
	if len(cfg.Calls) != 1 {
		t.Fatalf("calls = %+v", cfg.Calls)
	}
	c := cfg.Calls[0]
	if want := (&CallAuth{Name: "Authorization", Location: "header", Provider: "google"}); !reflect.DeepEqual(c.Auth, want) {
		t.Errorf("call auth = %+v, want %+v", c.Auth, want)
	}
	if c.Endpoint.Kind != EndpointURL || c.Endpoint.URL.String() != "https://www.googleapis.com" || c.Addr() != "127.0.0.1:4848" {
		t.Errorf("call = %+v", c)
	}
}

func TestOAuthGood(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "issuer alone, default scopes",
			src:  oauthHost(google(issuer)),
			check: func(t *testing.T, c *Config) {
				want := OAuthProvider{Name: "google", ClientID: "1234-abc.apps.googleusercontent.com", ClientSecret: "GOCSPX-not-a-real-secret",
					Issuer: "https://accounts.google.com", Scopes: []string{"openid", "email", "profile"}}
				if h := c.Hosts[0]; !reflect.DeepEqual(h.OAuth, []OAuthProvider{want}) || h.Access != nil || !h.OAuth[0].OpenID() {
					t.Errorf("host = %+v", h)
				}
			},
		},
		{
			name: "an issuer is kept as written",
			src:  oauthHost(google(`    issuer = "https://login.example.com/tenant/v2.0/"`)),
			check: func(t *testing.T, c *Config) {
				if got := c.Hosts[0].OAuth[0].Issuer; got != "https://login.example.com/tenant/v2.0/" {
					t.Errorf("issuer = %q", got)
				}
			},
		},
		{
			name: "a plain OAuth 2.0 provider with a userinfo endpoint",
			src: oauthHost(`  oauth "github" {
    client_id        = "Iv1.0123456789abcdef"
    client_secret    = env("GITHUB_CLIENT_SECRET", "")
    authorize_url    = "https://github.com/login/oauth/authorize"
    access_token_url = "https://github.com/login/oauth/access_token"
    userinfo_url     = "https://api.github.com/user"
    scopes           = ["read:user", "user:email"]
  }
  require_oauth "github" {}`),
			check: func(t *testing.T, c *Config) {
				p := c.Hosts[0].OAuth[0]
				if p.OpenID() || p.UserinfoURL != "https://api.github.com/user" || p.ClientID != "Iv1.0123456789abcdef" || !slices.Equal(p.Scopes, []string{"read:user", "user:email"}) {
					t.Errorf("provider = %+v", p)
				}
				r := c.Hosts[0].Access.OAuth["github"]
				if r == nil || !r.OpenToAnyEmail() {
					t.Errorf("require_oauth = %+v", r)
				}
			},
			// The secret's variable is not set: that is the one warning.
		},
		{
			name: "loopback providers may use http",
			src: oauthHost(google(`    issuer = "http://localhost:8080"`),
				`  oauth "dev" {
    client_id        = "dev"
    client_secret    = env("GOOGLE_CLIENT_SECRET")
    authorize_url    = "http://127.0.0.5:9000/authorize?tenant=x"
    access_token_url = "http://[::1]:9000/token"
    userinfo_url     = "http://127.0.0.1:9000/userinfo"
    scopes           = ["profile"]
  }`),
			check: func(t *testing.T, c *Config) {
				h := c.Hosts[0]
				if len(h.OAuth) != 2 || h.OAuth[0].Issuer != "http://localhost:8080" || h.OAuth[1].AuthorizeURL != "http://127.0.0.5:9000/authorize?tenant=x" || h.OAuth[1].TokenURL != "http://[::1]:9000/token" {
					t.Errorf("oauth = %+v", h.OAuth)
				}
			},
		},
		{
			name: "several authorize parameters, in order",
			src: oauthHost(google(issuer,
				`    authorize_parameter {
      name  = "access_type"
      value = "offline"
    }
    authorize_parameter {
      name  = "prompt"
      value = "consent"
    }
    authorize_parameter {
      name  = "hd"
      value = "example.com"
    }`)),
			check: func(t *testing.T, c *Config) {
				want := url.Values{"access_type": {"offline"}, "prompt": {"consent"}, "hd": {"example.com"}}
				if got := c.Hosts[0].OAuth[0].AuthorizeParams; !reflect.DeepEqual(got, want) {
					t.Errorf("params = %v", got)
				}
			},
		},
		{
			name: "emails and domains lower-cased and trimmed",
			src: oauthHost(google(issuer), `  require_oauth "google" {
    emails  = [" Alice@Example.COM", "bob+ops@partner.example.org"]
    domains = ["Example.NET", "*.Corp.example.com"]
  }`),
			check: func(t *testing.T, c *Config) {
				r := c.Hosts[0].Access.OAuth["google"]
				want := &access.EmailRules{Emails: []string{"alice@example.com", "bob+ops@partner.example.org"}, Domains: []string{"example.net", "*.corp.example.com"}}
				if !reflect.DeepEqual(r, want) {
					t.Errorf("rules = %+v", r)
				}
				if !r.Admits("ALICE@example.com", true) || !r.Admits("x@eu.corp.example.com", true) || r.Admits("x@corp.example.com", true) {
					t.Error("the rules do not admit what they name")
				}
			},
		},
		{
			name: "require_oauth beside require_atproto and apikey_auth: one Access",
			src: oauthHost(google(issuer), `  require_atproto { handles = ["alice.example.com"] }
  apikey_auth { users = ["`+apiKey+`"] }
  require_oauth "google" { emails = ["alice@example.com"] }`),
			check: func(t *testing.T, c *Config) {
				h := c.Hosts[0]
				a := h.Access
				if a == nil || a.Rules == nil || !slices.Equal(a.Rules.Handles, []string{"alice.example.com"}) || len(a.APIKeys) != 1 || len(a.OAuth) != 1 || a.OAuth["google"] == nil {
					t.Errorf("access = %+v", a)
				}
				if h.ATProto == nil || h.ATProto.Scope() != "atproto" {
					t.Errorf("atproto = %+v", h.ATProto)
				}
			},
		},
		{
			name: "sign-in with atproto and a provider, require_oauth for each provider",
			src: oauthHost("  atproto {}", google(issuer), `  oauth "work" {
    client_id     = "work"
    client_secret = env("GOOGLE_CLIENT_SECRET")
    issuer        = "https://idp.example.com"
  }
  require_atproto {}
  require_oauth "work" { domains = ["example.com"] }
  require_oauth "google" {}`),
			check: func(t *testing.T, c *Config) {
				h := c.Hosts[0]
				if len(h.OAuth) != 2 || h.OAuth[0].Name != "google" || h.OAuth[1].Name != "work" || len(h.Access.OAuth) != 2 {
					t.Errorf("host = %+v, access %+v", h, h.Access)
				}
			},
		},
		{
			name: "a forward-auth host with a provider and no rules",
			src: `ingress { trusted_proxies = ["127.0.0.1"] }
host "admin.example.com" {
` + google(issuer) + `
}`,
			check: func(t *testing.T, c *Config) {
				h := c.Hosts[0]
				if h.Backend.Kind != BackendNone || h.Access != nil || len(h.OAuth) != 1 {
					t.Errorf("host = %+v", h)
				}
			},
		},
		{
			name: "a forward-auth host with require_oauth",
			src: `ingress { trusted_proxies = ["127.0.0.1"] }
host "admin.example.com" {
` + google(issuer) + `
  require_oauth "google" { domains = ["example.com"] }
}`,
			check: func(t *testing.T, c *Config) {
				if h := c.Hosts[0]; h.Backend.Kind != BackendNone || h.Access == nil || h.Access.OAuth["google"] == nil {
					t.Errorf("host = %+v", h)
				}
			},
		},
		{
			name: "the same provider name on two hosts",
			src:  oauthHost(google(issuer)) + "host \"other.example.com\" {\n  backend = \"localhost:3001\"\n" + google(issuer) + "\n}\n",
			check: func(t *testing.T, c *Config) {
				if len(c.Hosts) != 2 || len(c.Hosts[0].OAuth) != 1 || len(c.Hosts[1].OAuth) != 1 {
					t.Errorf("hosts = %+v", c.Hosts)
				}
			},
		},
		{
			name: "a static credential in a query parameter",
			src: `call "weather" {
  port     = 4849
  endpoint = "https://api.weather.example"
  auth {
    name       = "api-key"
    location   = "query"
    credential = env("WEATHER_API_KEY")
  }
}`,
			check: func(t *testing.T, c *Config) {
				if want := (&CallAuth{Name: "api-key", Location: "query", Static: "weather-key"}); !reflect.DeepEqual(c.Calls[0].Auth, want) {
					t.Errorf("auth = %+v", c.Calls[0].Auth)
				}
			},
		},
		{
			name: "location defaults to header, and the name becomes canonical",
			src: oauthHost(google(issuer)) + `call "calendar" {
  port     = 4849
  endpoint = "https://www.googleapis.com/calendar/v3"
  auth {
    name       = "x-goog-api-key"
    credential = env("WEATHER_API_KEY")
  }
}
call "plain" {
  port     = 4850
  endpoint = "https://tools.example.net"
  auth {
    name       = "AUTHORIZATION"
    credential = "session:google"
  }
}
call "none" {
  port     = 4851
  endpoint = "https://api.example.net"
}`,
			check: func(t *testing.T, c *Config) {
				if want := (&CallAuth{Name: "X-Goog-Api-Key", Location: "header", Static: "weather-key"}); !reflect.DeepEqual(c.Calls[0].Auth, want) {
					t.Errorf("auth = %+v", c.Calls[0].Auth)
				}
				if a := c.Calls[1].Auth; a == nil || a.Name != "Authorization" || a.Provider != "google" || c.Calls[1].Endpoint.Kind != EndpointURL {
					t.Errorf("auth = %+v", a)
				}
				if c.Calls[2].Auth != nil {
					t.Errorf("auth = %+v, want nil", c.Calls[2].Auth)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parseGoogle(t, tt.src)
			if diags.HasErrors() || cfg == nil {
				t.Fatalf("does not load:\n%s", strings.Join(diagLines(diags), "\n"))
			}
			for _, l := range diagLines(diags) {
				// GITHUB_CLIENT_SECRET is left unset on purpose.
				if !strings.Contains(l, "GITHUB_CLIENT_SECRET is not set") {
					t.Errorf("diagnostic: %s", l)
				}
			}
			tt.check(t, cfg)
		})
	}
}

// Each bad configuration fails with an error at line:col that contains
// want.
func TestOAuthBad(t *testing.T) {
	const call = "call \"c\" {\n  port     = 4848\n  endpoint = \"https://api.example.net\"\n  auth {\n"
	tests := []struct {
		name, src, pos, want string
	}{
		// oauth labels
		{"upper-case label", oauthHost(`  oauth "Google" {`, issuer, `  }`), "3:9",
			`Provider names are lower case; write oauth "google" { … }.`},
		{"label starting with a digit", oauthHost(`  oauth "1password" {`, issuer, `  }`), "3:9",
			`"1password" cannot name a provider; write at most 32 lower-case letters, digits and dashes that start with a letter`},
		{"label with a dot", oauthHost(`  oauth "google.com" {`, issuer, `  }`), "3:9", `cannot name a provider`},
		{"label too long", oauthHost(`  oauth "`+strings.Repeat("a", 33)+`" {`, issuer, `  }`), "3:9", `cannot name a provider`},
		{"atproto is reserved", oauthHost(`  oauth "atproto" {`, issuer, `  }`), "3:9",
			`"atproto" is ioproxy's own AT Protocol sign-in, set up by the atproto block; give this provider another name`},
		{"a provider twice in a host", oauthHost(google(issuer), google(issuer)), "8:9",
			`oauth "google" is already defined in this host at test.hcl:3. Each provider appears once in a host; merge the two blocks.`},

		// the client
		{"missing client_id", oauthHost(`  oauth "google" {`, `    client_secret = env("GOOGLE_CLIENT_SECRET")`, issuer, `  }`), "3:3",
			`oauth "google" needs the client id that the provider gave this app: write client_id = env("GOOGLE_CLIENT_ID").`},
		{"missing client_secret", oauthHost(`  oauth "my-idp" {`, `    client_id = "x"`, issuer, `  }`), "3:3",
			`oauth "my-idp" needs the client secret that the provider gave this app (ioproxy is a confidential client): write client_secret = env("MY_IDP_CLIENT_SECRET").`},
		{"empty literal client_secret", oauthHost(`  oauth "google" {`, `    client_id = "x"`, `    client_secret = ""`, issuer, `  }`), "5:21",
			`client_secret is empty; write client_secret = env("GOOGLE_CLIENT_SECRET")`},
		{"empty literal client_id", oauthHost(`  oauth "google" {`, `    client_id = ""`, `    client_secret = env("GOOGLE_CLIENT_SECRET")`, issuer, `  }`), "4:17",
			`client_id is empty; write client_id = env("GOOGLE_CLIENT_ID")`},
		{"client_secret not a string", oauthHost(`  oauth "google" {`, `    client_id = "x"`, `    client_secret = ["a"]`, issuer, `  }`), "5:21",
			`client_secret is a string, as in client_secret = env("GOOGLE_CLIENT_SECRET").`},

		// endpoints
		{"neither issuer nor URLs", oauthHost(google()), "3:3",
			`oauth "google" needs to know where the provider is. Write issuer = "https://accounts.google.com" for an OpenID Connect provider (discovery finds the endpoints), or authorize_url and access_token_url both`},
		{"issuer and authorize_url", oauthHost(google(issuer, `    authorize_url = "https://accounts.google.com/o/oauth2/v2/auth"`)), "7:21",
			`issuer finds the provider's endpoints through OpenID Connect discovery, and authorize_url names one itself: write one or the other`},
		{"issuer and access_token_url", oauthHost(google(issuer, `    access_token_url = "https://oauth2.googleapis.com/token"`)), "7:24", `write one or the other`},
		{"authorize_url alone", oauthHost(google(`    authorize_url = "https://accounts.google.com/o/oauth2/v2/auth"`)), "6:21",
			`write access_token_url too, such as access_token_url = "https://oauth2.googleapis.com/token"`},
		{"access_token_url alone", oauthHost(google(`    access_token_url = "https://oauth2.googleapis.com/token"`)), "6:24",
			`write authorize_url too, such as authorize_url = "https://accounts.google.com/o/oauth2/v2/auth"`},
		{"http issuer", oauthHost(google(`    issuer = "http://accounts.google.com"`)), "6:14",
			`"http://accounts.google.com" uses http://, which would carry sign-ins' codes and tokens in the clear; write https://. (http:// is allowed on a loopback host only, such as http://localhost:8080 or http://127.0.0.1:8080, for development and tests.)`},
		{"http on a private address", oauthHost(google(`    authorize_url = "http://10.0.0.5/auth"`, `    access_token_url = "https://oauth2.googleapis.com/token"`)), "6:21", `Insecure authorize_url`},
		{"http userinfo", oauthHost(google(issuer, `    userinfo_url = "http://localhost.example.com/userinfo"`)), "7:20", `Insecure userinfo_url`},
		{"not a URL", oauthHost(google(`    issuer = "accounts.google.com"`)), "6:14",
			`"accounts.google.com" is not an https:// URL; write, for example, issuer = "https://accounts.google.com".`},
		{"a URL without host", oauthHost(google(`    issuer = "https:///x"`)), "6:14", `is not an https:// URL`},
		{"another scheme", oauthHost(google(`    issuer = "ftp://accounts.google.com"`)), "6:14", `is not an https:// URL`},
		{"spaces around", oauthHost(google(`    issuer = " https://accounts.google.com"`)), "6:14", `is not an https:// URL`},
		{"a fragment", oauthHost(google(`    authorize_url = "https://accounts.google.com/auth#x"`, `    access_token_url = "https://oauth2.googleapis.com/token"`)), "6:21",
			`"https://accounts.google.com/auth#x" has a fragment (#…), which is never sent to the server; remove it.`},
		{"an empty fragment", oauthHost(google(`    issuer = "https://accounts.google.com#"`)), "6:14", `has a fragment`},
		{"an issuer with a query", oauthHost(google(`    issuer = "https://accounts.google.com/?tenant=x"`)), "6:14",
			`has a query; an issuer is a scheme, a host and an optional path, written exactly as the provider's discovery document gives it`},
		{"user info", oauthHost(google(`    issuer = "https://me:hunter2@accounts.google.com"`)), "6:14", `carries user info (user:password@)`},

		// scopes
		{"no scopes", oauthHost(google(issuer, `    scopes = []`)), "7:14",
			`scopes is empty; name what the app needs, as in scopes = ["openid", "email", "profile"], or leave scopes out for that default.`},
		{"two scopes in one string", oauthHost(google(issuer, `    scopes = ["openid email"]`)), "7:15",
			`"openid email" is several scopes; write each as a string of its own: "openid", "email".`},
		{"an empty scope", oauthHost(google(issuer, `    scopes = ["openid", ""]`)), "7:25", `remove the empty string`},
		{"a repeated scope", oauthHost(google(issuer, `    scopes = ["openid", "email", "openid"]`)), "7:34",
			`"openid" is already in scopes at test.hcl:7; write it once.`},
		{"a quote in a scope", oauthHost(google(issuer, `    scopes = ["a\"b"]`)), "7:15", `is not a scope`},
		{"scopes not a list", oauthHost(google(issuer, `    scopes = "openid"`)), "7:14", `scopes is a list of strings`},

		// authorize_parameter
		{"parameter without a value", oauthHost(google(issuer, `    authorize_parameter { name = "prompt" }`)), "7:5",
			`authorize_parameter needs a name and a value, as in authorize_parameter {`},
		{"parameter without a name", oauthHost(google(issuer, `    authorize_parameter { value = "consent" }`)), "7:5", `Missing name`},
		{"parameter with an empty value", oauthHost(google(issuer, `    authorize_parameter {`, `      name  = "prompt"`, `      value = ""`, `    }`)), "9:15",
			`authorize_parameter "prompt" has an empty value`},
		{"redirect_uri set by ioproxy", oauthHost(google(issuer, `    authorize_parameter {`, `      name  = "redirect_uri"`, `      value = "https://evil.example"`, `    }`)), "8:15",
			`ioproxy sets redirect_uri itself (ioproxy sends its own callback, under https://tools.example.com/@google/ on the host); remove this authorize_parameter.`},
		{"scope set by ioproxy, in any case", oauthHost(google(issuer, `    authorize_parameter {`, `      name  = "Scope"`, `      value = "x"`, `    }`)), "8:15",
			`ioproxy sets scope itself (write the scopes in scopes = [...] instead)`},
	}
	for _, name := range []string{"response_type", "client_id", "state", "nonce", "code_challenge", "code_challenge_method", "response_mode", "request_uri"} {
		tests = append(tests, struct{ name, src, pos, want string }{name + " set by ioproxy",
			oauthHost(google(issuer, `    authorize_parameter {`, `      name  = "`+name+`"`, `      value = "x"`, `    }`)), "8:15", `ioproxy sets ` + name + ` itself`})
	}
	tests = append(tests, []struct{ name, src, pos, want string }{
		{"a parameter twice", oauthHost(google(issuer, `    authorize_parameter {`, `      name  = "prompt"`, `      value = "consent"`, `    }`, `    authorize_parameter {`, `      name  = "prompt"`, `      value = "login"`, `    }`)), "12:15",
			`"prompt" is already set at test.hcl:8, and authorization servers refuse a parameter sent twice; write it once.`},
		{"a parameter name with a space", oauthHost(google(issuer, `    authorize_parameter {`, `      name  = "access type"`, `      value = "offline"`, `    }`)), "8:15", `is not a parameter name`},

		// require_oauth
		{"require_oauth without oauth", oauthHost(`  require_oauth "google" {}`), "3:17",
			`require_oauth "google" admits accounts of a provider that signs users in on this host, and host "tools.example.com" has no oauth block: add oauth "google" { client_id = …, client_secret = …, issuer = … } beside it.`},
		{"require_oauth of another provider", oauthHost(google(issuer), `  require_oauth "github" {}`), "8:17",
			`Host "tools.example.com" has no oauth "github"; its providers are "google". Write require_oauth with one of them, or add oauth "github" { … } to this host.`},
		{"require_oauth of another host's provider", oauthHost(`  require_oauth "google" {}`) + "host \"other.example.com\" {\n  backend = \"localhost:3001\"\n" + google(issuer) + "\n}\n", "3:17",
			`host "tools.example.com" has no oauth block`},
		{"a bad email", oauthHost(google(issuer), `  require_oauth "google" { emails = ["alice"] }`), "8:38", `"alice" is not an email`},
		{"a domain in emails", oauthHost(google(issuer), `  require_oauth "google" { emails = ["example.com"] }`), "8:38", `"example.com" is a domain; put it in domains`},
		{"an email in domains", oauthHost(google(issuer), `  require_oauth "google" { domains = ["alice@example.com"] }`), "8:39", `is an email; put it in emails, or write its domain, "example.com"`},
		{"a bad domain", oauthHost(google(issuer), `  require_oauth "google" { domains = ["*.com"] }`), "8:39", `"*.com" is not a domain`},
		{"a repeated email", oauthHost(google(issuer), `  require_oauth "google" { emails = ["alice@example.com", "ALICE@example.com"] }`), "8:59",
			`"alice@example.com" is already in emails at test.hcl:8; write it once.`},
		{"a repeated domain", oauthHost(google(issuer), `  require_oauth "google" { domains = ["example.com", "Example.com"] }`), "8:54", `"example.com" is already in domains`},
		{"emails not a list", oauthHost(google(issuer), `  require_oauth "google" { emails = "alice@example.com" }`), "8:37", `emails is a list of strings`},
		{"require_oauth twice", oauthHost(google(issuer), `  require_oauth "google" {}`, `  require_oauth "google" {}`), "9:17",
			`require_oauth "google" is already defined at test.hcl:8; merge the two blocks.`},
		{"require_oauth and atproto sign-in without require_atproto", oauthHost("  atproto {}", google(issuer), `  require_oauth "google" {}`), "3:3",
			`Without require_atproto, only accounts of the providers that require_oauth names get in, so this atproto block's sign-in would lead nowhere.`},
		{"require_oauth in a serve block", "serve \"x\" {\n  port    = 9009\n  backend = \"localhost:1\"\n  apikey_auth { users = [\"" + apiKey + "\"] }\n  require_oauth \"google\" {}\n}", "5:3",
			`require_oauth is not available in serve blocks yet; guard the service with a host: host "<name>" { backend = "localhost:1", oauth "google" { … }, require_oauth "google" { … } } in place of serve "x".`},
		{"require_oauth in front of a serve block", "serve \"x\" {\n  port    = 9009\n  backend = \"localhost:1\"\n  require_atproto {}\n}\nhost \"a.example.com\" {\n  backend = \"serving:x\"\n" + google(issuer) + "\n  require_oauth \"google\" {}\n}", "13:3",
			`require_oauth is not available in serve blocks yet. To guard the service with require_oauth, give this host the service's address (backend = "localhost:1") in place of serving:x.`},
		{"oauth in front of a serve block", "serve \"x\" {\n  port    = 9009\n  backend = \"localhost:1\"\n  require_atproto {}\n}\nhost \"a.example.com\" {\n  backend = \"serving:x\"\n" + google(issuer) + "\n}", "8:3",
			`whose rules admit no accounts of "google" (require_oauth is not available in serve blocks yet), so signing in with it would lead nowhere.`},

		// call auth
		{"auth on a call to the PDS", "call \"pds\" {\n  port     = 7000\n  endpoint = \"@\"\n  auth {\n    name       = \"authorization\"\n    credential = env(\"WEATHER_API_KEY\")\n  }\n}", "4:3",
			`Call "pds" sends requests to the signed-in user's PDS, which the AT Protocol session's DPoP-bound token authorizes; an auth block cannot add another credential.`},
		{"auth on a call to an ingress host", oauthHost(google(issuer)) + "call \"web\" {\n  port     = 7001\n  endpoint = \"tools.example.com\"\n  auth {\n    name       = \"authorization\"\n    credential = \"session:google\"\n  }\n}", "12:3",
			`Call "web" is served by ioproxy's own host "tools.example.com", which decides who passes with its own rules; an auth block would not reach it.`},
		{"bad location", call + "    name = \"key\"\n    location = \"body\"\n    credential = env(\"WEATHER_API_KEY\")\n  }\n}", "6:16",
			`"body" is not where a credential goes; write location = "header" (the default) or location = "query" (a query parameter).`},
		{"upper-case location", call + "    name = \"key\"\n    location = \"Query\"\n    credential = env(\"WEATHER_API_KEY\")\n  }\n}", "6:16", `write location = "query".`},
		{"missing name", call + "    credential = env(\"WEATHER_API_KEY\")\n  }\n}", "4:3",
			`auth needs the name of the header (or query parameter, with location = "query") that the credential goes in, as in name = "authorization".`},
		{"bad header name", call + "    name = \"api key\"\n    credential = env(\"WEATHER_API_KEY\")\n  }\n}", "5:12", `"api key" is not a header name`},
		{"bad query parameter", call + "    name = \"a&b\"\n    location = \"query\"\n    credential = env(\"WEATHER_API_KEY\")\n  }\n}", "5:12", `"a&b" is not a query parameter name`},
		{"empty query parameter", call + "    name = \"\"\n    location = \"query\"\n    credential = env(\"WEATHER_API_KEY\")\n  }\n}", "5:12", `is not a query parameter name`},
		{"missing credential", call + "    name = \"authorization\"\n  }\n}", "4:3",
			`auth needs a credential: credential = "session:<provider>" sends the signed-in user's access token of that provider (an oauth block of a host), and credential = env("C_CREDENTIAL") a fixed one.`},
		{"session of no provider, none defined", call + "    name = \"authorization\"\n    credential = \"session:google\"\n  }\n}", "6:18",
			`credential = "session:google" sends the signed-in user's access token of provider "google", and no host defines oauth "google": add oauth "google" { … } to the host that users sign in on.`},
		{"session of an unknown provider", oauthHost(google(issuer)) + call + "    name = \"authorization\"\n    credential = \"session:github\"\n  }\n}", "14:18",
			`No host defines oauth "github"; the providers are "google". Write credential = "session:<provider>" with one of them.`},
		{"session of no name", oauthHost(google(issuer)) + call + "    name = \"authorization\"\n    credential = \"session:\"\n  }\n}", "14:18", `"session:" names no provider`},
		{"empty literal credential", call + "    name = \"authorization\"\n    credential = \"\"\n  }\n}", "6:18", `credential is empty; write credential = env("C_CREDENTIAL")`},
		{"a line break in a header credential", call + "    name = \"authorization\"\n    credential = env(\"CRLF\", \"\")\n  }\n}", "6:18", `The credential holds a line break or another control character`},
		{"auth block twice", call + "    name = \"authorization\"\n    credential = env(\"WEATHER_API_KEY\")\n  }\n  auth {\n    name = \"x\"\n  }\n}", "8:3", `Duplicate auth block`},

		// names
		{"token_url", oauthHost(google(issuer, `    token_url = "https://oauth2.googleapis.com/token"`)), "7:5", `Did you mean "access_token_url"?`},
		{"misspelt client_id", oauthHost(google(issuer, `    clientid = "x"`)), "7:5", `Did you mean "client_id"?`},
		{"misspelt emails", oauthHost(google(issuer), `  require_oauth "google" { emials = [] }`), "8:28", `Did you mean "emails"?`},
		{"misspelt require_oauth", oauthHost(google(issuer), `  require_oauht "google" {}`), "8:3", `Did you mean "require_oauth"?`},
		{"misspelt authorize_parameter", oauthHost(google(issuer, `    authorize_parameters { name = "a" }`)), "7:5", `Did you mean "authorize_parameter"?`},
		{"oauth in a call", "call \"c\" {\n  port     = 4848\n  endpoint = \"https://api.example.net\"\n  oauth \"google\" {}\n}", "4:3", `"oauth" belongs in a host block.`},
		{"require_oauth in a call", "call \"c\" {\n  port     = 4848\n  endpoint = \"https://api.example.net\"\n  require_oauth \"google\" {}\n}", "4:3", `"require_oauth" belongs in a host block.`},
		{"credential in a host", oauthHost(`  credential = "x"`), "3:3", `"credential" belongs in an auth block.`},
	}...)
	for _, name := range []string{"Host", "cookie", "User-Did", "user_handle", "User-Scope", "Proxy-Session", "Apikey-User", "Proxy-Provider", "USER-EMAIL", "User-Subject",
		"Connection", "Content-Length", "Transfer-Encoding", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Proxy-Authorization"} {
		tests = append(tests, struct{ name, src, pos, want string }{"header " + name,
			call + "    name = \"" + name + "\"\n    credential = env(\"WEATHER_API_KEY\")\n  }\n}", "5:12", `so a credential cannot go in it; write another header, such as name = "authorization".`})
	}
	env := func(name string) (string, bool) {
		if name == "CRLF" {
			return "Bearer x\r\nX-Admin: 1", true
		}
		return googleEnv(name)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := Parse([]byte(tt.src), "test.hcl", Options{LookupEnv: env})
			if !diags.HasErrors() || cfg != nil {
				t.Fatalf("config loaded; want an error containing %q", tt.want)
			}
			if lines := diagLines(diags); !findDiag(lines, "test.hcl", tt.pos, "error", tt.want) {
				t.Errorf("no error at test.hcl:%s containing %q; got:\n%s", tt.pos, tt.want, strings.Join(lines, "\n"))
			}
		})
	}
}

// Settings that work but are seldom what was meant load with a warning
// that says what to write instead.
func TestOAuthWarnings(t *testing.T) {
	const call = "call \"weather\" {\n  port     = 4848\n  endpoint = \"https://api.weather.example\"\n  auth {\n    name       = \"x-api-key\"\n"
	tests := []struct {
		name, src, pos, want string
		env                  func(string) (string, bool)
	}{
		{name: "a client secret in the file", src: oauthHost(`  oauth "google" {`, `    client_id     = "x"`, `    client_secret = "GOCSPX-s3cret"`, issuer, `  }`), pos: "5:21",
			want: `Secret in the configuration file: client_secret is written out in the file, so anyone who reads the file (or its history in version control) can use it; write client_secret = env("GOOGLE_CLIENT_SECRET") and set that variable where ioproxy runs.`},
		{name: "a client secret in a heredoc", src: oauthHost(`  oauth "google" {`, `    client_id     = "x"`, `    client_secret = <<EOT`, `GOCSPX-s3cret`, `EOT`, issuer, `  }`), pos: "5:21",
			want: `client_secret is written out in the file`},
		{name: "a client secret as env()'s default", src: oauthHost(`  oauth "google" {`, `    client_id     = "x"`, `    client_secret = env("UNSET", "GOCSPX-s3cret")`, issuer, `  }`), pos: "5:21",
			want: `client_secret has a default in env(), written out in the file, so anyone who reads the file`},
		{name: "a static credential in the file", src: call + "    credential = \"Bearer s3cret-token\"\n  }\n}", pos: "6:18",
			want: `Secret in the configuration file: credential is written out in the file, so anyone who reads the file (or its history in version control) can use it; write credential = env("WEATHER_CREDENTIAL")`},
		{name: "a credential from an unset variable", src: call + "    credential = env(\"WEATHER_TOKEN\")\n  }\n}", pos: "6:18",
			want: `Empty credential: credential is empty, since WEATHER_TOKEN is not set (or is empty): call "weather" sends an empty credential until it is set where ioproxy runs.`},
		{name: "a client id from an unset variable", src: oauthHost(google(issuer)), env: noEnv, pos: "4:21",
			want: `Empty client_id: client_id is empty, since GOOGLE_CLIENT_ID is not set (or is empty): sign-in with "google" fails until it is set where ioproxy runs.`},
		{name: "a client secret from an empty variable", src: oauthHost(`  oauth "google" {`, `    client_id     = "x"`, `    client_secret = "${env("EMPTY")}"`, issuer, `  }`), pos: "5:21",
			want: `client_secret is empty (an env() that is not set?): sign-in with "google" fails until it is set where ioproxy runs.`},
		{name: "emails without the email scope", src: oauthHost(google(issuer, `    scopes = ["openid", "profile"]`), `  require_oauth "google" { emails = ["alice@example.com"] }`), pos: "7:14",
			want: `No email scope: emails cannot be checked without the email scope: require_oauth "google" (test.hcl:9) admits the emails and domains it names, but "google" is not asked for the account's email, so no one gets in. Add "email" to scopes, or name a userinfo_url that gives the email.`},
		{name: "any account without the email scope", src: oauthHost(google(issuer, `    scopes = ["openid"]`), `  require_oauth "google" {}`), pos: "7:14",
			want: `admits any account with a verified email, but "google" is not asked for the account's email`},
		{name: "openid without an issuer", src: oauthHost(google(`    authorize_url    = "https://accounts.google.com/o/oauth2/v2/auth"`, `    access_token_url = "https://oauth2.googleapis.com/token"`)), pos: "3:3",
			want: `OpenID Connect without issuer: scopes has "openid", so ioproxy checks each sign-in's ID token with the keys its issuer publishes. It takes the issuer to be https://accounts.google.com (the authorize_url's origin): its discovery document`},
		{name: "no identity", src: oauthHost(google(`    authorize_url    = "https://github.com/login/oauth/authorize"`, `    access_token_url = "https://github.com/login/oauth/access_token"`, `    scopes           = ["repo"]`)), pos: "8:24",
			want: `Without "openid" in scopes or a userinfo_url, "google" says nothing of who signed in`},
		{name: "a public email domain", src: oauthHost(google(issuer), `  require_oauth "google" { domains = ["GMail.com"] }`), pos: "8:39",
			want: `"GMail.com" admits everyone with an address @gmail.com, which anyone can get. Name the addresses instead, as in emails = ["alice@gmail.com"].`},
		{name: "empty lists", src: oauthHost(google(issuer), `  require_oauth "google" {`, `    emails = []`, `  }`), pos: "8:3",
			want: `emails and domains are empty, so anyone with a verified email who signs in with "google" gets in.`},
		{name: "forward-auth with a provider, without trusted proxies", src: "host \"admin.example.com\" {\n" + google(issuer) + "\n}", pos: "1:1",
			want: `List the proxy's address in trusted_proxies`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == nil {
				env = googleEnv
			}
			cfg, diags := Parse([]byte(tt.src), "test.hcl", Options{LookupEnv: env})
			lines := diagLines(diags)
			if cfg == nil || diags.HasErrors() {
				t.Fatalf("does not load:\n%s", strings.Join(lines, "\n"))
			}
			if !findDiag(lines, "test.hcl", tt.pos, "warning", tt.want) {
				t.Errorf("no warning at test.hcl:%s containing %q; got:\n%s", tt.pos, tt.want, strings.Join(lines, "\n"))
			}
			for _, secret := range []string{"s3cret", "hunter2"} {
				if strings.Contains(strings.Join(lines, "\n"), secret) {
					t.Errorf("a diagnostic quotes the secret:\n%s", strings.Join(lines, "\n"))
				}
			}
		})
	}
}

// No diagnostic quotes a secret: client_secret, a static credential, or a
// password in a URL.
func TestOAuthDiagnosticsHideSecrets(t *testing.T) {
	for _, src := range []string{
		oauthHost(`  oauth "google" {`, `    client_id     = "x"`, `    client_secret = ["s3cret"]`, issuer, `  }`),
		oauthHost(google(`    issuer = "https://me:s3cret@accounts.google.com"`)),
		oauthHost(google(`    issuer = "http://me:s3cret@accounts.google.com"`)),
		"call \"c\" {\n  port     = 4848\n  endpoint = \"https://api.example.net\"\n  auth {\n    name       = \"authorization\"\n    credential = \"s3cret\\n\"\n  }\n}",
	} {
		_, diags := parseGoogle(t, src)
		if len(diags) == 0 {
			t.Fatalf("no diagnostic for:\n%s", src)
		}
		if s := strings.Join(diagLines(diags), "\n"); strings.Contains(s, "s3cret") {
			t.Errorf("a diagnostic quotes the secret:\n%s", s)
		}
	}
}

// A call in one file sends the token of a provider that a host in another
// file defines, whichever file comes first.
func TestOAuthInTwoFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	calls := write("10-calls.hcl", "call \"calendar\" {\n  port     = 4848\n  endpoint = \"www.googleapis.com\"\n  auth {\n    name       = \"authorization\"\n    credential = \"session:google\"\n  }\n}\n")
	hosts := write("20-hosts.hcl", oauthHost(google(issuer), `  require_oauth "google" { domains = ["example.com"] }`))
	for _, paths := range [][]string{{dir}, {hosts, calls}, {calls, hosts}} {
		cfg, diags := LoadAll(paths, Options{LookupEnv: googleEnv})
		if diags.HasErrors() || len(diags) != 0 {
			t.Fatalf("LoadAll(%q):\n%s", paths, strings.Join(diagLines(diags), "\n"))
		}
		if a := cfg.Calls[0].Auth; a == nil || a.Provider != "google" || a.Name != "Authorization" {
			t.Errorf("auth = %+v", a)
		}
		if h, _ := cfg.Host("tools.example.com"); len(h.OAuth) != 1 || h.Access.OAuth["google"] == nil {
			t.Errorf("host = %+v", h)
		}
	}
	// The provider in the other file is misspelt: the error is at the
	// call, in its file, and lists the providers.
	write("10-calls.hcl", "call \"calendar\" {\n  port     = 4848\n  endpoint = \"www.googleapis.com\"\n  auth {\n    name       = \"authorization\"\n    credential = \"session:gogle\"\n  }\n}\n")
	cfg, diags := LoadAll([]string{dir}, Options{LookupEnv: googleEnv})
	if lines := diagLines(diags); cfg != nil || !findDiag(lines, calls, "6:18", "error", `No host defines oauth "gogle"; the providers are "google".`) {
		t.Errorf("misspelt provider:\n%s", strings.Join(lines, "\n"))
	}
}

func TestOAuthExampleFile(t *testing.T) {
	cfg, diags := Load(filepath.Join(repoRoot(t), "examples", "oauth-google.hcl"), Options{LookupEnv: googleEnv})
	if cfg == nil || len(diags) != 0 {
		t.Fatalf("examples/oauth-google.hcl:\n%s", strings.Join(diagLines(diags), "\n"))
	}
	h, ok := cfg.Host("tools.example.com")
	if !ok {
		t.Fatal("host tools.example.com missing")
	}
	p, ok := h.OAuthProvider("google")
	if !ok || p.Issuer != "https://accounts.google.com" || !p.OpenID() || p.AuthorizeParams.Get("access_type") != "offline" || p.ClientSecret != "GOCSPX-not-a-real-secret" {
		t.Errorf("provider = %+v", p)
	}
	if h.Access == nil || h.Access.OAuth["google"] == nil {
		t.Errorf("access = %+v", h.Access)
	}
	var found bool
	for _, c := range cfg.Calls {
		if c.Auth != nil && c.Auth.Provider == "google" {
			found = true
		}
	}
	if !found {
		t.Error("no call sends the user's Google token")
	}
	// Unset variables warn, and nothing worse: validate passes where the
	// secrets are not.
	cfg, diags = Load(filepath.Join(repoRoot(t), "examples", "oauth-google.hcl"), Options{LookupEnv: noEnv})
	if cfg == nil || diags.HasErrors() {
		t.Fatalf("without the environment:\n%s", strings.Join(diagLines(diags), "\n"))
	}
	for _, l := range diagLines(diags) {
		if !strings.Contains(l, "is not set (or is empty)") {
			t.Errorf("without the environment: %s", l)
		}
	}
}

// A misspelt name gets one suggestion: hclsyntax's own, from the block's
// names, or ours.
func TestSuggestionOnce(t *testing.T) {
	for _, src := range []string{
		oauthHost(google(issuer), `  require_oauth "google" { emials = [] }`),
		oauthHost(google(issuer, `    clientid = "x"`)),
		oauthHost(google(issuer, `    token_url = "https://oauth2.googleapis.com/token"`)),
		"host \"a.example.com\" {\n  bakend = \"localhost:1\"\n}",
	} {
		_, diags := parseGoogle(t, src)
		s := strings.Join(diagLines(diags), "\n")
		if n := strings.Count(s, "Did you mean"); n != 1 {
			t.Errorf("%d suggestions:\n%s", n, s)
		}
	}
}
