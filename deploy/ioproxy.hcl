# ioproxy's configuration for the Nomad deployment (deploy/nomad/ioproxy.nomad.hcl
# renders it into the task as /etc/ioproxy/io.hcl). The node-specific parts
# come from the environment the job sets; their defaults keep everything on
# loopback, so the file also validates on a laptop:
#   go run ./cmd/ioproxy validate -config deploy/ioproxy.hcl
#
# Change the host name (a block label cannot come from the environment) and
# the ACME email before the first deployment.

data_dir = "/data"

ingress {
  http  = 80
  https = 443
}

tls {
  acme {
    email = env("ACME_EMAIL", "ops@example.com")
  }
}

# Metrics, health and the traffic view. The job binds it to the node's
# private address so that Nomad's health check and Prometheus can reach it;
# never bind it to a public address.
admin {
  listen = env("IOPROXY_ADMIN_LISTEN", "127.0.0.1:9901")
}

log {
  level  = env("IOPROXY_LOG_LEVEL", "info")
  format = "json"
}

# ioproxy finds the app through Nomad's service API. NOMAD_ADDR and
# NOMAD_TOKEN come from the environment (the job sets them; the token is
# the task's workload identity), so nothing secret is written here.
nomad {
  refresh = "10s"
}

host "statusphere.example.com" {
  name    = "statusphere"
  backend = "nomad:statusphere"
  atproto {
    name   = "Statusphere"
    scopes = ["atproto", "repo:xyz.statusphere.status"]
  }
}

# The calling port carries signed-in users' credentials: it listens on the
# node's private address (IOPROXY_CALL_BIND, set by the job), which the app's
# container reaches and the internet does not.
call "atproto" {
  name     = "ATProto"
  port     = 7000
  bind     = env("IOPROXY_CALL_BIND", "127.0.0.1")
  endpoint = "@"
  operation "ListRecords" {
    method      = "GET"
    path        = "/xrpc/com.atproto.repo.listRecords"
    description = "List records in a repo"
  }
  operation "GetProfile" {
    method      = "GET"
    path        = "/xrpc/app.bsky.actor.getProfile"
    description = "Get a user's profile"
  }
  operation "CreateRecord" {
    method      = "POST"
    path        = "/xrpc/com.atproto.repo.createRecord"
    description = "Create a record in a repo"
  }
}
