package oauth

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// FuzzTokenResponse decodes arbitrary token endpoint answers (the
// authorization server is whichever one the user's PDS names) and checks
// checkTokenResponse on them.
//
// Properties: an accepted answer has token type DPoP (any case), a
// non-empty access token, a scope holding "atproto" as one of its
// space-separated tokens (RFC 6749 §3.3: scope tokens are separated by
// %x20 only), and a sub that is a DID, returned as written.
func FuzzTokenResponse(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"at","token_type":"DPoP","expires_in":3600,"refresh_token":"rt","scope":"atproto transition:generic","sub":"did:plc:ewvi7nxzyoun6zhxrhs64oiz"}`,
		`{"access_token":"at","token_type":"dpop","scope":"atproto","sub":"did:web:example.com"}`,
		`{"access_token":"at","token_type":"Bearer","scope":"atproto","sub":"did:plc:ewvi7nxzyoun6zhxrhs64oiz"}`,
		`{"access_token":"","token_type":"DPoP","scope":"atproto","sub":"did:plc:ewvi7nxzyoun6zhxrhs64oiz"}`,
		`{"access_token":"at","token_type":"DPoP","scope":"transition:generic","sub":"did:plc:ewvi7nxzyoun6zhxrhs64oiz"}`,
		`{"access_token":"at","token_type":"DPoP","scope":"atprotox notatproto","sub":"did:plc:ewvi7nxzyoun6zhxrhs64oiz"}`,
		`{"access_token":"at","token_type":"DPoP","scope":"atproto","sub":"alice.bsky.social"}`,
		`{"access_token":"at","token_type":"DPoP","scope":"atproto","sub":"did:plc:"}`,
		`{"access_token":"at","token_type":"DPoP","scope":"atproto","sub":"DID:plc:abc"}`,
		`{"access_token":"at","token_type":"DPoP","scope":" atproto ","sub":"did:plc:abc","expires_in":-1}`,
		`{"access_token":"at","token_type":"DPoP","scope":"atproto","sub":"did:plc:abc","Access_Token":"other"}`,
		`{"access_token":1,"token_type":"DPoP"}`, `null`, `[]`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var tok tokenResponse
		if json.Unmarshal(data, &tok) != nil {
			return
		}
		did, err := checkTokenResponse(&tok)
		if err != nil {
			if did != "" {
				t.Fatalf("checkTokenResponse failed (%v) but returned %q", err, did)
			}
			return
		}
		if !strings.EqualFold(tok.TokenType, "DPoP") || tok.AccessToken == "" {
			t.Fatalf("accepted token type %q, access token %q", tok.TokenType, tok.AccessToken)
		}
		if !slices.Contains(strings.Split(tok.Scope, " "), "atproto") {
			t.Fatalf("accepted the scope %q, which has no space-separated atproto token", tok.Scope)
		}
		if parsed, err := syntax.ParseDID(tok.Sub); err != nil || did != parsed || did.String() != tok.Sub {
			t.Fatalf("accepted sub %q as %q (%v)", tok.Sub, did, err)
		}
	})
}

// fuzzIssuer is the issuer FuzzServerMetadata validates metadata for.
const fuzzIssuer = "https://auth.example.com"

// FuzzServerMetadata decodes arbitrary authorization server metadata and
// checks validate on it.
//
// Properties: accepted metadata names the issuer it was fetched for;
// every endpoint the client uses (authorization, token, PAR, and
// revocation when given) is an absolute https URL (http only in
// development) with a host name, without user info or fragment; PAR is
// required; the iss parameter and client metadata documents are
// supported; ES256 is among the DPoP algorithms; and the scope and PKCE
// lists, when given, hold atproto and S256.
func FuzzServerMetadata(f *testing.F) {
	valid, err := json.Marshal(validMetadata())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, false)
	f.Add(valid, true)
	edits := []string{
		`{"token_endpoint":"http://auth.example.com/oauth/token"}`,
		`{"token_endpoint":"https://u:p@auth.example.com/oauth/token"}`,
		`{"pushed_authorization_request_endpoint":"https://auth.example.com/par#x"}`,
		`{"pushed_authorization_request_endpoint":"//auth.example.com/par"}`,
		`{"authorization_endpoint":"javascript:alert(1)//"}`,
		`{"authorization_endpoint":"HTTPS://AUTH.EXAMPLE.COM/x"}`,
		`{"revocation_endpoint":""}`, `{"revocation_endpoint":"ftp://x/"}`,
		`{"require_pushed_authorization_requests":false}`, `{"dpop_signing_alg_values_supported":["es256"]}`,
		`{"scopes_supported":[]}`, `{"scopes_supported":["transition:generic"]}`, `{"code_challenge_methods_supported":["plain"]}`,
		`{"issuer":"https://auth.example.com/"}`, `{"issuer":"https://AUTH.example.com"}`, `{"issuer":null}`,
		`{"token_endpoint":"https://auth.example.com\\@evil.example/token"}`, `{"token_endpoint":"https://auth.example.com:99999/token"}`,
	}
	for _, e := range edits {
		var m map[string]any
		if err := json.Unmarshal(valid, &m); err != nil {
			f.Fatal(err)
		}
		var edit map[string]any
		if err := json.Unmarshal([]byte(e), &edit); err != nil {
			f.Fatalf("seed edit %s: %v", e, err)
		}
		for k, v := range edit {
			m[k] = v
		}
		b, err := json.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, allowHTTP bool) {
		var m ServerMetadata
		if json.Unmarshal(data, &m) != nil {
			return
		}
		if err := m.validate(fuzzIssuer, allowHTTP); err != nil {
			return
		}
		if m.Issuer != fuzzIssuer {
			t.Fatalf("accepted metadata of issuer %q for %q", m.Issuer, fuzzIssuer)
		}
		endpoints := map[string]string{
			"authorization_endpoint":                m.AuthorizationEndpoint,
			"token_endpoint":                        m.TokenEndpoint,
			"pushed_authorization_request_endpoint": m.PushedAuthorizationRequestEndpoint,
		}
		if m.RevocationEndpoint != "" {
			endpoints["revocation_endpoint"] = m.RevocationEndpoint
		}
		for name, ep := range endpoints {
			u, err := url.Parse(ep)
			if err != nil {
				t.Fatalf("accepted %s %q, which does not parse: %v", name, ep, err)
			}
			if u.Scheme != "https" && !(allowHTTP && u.Scheme == "http") {
				t.Fatalf("accepted %s %q with scheme %q (allowHTTP %v)", name, ep, u.Scheme, allowHTTP)
			}
			if u.Hostname() == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
				t.Fatalf("accepted %s %q: host name %q, user %v, fragment %q", name, ep, u.Hostname(), u.User, u.Fragment)
			}
		}
		switch {
		case !m.RequirePushedAuthorizationRequests, !m.AuthorizationResponseISSParamSupported, !m.ClientIDMetadataDocumentSupported:
			t.Fatalf("accepted metadata without PAR required, iss or client metadata support: %+v", m)
		case !slices.Contains(m.DPoPSigningAlgValuesSupported, "ES256"):
			t.Fatalf("accepted DPoP algorithms %q", m.DPoPSigningAlgValuesSupported)
		case len(m.ScopesSupported) > 0 && !slices.Contains(m.ScopesSupported, "atproto"):
			t.Fatalf("accepted scopes %q", m.ScopesSupported)
		case len(m.CodeChallengeMethodsSupported) > 0 && !slices.Contains(m.CodeChallengeMethodsSupported, "S256"):
			t.Fatalf("accepted PKCE methods %q", m.CodeChallengeMethodsSupported)
		}
	})
}

// FuzzOrigin checks origin, which turns a PDS address and the
// authorization server a PDS names (both chosen by whoever signs in) into
// the issuer that sessions are bound to.
//
// Properties: an accepted URL is http(s) with a host name and no path beyond
// "/", no query and no fragment; the result is the lower-case
// scheme://host of the input, parses back to that scheme and host with
// nothing else, and is its own origin.
func FuzzOrigin(f *testing.F) {
	for _, s := range []string{
		"https://bsky.social", "https://bsky.social/", "https://BSKY.social:443", "http://localhost:2583", "https://pds.example.com/xrpc",
		"https://pds.example.com?x", "https://pds.example.com/?", "https://pds.example.com#x", "https://user@pds.example.com",
		"https://user:pw@pds.example.com/", "https://[::1]:8080", "https://[fe80::1%25eth0]", "ftp://pds.example.com",
		"https:pds.example.com", "//pds.example.com", "https://pds.example.com:", "https://p%C3%A9.example", "https://pds.example.com/%2F",
		"HTTPS://PDS.EXAMPLE.COM", "https://pds.example.com\\@evil.example", "https://pds.example.com:99999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := origin(s)
		if err != nil {
			return
		}
		in, err := url.Parse(s)
		if err != nil {
			t.Fatalf("origin(%q) accepted a URL that does not parse: %v", s, err)
		}
		if (in.Path != "" && in.Path != "/") || in.RawQuery != "" || in.Fragment != "" || in.Hostname() == "" {
			t.Fatalf("origin(%q) = %q accepted a URL that is not an origin", s, o)
		}
		if want := strings.ToLower(in.Scheme + "://" + in.Host); o != want {
			t.Fatalf("origin(%q) = %q, want %q", s, o, want)
		}
		if strings.Contains(in.Host, "%") {
			// An IPv6 zone: the result holds a bare "%", which does not
			// parse. Link-local addresses are refused when dialled, so
			// such an issuer fails closed; the checks below cannot apply.
			return
		}
		out, err := url.Parse(o)
		if err != nil || out.Scheme != strings.ToLower(in.Scheme) || out.Host != strings.ToLower(in.Host) ||
			out.Path != "" || out.RawQuery != "" || out.ForceQuery || out.Fragment != "" || out.User != nil || out.Opaque != "" {
			t.Fatalf("origin(%q) = %q, which parses as %#v, %v", s, o, out, err)
		}
		if again, err := origin(o); err != nil || again != o {
			t.Fatalf("origin(%q) = %q, whose origin is %q, %v", s, o, again, err)
		}
	})
}
