# The production shape: one public host behind ACME certificates, its app
# found through Nomad, and a calling port the app uses to reach users' PDSs.
# Validate with: go run ./cmd/ioproxy validate -config examples/io.hcl

host "statusphere.example.com" {
  name    = "statusphere"
  backend = "nomad:statusphere"
  atproto {
    name   = "Statusphere"
    scopes = ["atproto", "repo:xyz.statusphere.status"]
  }
}

call "atproto" {
  name     = "ATProto"
  port     = 7000
  endpoint = "@"
  # Atproto-Proxy makes the PDS mint a token for another service in the
  # user's name: allow only the ones the app calls.
  service_proxies = ["did:web:api.bsky.app#bsky_appview"]
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
