# The local shape: everything on this machine, signing in against the local
# atmosphere (PLC directory and PDS) that ./scripts/local starts.
# The browser opens http://127.0.0.1:9000; sign-in uses the OAuth localhost
# client, whose redirect comes back to that same port.

data_dir = env("IOPROXY_DATA_DIR", "./.local/ioproxy")

ingress {
  http  = "127.0.0.1:8080"
  https = "127.0.0.1:8443"
}

identity {
  plc_url         = env("ATMO_PLC_URL", "http://localhost:2582")
  handle_resolver = env("ATMO_PDS_URL", "http://localhost:2583")
  allow_insecure  = true # the local PDS speaks http:// on loopback
}

admin {
  listen = "127.0.0.1:9901"
}

host "localhost" {
  name    = "statusphere"
  backend = "localhost:3000"
  atproto {
    name   = "Statusphere"
    scopes = ["atproto", "repo:xyz.statusphere.status"]
    local  = 9000
  }
}

call "statusphere" {
  name     = "statusphere"
  port     = 9000
  endpoint = "localhost"
  insecure = true
}

call "atproto" {
  name     = "ATProto"
  port     = 7000
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
