package server

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/sessions"
)

// A provider sends the browser back to the host's public origin: https
// (a host with TLS off sits behind a TLS terminator), but for a local
// host served on plain HTTP.
func TestProviderBaseURL(t *testing.T) {
	cfg, diags := config.Parse([]byte(`
ingress {
  http  = "127.0.0.1:8080"
  https = "127.0.0.1:8443"
  trusted_proxies = ["10.0.0.0/8"]
}
host "admin.example.com" {
  backend = "localhost:3000"
  tls { mode = "off" }
}
host "tools.example.com" {
  backend = "localhost:3000"
  tls { mode = "self_signed" }
}
host "localhost" {
  backend = "localhost:3000"
  tls { mode = "off" }
}
`), "t.hcl", config.Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	for host, want := range map[string]string{
		"admin.example.com": "https://admin.example.com",
		"tools.example.com": "https://tools.example.com:8443",
		"localhost":         "http://localhost:8080",
	} {
		h, _ := cfg.Host(host)
		if got := providerBaseURL(cfg, h); got != want {
			t.Errorf("providerBaseURL(%s) = %q, want %q", host, got, want)
		}
	}
}

// The Lifecycle finds a provider session's client only while the host's
// block of that name has the issuer and client the session was made
// with: a session of a former issuer sends its tokens nowhere.
func TestProviderLookup(t *testing.T) {
	cfg, diags := config.Parse([]byte(`
host "tools.example.com" {
  backend = "localhost:3000"
  oauth "google" {
    client_id     = "client"
    client_secret = "secret"
    issuer        = "https://accounts.google.com"
  }
}
`), "t.hcl", config.Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	s := &Server{providerHTTP: http.DefaultClient}
	set, err := s.newProviders(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var cur atomic.Pointer[providerSet]
	cur.Store(&set)
	lookup := providerLookup(&cur)
	ok := sessions.Session{Host: "tools.example.com", Provider: "google", Issuer: "https://accounts.google.com", ClientID: "client"}
	for _, tc := range []struct {
		name string
		edit func(*sessions.Session)
		want bool
	}{
		{"its provider", func(*sessions.Session) {}, true},
		{"a former issuer", func(s *sessions.Session) { s.Issuer = "https://old.example" }, false},
		{"a former client", func(s *sessions.Session) { s.ClientID = "old" }, false},
		{"another provider", func(s *sessions.Session) { s.Provider = "github" }, false},
		{"another host", func(s *sessions.Session) { s.Host = "other.example.com" }, false},
	} {
		sess := ok
		tc.edit(&sess)
		if _, got := lookup(sess); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
