# An internal tool behind "Sign in with Google", which also calls Google's
# APIs as the signed-in user.
# Validate with: go run ./cmd/ioproxy validate -config examples/oauth-google.hcl
#
# In the Google Cloud console (APIs & Services → Credentials), make an
# OAuth client ID of type "Web application" whose authorized redirect URI
# is https://tools.example.com/@google/callback, then give ioproxy its id
# and secret in the environment:
#
#   GOOGLE_CLIENT_ID=1234-abc.apps.googleusercontent.com
#   GOOGLE_CLIENT_SECRET=GOCSPX-…
#
# Without them the file still validates, with a warning for each: sign-in
# with Google fails until they are set.

host "tools.example.com" {
  name    = "Tools"
  backend = "localhost:3000"

  # Sign-in with Google lives under /@google/ on this host. The secret
  # comes from the environment: a secret written in this file would be read
  # by anyone who reads the file (validate warns of one).
  oauth "google" {
    client_id     = env("GOOGLE_CLIENT_ID")
    client_secret = env("GOOGLE_CLIENT_SECRET")
    # OpenID Connect discovery finds the endpoints and the keys that ID
    # tokens are verified with. A provider without discovery names its
    # endpoints instead: authorize_url and access_token_url (and
    # userinfo_url, for one without OpenID Connect, such as GitHub).
    issuer = "https://accounts.google.com"
    # "email" is what require_oauth checks; calendar.readonly is for the
    # calls below.
    scopes = ["openid", "email", "profile", "https://www.googleapis.com/auth/calendar.readonly"]
    # Google gives a refresh token only to an offline request, so that the
    # calls keep working after the first hour.
    authorize_parameter {
      name  = "access_type"
      value = "offline"
    }
    # And only at the first consent: prompt = consent asks for it at every
    # sign-in (Google's consent screen each time), so that every session
    # has one; without it, a session ends with its 1-hour token.
    authorize_parameter {
      name  = "prompt"
      value = "consent"
    }
  }

  # Who gets in: Alice, and everyone whose Google account is an address
  # @example.com (a Google Workspace domain). Only addresses that Google
  # has verified count. require_atproto and apikey_auth may stand beside
  # it: a request that any of them admits gets in.
  require_oauth "google" {
    emails  = ["alice@example.org"]
    domains = ["example.com"]
  }
}

# The app calls Google's APIs through this port as the signed-in user:
# ioproxy adds an Authorization header with the user's Google access
# token, so the app sends, for example,
#   GET http://127.0.0.1:4848/calendar/v3/users/me/calendarList
# with the Proxy-Session header ioproxy gave it.
call "google" {
  port     = 4848
  endpoint = "www.googleapis.com"
  auth {
    name       = "authorization"
    location   = "header"
    credential = "session:google"
  }
}
