# A service without a host name of its own, guarded on a port of its own:
# the Nomad UI and API, for people who sign in with AT Protocol and for a
# CI machine with an API key.
# Validate with: go run ./cmd/ioproxy validate -config examples/serve.hcl

# The serve block is the guard: where the service is, which port ioproxy
# opens in front of it, and who gets in. Reached directly on that port it
# admits API keys and public paths only (there is no host name there to
# sign in under); people sign in on a host that routes to it (below).
serve "nomad" {
  name    = "Nomad"
  port    = 9009
  # This machine's address on the private network, which the CI machine
  # reaches; leave bind out for 127.0.0.1 (this machine only).
  bind    = "10.0.0.5"
  backend = "127.0.0.1:4646"

  require_atproto {
    # The DID is the stable rule; handles are checked as verified at
    # sign-in and again at every token refresh.
    dids    = ["did:plc:ewvi7nxzyoun6zhxrhs64oiz"]
    handles = ["alice.example.com", "*.ops.example.com"]
    # Nomad's health check, for the load balancer: open to all.
    public_paths = ["/v1/agent/health"]
  }

  apikey_auth {
    # The CI machine deploys jobs: curl -u ci:<key> http://10.0.0.5:9009/v1/jobs.
    # Entries from `htpasswd -nbB ci <key>`; keep real ones out of the file
    # with users = env("NOMAD_API_KEYS").
    users = <<EOT
ci:$2a$10$MoTUEl2sLaxZyhYsvZQsuO0b1ggcIT9SjiLinuDCGokd0B3rxy4xu
EOT
  }
}

# The host people sign in on: ioproxy terminates TLS for it (ACME) and
# proxies straight to the serve block's backend under the serve block's
# rules. It has no rules of its own; they live in serve "nomad".
host "nomad.example.com" {
  backend = "serving:nomad"
  atproto {
    # Shown on the consent page of the user's authorization server.
    name = "Nomad"
  }
}
