package server

import (
	"testing"

	"github.com/ioproxy/ioproxy/config"
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
