# ioproxy's configuration for several replicas behind a load balancer
# (deploy/nomad/ioproxy-replicas.nomad.hcl renders it into each task as
# /etc/ioproxy/io.hcl). It differs from deploy/ioproxy.hcl in two places:
#
#   - sessions live in Redis, sealed with a key every replica shares, so a
#     sign-in started on one replica finishes on another and the load
#     balancer needs no sticky sessions;
#   - TLS ends at the load balancer, so the replicas need no port 443 and
#     no certificate. (ACME in ioproxy also works on replicas: with Redis
#     they share the certificates and order each once; see deploy/README.)
#
# Nothing here comes with a default that could start a replica on a store of
# its own by mistake: without IOPROXY_REDIS_URL and IOPROXY_SESSION_KEY the
# file does not validate. To check it on a laptop:
#   IOPROXY_REDIS_URL=redis://127.0.0.1:6379/0 \
#   IOPROXY_SESSION_KEY="$(openssl rand -base64 32)" \
#   IOPROXY_TRUSTED_PROXIES=10.0.0.0/16 \
#   go run ./cmd/ioproxy validate -config deploy/ioproxy-replicas.hcl
#
# Change the host name (a block label cannot come from the environment)
# before the first deployment.

# With the Redis store and TLS at the load balancer nothing is written here;
# static certificate files or the self-signed mode would use it.
data_dir = "/data"

# Plain HTTP from the load balancer. No host has a certificate, so ioproxy
# opens no HTTPS listener. trusted_proxies is the load balancer's private
# address range: its X-Forwarded-For names the visitor, and its
# X-Forwarded-Proto = https is what makes ioproxy set Secure, __Host-
# cookies. Keep port 80 of the nodes closed to everyone but the load
# balancer.
ingress {
  http            = 80
  trusted_proxies = [env("IOPROXY_TRUSTED_PROXIES")]
}

# Metrics, health and the traffic view, on the node's private address.
# /readyz answers 503 while Redis does not.
admin {
  listen = env("IOPROXY_ADMIN_LISTEN", "127.0.0.1:9901")
}

log {
  level  = env("IOPROXY_LOG_LEVEL", "info")
  format = "json"
}

nomad {
  refresh = "10s"
}

# Shared by every replica: sessions, pending sign-ins, the OAuth client key
# (each replica publishes the same /@/jwks.json) and the lock that lets one
# replica at a time refresh a session's tokens. The job renders both
# variables from Nomad: the url from the service "redis", the key from the
# Nomad variable nomad/jobs/ioproxy. To rotate the key, see "Several
# replicas" in deploy/README.md.
sessions {
  store          = "redis"
  url            = env("IOPROXY_REDIS_URL")
  key_prefix     = "ioproxy:"
  encryption_key = env("IOPROXY_SESSION_KEY")
}

host "statusphere.example.com" {
  name    = "statusphere"
  backend = "nomad:statusphere"
  atproto {
    name   = "Statusphere"
    scopes = ["atproto", "repo:xyz.statusphere.status"]
  }
  # The load balancer holds the certificate. The OAuth client id and
  # redirect stay https://statusphere.example.com/@/..., which is what
  # visitors and authorization servers reach.
  tls {
    mode = "off"
  }
}

# As in deploy/ioproxy.hcl: the calling port on the node's private address.
# Any replica serves any session, so an app may use the replica on its own
# node or any other.
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
