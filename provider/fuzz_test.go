package provider

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v2/jwa"
)

// FuzzTokenResponse checks parseTokenAnswer on any token endpoint answer
// (seeds in testdata/fuzz/FuzzTokenResponse: Google, GitHub, zitadel and
// broken shapes).
//
// Properties: it never panics; an accepted answer came with a 2xx status,
// has the access token as written, token type "Bearer" (the answer said
// bearer in any case), and an expires_in within [0, maxExpiresIn]; an
// *OAuthError holds a clipped code and description without control
// characters, and is never both ErrInvalidGrant and ErrUnavailable; and
// no error message quotes the access or refresh token.
func FuzzTokenResponse(f *testing.F) {
	f.Add(200, []byte(`{"access_token":"ya29.a0","expires_in":3599,"scope":"openid email","token_type":"Bearer","id_token":"e.e.e"}`))
	f.Add(400, []byte(`{"error":"invalid_grant","error_description":"Bad Request"}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 599 {
			status = 100 + (status%500+500)%500
		}
		a := &answer{status: status, contentType: "application/json", body: body}
		ans, err := parseTokenAnswer(a)
		var raw struct {
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
			TokenType    string `json:"token_type"`
		}
		decoded := json.Unmarshal(body, &raw) == nil
		if err == nil {
			if status < 200 || status > 299 {
				t.Fatalf("accepted an answer with HTTP %d", status)
			}
			if !decoded || ans.AccessToken == "" || ans.AccessToken != raw.AccessToken {
				t.Fatalf("access token %q, the answer has %q", ans.AccessToken, raw.AccessToken)
			}
			if ans.TokenType != "Bearer" || !strings.EqualFold(raw.TokenType, "bearer") {
				t.Fatalf("token type %q from %q", ans.TokenType, raw.TokenType)
			}
			if ans.ExpiresIn < 0 || ans.ExpiresIn > maxExpiresIn {
				t.Fatalf("expires_in %d", ans.ExpiresIn)
			}
			return
		}
		if ans != nil {
			t.Fatalf("an error (%v) and an answer", err)
		}
		var oe *OAuthError
		if errors.As(err, &oe) {
			if len(oe.Code) > maxErrorCode+len("…") || len(oe.Description) > maxErrorDescription+len("…") {
				t.Fatalf("unclipped error %q: %q", oe.Code, oe.Description)
			}
			if errors.Is(err, ErrInvalidGrant) && errors.Is(err, ErrUnavailable) {
				t.Fatalf("%v is both dead and passing", err)
			}
		}
		msg := err.Error()
		for _, r := range msg {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("control character in %q", msg)
			}
		}
		if !utf8.ValidString(msg) {
			t.Fatalf("invalid UTF-8 in %q", msg)
		}
		if decoded {
			// The message may hold a token's text from elsewhere (a
			// token_type equal to it, a fixed word); it must not once the
			// tokens are something else.
			var fields map[string]json.RawMessage
			if json.Unmarshal(body, &fields) != nil {
				return
			}
			for k := range fields {
				if strings.EqualFold(k, "access_token") || strings.EqualFold(k, "refresh_token") {
					fields[k] = json.RawMessage(`"\u0001\u0001\u0001\u0001\u0001\u0001\u0001\u0001"`)
				}
			}
			body2, err := json.Marshal(fields)
			if err != nil {
				return
			}
			_, err2 := parseTokenAnswer(&answer{status: status, contentType: a.contentType, body: body2})
			for _, secret := range []string{raw.AccessToken, raw.RefreshToken} {
				if len(secret) >= 8 && strings.Contains(msg, secret) && (err2 == nil || !strings.Contains(err2.Error(), secret)) {
					t.Fatalf("error %q quotes a token (%v without it)", msg, err2)
				}
			}
		}
	})
}

// fuzzIssuer is the issuer FuzzDiscovery checks documents for.
const fuzzIssuer = "https://accounts.example.com"

// FuzzDiscovery checks parseDiscovery on any discovery document (seeds in
// testdata/fuzz/FuzzDiscovery: Google's, zitadel's, broken ones).
//
// Properties: it never panics; an accepted document names exactly the
// issuer it was fetched for; its authorization and token endpoints (and
// jwks_uri when keys are needed) are set; every endpoint kept is the
// document's own value and passes checkEndpoint (https, or http on
// loopback; no user info, no fragment); client_secret_post is chosen only
// when the document lists it and not client_secret_basic.
func FuzzDiscovery(f *testing.F) {
	f.Add([]byte(`{"issuer":"https://accounts.example.com","authorization_endpoint":"https://accounts.example.com/o/oauth2/v2/auth","token_endpoint":"https://oauth2.example.com/token","jwks_uri":"https://www.example.com/oauth2/v3/certs"}`), true)
	f.Fuzz(func(t *testing.T, body []byte, needKeys bool) {
		ep, err := parseDiscovery(body, fuzzIssuer, needKeys)
		if err != nil {
			if ep != nil {
				t.Fatalf("an error (%v) and endpoints", err)
			}
			return
		}
		var d discoveryDocument
		if err := json.Unmarshal(body, &d); err != nil {
			t.Fatalf("accepted what does not decode: %v", err)
		}
		if ep.issuer != fuzzIssuer || d.Issuer != fuzzIssuer {
			t.Fatalf("accepted issuer %q", d.Issuer)
		}
		if ep.authorize == "" || ep.token == "" || (needKeys && ep.jwks == "") {
			t.Fatalf("accepted without a required endpoint: %+v", ep)
		}
		for _, pair := range [][2]string{
			{ep.authorize, d.AuthorizationEndpoint}, {ep.token, d.TokenEndpoint}, {ep.jwks, d.JWKSURI},
			{ep.userinfo, d.UserinfoEndpoint}, {ep.revocation, d.RevocationEndpoint},
		} {
			if pair[0] != pair[1] {
				t.Fatalf("endpoint %q, the document has %q", pair[0], pair[1])
			}
			if pair[0] == "" {
				continue
			}
			if _, err := checkEndpoint(pair[0]); err != nil {
				t.Fatalf("accepted endpoint %q: %v", pair[0], err)
			}
		}
		if ep.authPost && (!slices.Contains(d.TokenAuthMethods, "client_secret_post") || slices.Contains(d.TokenAuthMethods, "client_secret_basic")) {
			t.Fatalf("client_secret_post chosen from %q", d.TokenAuthMethods)
		}
	})
}

// FuzzUserinfo checks parseUserinfo on any userinfo answer (seeds in
// testdata/fuzz/FuzzUserinfo: OpenID Connect's and GitHub's shapes).
//
// Properties: it never panics; an accepted answer has a subject of at
// most maxSubject bytes, which is its sub when that is a non-empty string,
// and otherwise its id.
func FuzzUserinfo(f *testing.F) {
	f.Add([]byte(`{"sub":"10769150350006150715113082367","email":"a@example.com","email_verified":true,"name":"A"}`))
	f.Add([]byte(`{"login":"octocat","id":583231,"email":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		id, err := parseUserinfo(body)
		if err != nil {
			if id != (Identity{}) {
				t.Fatalf("an error (%v) and an identity", err)
			}
			return
		}
		if id.Subject == "" || len(id.Subject) > maxSubject {
			t.Fatalf("subject %q", id.Subject)
		}
		var raw struct {
			Sub any `json:"sub"`
		}
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatalf("accepted what does not decode: %v", err)
		}
		if s, ok := raw.Sub.(string); ok && s != "" && s != id.Subject {
			t.Fatalf("subject %q, sub %q", id.Subject, s)
		}
	})
}

// FuzzKeySet checks parseKeySet on any key set an issuer may publish.
//
// Properties: it never panics; every key it keeps is a public, asymmetric
// signing key (RSA of at least minRSABits, EC, or Ed25519), never a
// symmetric one: a symmetric key in the set would let whoever knows it
// (the client secret, say) forge ID tokens.
func FuzzKeySet(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"a"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},{"kty":"OKP","crv":"X25519","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		set, err := parseKeySet(body)
		if err != nil {
			return
		}
		for i := 0; i < set.Len(); i++ {
			k, _ := set.Key(i)
			switch k.KeyType() {
			case jwa.RSA, jwa.EC, jwa.OKP:
			default:
				t.Fatalf("kept a key of type %s", k.KeyType())
			}
			if _, isPrivate := k.(interface{ D() []byte }); isPrivate {
				t.Fatalf("kept a private key")
			}
		}
	})
}
