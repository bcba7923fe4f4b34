# Internal tools behind AT Protocol sign-in instead of Basic Auth.
# Validate with: go run ./cmd/ioproxy validate -config examples/internal-tool.hcl

ingress {
  # nginx on this machine terminates TLS for admin.example.com (below):
  # its X-Forwarded-* headers are believed.
  trusted_proxies = ["127.0.0.1"]
}

# ioproxy in front: it terminates TLS (ACME) and proxies to the dashboard.
host "grafana.example.com" {
  name    = "Grafana"
  backend = "localhost:3000"
  require_atproto {
    # The DID is the stable rule; handles are checked as verified at
    # sign-in and again at every token refresh.
    dids         = ["did:plc:ewvi7nxzyoun6zhxrhs64oiz"]
    handles      = ["alice.example.com", "*.ops.example.com"]
    public_paths = ["/api/health", "/public/*"]
  }
  apikey_auth {
    # Scripts and CI: curl -u ci:<key>. Entries from `htpasswd -nbB ci <key>`;
    # keep real ones out of the file with users = env("GRAFANA_API_KEYS").
    users = <<EOT
ci:$2a$10$MoTUEl2sLaxZyhYsvZQsuO0b1ggcIT9SjiLinuDCGokd0B3rxy4xu
EOT
  }
}

# nginx in front (examples/nginx-forward-auth.conf): ioproxy has no
# backend for this host; it answers nginx's auth subrequests at /@/auth and
# serves the sign-in routes that nginx passes on.
host "admin.example.com" {
  name = "Admin"
  require_atproto {
    handles = ["*.ops.example.com"]
  }
  tls { mode = "off" }
}

