package redact

import (
	"strings"
	"testing"
)

const jwt = "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJkaWQ6cGxjOmFiYyJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"

func TestString(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		// Normal log content survives unchanged.
		{"empty", "", ""},
		{"did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "did:plc:ewvi7nxzyoun6zhxrhs64oiz"},
		{"did web", "did:web:alice.example.com", "did:web:alice.example.com"},
		{"handle", "alice.bsky.social", "alice.bsky.social"},
		{"host and port", "pds.example.com:443", "pds.example.com:443"},
		{"remote ipv4", "203.0.113.7:4711", "203.0.113.7:4711"},
		{"remote ipv6", "[2001:db8::1]:443", "[2001:db8::1]:443"},
		{"xrpc path", "/xrpc/com.atproto.repo.createRecord", "/xrpc/com.atproto.repo.createRecord"},
		{"sign-in path", "/@/callback", "/@/callback"},
		{"duration and status", "took 15ms, status 502 (Bad Gateway)", "took 15ms, status 502 (Bad Gateway)"},
		{"logfmt without secrets", "status=502 duration=15ms kind=call", "status=502 duration=15ms kind=call"},
		{"url without query", "upstream https://pds.example/xrpc/com.atproto.repo.getRecord", "upstream https://pds.example/xrpc/com.atproto.repo.getRecord"},
		{"url with port only", "http://localhost:3000", "http://localhost:3000"},
		{"ipv6 url without query", "http://[::1]:8080", "http://[::1]:8080"},
		{"at uri", "at://did:plc:abc/xyz.statusphere.status/3n33jai3lbc2t", "at://did:plc:abc/xyz.statusphere.status/3n33jai3lbc2t"},
		{"bare path query is not a url", "/p?x=1", "/p?x=1"},
		{"escaped question mark", "https://h.example/a%3Fcursor=1", "https://h.example/a%3Fcursor=1"},
		{"question at end of sentence", "did you mean https://h.example/p?", "did you mean https://h.example/p?"},
		{"unicode prose", "статус 👍 von did:plc:abc — ok", "статус 👍 von did:plc:abc — ok"},
		{"dpop prose", "DPoP proof: sign: key is damaged", "DPoP proof: sign: key is damaged"},
		{"dpop acronym", "parse DPoP JWK: bad", "parse DPoP JWK: bad"},
		{"bearer prose", "Bearer token expired.", "Bearer token expired."},
		{"basic prose", "Basic authentication is off", "Basic authentication is off"},
		{"www-authenticate dpop", `WWW-Authenticate: DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`, `WWW-Authenticate: DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`},
		{"www-authenticate basic", `Basic realm="ioproxy"`, `Basic realm="ioproxy"`},
		{"longer word than key", "auth_code=abc mycode=def tokens=3", "auth_code=abc mycode=def tokens=3"},
		{"token_type is not a token", `{"token_type":"DPoP","scope":"atproto"}`, `{"token_type":"DPoP","scope":"atproto"}`},
		{"status code", "code=404", "code=404"},
		{"not a jwt", "keyJar.x eyJ eyJabc eyJ.x", "keyJar.x eyJ eyJabc eyJ.x"},
		{"colon at the start", ": x", ": x"},
		{"colon prose", "refresh token: invalid_grant; state: expired; exchange code: 400", "refresh token: invalid_grant; state: expired; exchange code: 400"},
		{"ordinary fields", "{Host:statusphere DID:did:plc:abc ClientID:https://app.example/meta.json TokenExpiry:2026-12-01 Code:404}",
			"{Host:statusphere DID:did:plc:abc ClientID:https://app.example/meta.json TokenExpiry:2026-12-01 Code:404}"},
		{"ordinary headers", "map[Accept:[*/*] User-Agent:[Go-http-client/1.1] Www-Authenticate:[DPoP error=\"use_dpop_nonce\"]]",
			"map[Accept:[*/*] User-Agent:[Go-http-client/1.1] Www-Authenticate:[DPoP error=\"use_dpop_nonce\"]]"},

		// URLs lose their queries and fragments.
		{"url error", `Get "https://pds.example/xrpc/com.atproto.repo.listRecords?repo=did:plc:abc&cursor=SECRET": dial tcp 127.0.0.1:1: connect: connection refused`,
			`Get "https://pds.example/xrpc/com.atproto.repo.listRecords?…": dial tcp 127.0.0.1:1: connect: connection refused`},
		{"url at end", "fetch https://h.example/p?a=b", "fetch https://h.example/p?…"},
		{"url followed by colon", "https://h.example/p?a=b: dial tcp", "https://h.example/p?…: dial tcp"},
		{"url in parentheses", "(see https://h.example/p?a=b).", "(see https://h.example/p?…)."},
		{"quoted query with spaces", `Get "https://h.example/p?q=a b&c=SECRET": EOF`, `Get "https://h.example/p?…": EOF`},
		{"quoted with escaped quote", `"https://h.example/p?q=\"x\"&c=SECRET" then`, `"https://h.example/p?…" then`},
		{"single quoted", "'https://h.example/p?q=a b' x", "'https://h.example/p?…' x"},
		{"angle brackets", "<https://h.example/p?q=1>", "<https://h.example/p?…>"},
		{"escaped json quotes", `{\"url\":\"https://h.example/p?a=b\"}`, `{\"url\":\"https://h.example/p?…\"}`},
		{"multiple urls", "https://a.example/x?1 and http://b.example/?2, wss://c.example/s?3",
			"https://a.example/x?… and http://b.example/?…, wss://c.example/s?…"},
		{"ipv6 host", "http://[::1]:8080/x?y", "http://[::1]:8080/x?…"},
		{"query without path", "https://h.example?a=b", "https://h.example?…"},
		{"websocket", "ws://h.example/subscribe?wantedCollections=x&cursor=1", "ws://h.example/subscribe?…"},
		{"upper case scheme", "HTTPS://H.EXAMPLE/P?X=1", "HTTPS://H.EXAMPLE/P?…"},
		{"fragment only", "https://h.example/cb#access_token=x", "https://h.example/cb#…"},
		{"query and fragment", "https://h.example/cb?a=1#b", "https://h.example/cb?…"},
		{"unicode url", "héllo https://exämple.org/p?q=秘密 ok", "héllo https://exämple.org/p?… ok"},
		{"newline ends url", "https://h.example/p?a=b\nnext line", "https://h.example/p?…\nnext line"},
		{"userinfo", "https://user:hunter2@auth.example.com/token?x=SECRETQ", "https://[redacted]@auth.example.com/token?…"},
		{"dsn", "postgres://u:pw@db.internal/x?sslmode=disable", "postgres://[redacted]@db.internal/x?…"},
		{"loopback client id", "http://localhost?redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&scope=atproto", "http://localhost?…"},
		{"nested url in query", "https://a.example/r?next=https://b.example/?code=x", "https://a.example/r?…"},
		{"jwt in path", "https://h.example/t/" + jwt + "/x", "https://h.example/t/[redacted-jwt]/x"},

		// JWTs.
		{"jwt", "token " + jwt + " rejected", "token [redacted-jwt] rejected"},
		{"two-part jwt", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0", "[redacted-jwt]"},
		{"unsigned jws keeps full stop", "got eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "got [redacted-jwt]."},
		{"jwe", "eyJhbGciOiJkaXIifQ..aXY.Y3Q.dGFn", "[redacted-jwt]"},
		{"jwt after colon", "at:" + jwt, "at:[redacted-jwt]"},
		{"jwt after secret key and colon", "dpop:" + jwt, "dpop:[redacted]"},

		// Authorization credentials.
		{"dpop header", "Authorization: DPoP " + jwt, "Authorization: DPoP [redacted]"},
		{"bearer header", "Authorization: Bearer abc.def-123", "Authorization: Bearer [redacted]"},
		{"basic", "Basic dXNlcjpodW50ZXIy", "Basic [redacted]"},
		{"basic with padding", "basic dXNlcjpwYXNzMQ==, then", "basic [redacted], then"},
		{"header map", "map[Authorization:[Bearer tool-token] Accept:[*/*]]", "map[Authorization:[Bearer [redacted]] Accept:[*/*]]"},
		{"word after authorization", "Authorization: Bearer secret", "Authorization: Bearer [redacted]"},
		{"json authorization", `{"Authorization":"Bearer abc123"}`, `{"Authorization":"[redacted]"}`},
		{"scheme inside a word", "xbasic dXNlcjpodW50ZXIy", "xbasic dXNlcjpodW50ZXIy"},
		{"unencoded basic", "Basic alice:hunter2 sent", "Basic [redacted] sent"},
		{"authorization without scheme", "Authorization: t00l-t0ken", "Authorization: [redacted]"},

		// Secret parameters.
		{"refresh grant", "grant_type=refresh_token&refresh_token=abc123&client_id=https%3A%2F%2Fapp.example%2Fmeta.json",
			"grant_type=refresh_token&refresh_token=[redacted]&client_id=https%3A%2F%2Fapp.example%2Fmeta.json"},
		{"code grant", "grant_type=authorization_code&code=cod-3&code_verifier=v3r&redirect_uri=x",
			"grant_type=authorization_code&code=[redacted]&code_verifier=[redacted]&redirect_uri=x"},
		{"client assertion", "client_assertion_type=urn%3Aietf&client_assertion=" + jwt,
			"client_assertion_type=urn%3Aietf&client_assertion=[redacted]"},
		{"callback params", "state=s7a7e&iss=https%3A%2F%2Fpds&code=abc", "state=[redacted]&iss=https%3A%2F%2Fpds&code=[redacted]"},
		{"other secrets", "id_token=a token=b password=c dpop=d request_uri=urn:ietf:params:oauth:request_uri:x",
			"id_token=[redacted] token=[redacted] password=[redacted] dpop=[redacted] request_uri=[redacted]"},
		{"suffix keys", "csrf_token=a Client_Secret=b admin_password=c", "csrf_token=[redacted] Client_Secret=[redacted] admin_password=[redacted]"},
		{"upper case key", "ACCESS_TOKEN=abc", "ACCESS_TOKEN=[redacted]"},
		{"quoted value", `token="a b" next`, `token="[redacted]" next`},
		{"value ends at comma", "state=abc, code=def;", "state=[redacted], code=[redacted];"},
		{"percent-escaped separator", "x%26code%3Dab&code=cd", "x%26code%3Dab&code=[redacted]"},
		{"after escaped ampersand", "a=1%26state=xyz", "a=1%26state=[redacted]"},
		{"json body", `{"access_token":"abc","token_type":"DPoP","refresh_token": "def","sub":"did:plc:x","expires_in":3600}`,
			`{"access_token":"[redacted]","token_type":"DPoP","refresh_token": "[redacted]","sub":"did:plc:x","expires_in":3600}`},
		{"escaped json body", `body {\"refresh_token\":\"abc\",\"sub\":\"did:plc:x\"}`, `body {\"refresh_token\":\"[redacted]\",\"sub\":\"did:plc:x\"}`},
		{"scheme as a value", "authorization=Bearer abc&x=1", "authorization=Bearer [redacted]&x=1"},
		{"url as a value", "state=https://h.example/p?a=1&b=2 next", "state=[redacted] next"},
		{"ambiguous escape", "%access_token=abc %26code=d", "%access_token=[redacted] %26code=[redacted]"},
		{"auth-param with redacted value", "Bearer realm=" + jwt, "Bearer realm=[redacted-jwt]"},
		// Names as Go, JSON and headers spell them.
		{"camel case keys", "accessToken=a AccessToken=b refreshToken=c idToken=d IDToken=e clientSecret=f codeVerifier=g PKCEVerifier=h",
			"accessToken=[redacted] AccessToken=[redacted] refreshToken=[redacted] idToken=[redacted] IDToken=[redacted] clientSecret=[redacted] codeVerifier=[redacted] PKCEVerifier=[redacted]"},
		{"key names", "DPoPKey=a dpopKey=b dpop_key=c ProxyKey=d proxy_key=e sessionId=f session_id=g SessionID=h csrfToken=i",
			"DPoPKey=[redacted] dpopKey=[redacted] dpop_key=[redacted] ProxyKey=[redacted] proxy_key=[redacted] sessionId=[redacted] session_id=[redacted] SessionID=[redacted] csrfToken=[redacted]"},
		{"hyphenated keys", "X-Api-Key=a x-access_token=b auth-code=c", "X-Api-Key=[redacted] x-access_token=[redacted] auth-code=[redacted]"},
		{"go field in message", "grant: RefreshToken:ref-5ecret5ecret", "grant: RefreshToken:[redacted]"},
		{"go struct", "{ID:c00kie ProxyKey:pr0xy Host:statusphere AccessToken:opaque-123 RefreshToken:ref-5 DPoPKey:[123 34 100 34] Scope:atproto}",
			"{ID:c00kie ProxyKey:[redacted] Host:statusphere AccessToken:[redacted] RefreshToken:[redacted] DPoPKey:[[redacted]] Scope:atproto}"},
		{"go syntax struct", `redact.session{ID:"c00kie", ProxyKey:"pr0xy", Host:"statusphere"}`, `redact.session{ID:"c00kie", ProxyKey:"[redacted]", Host:"statusphere"}`},
		{"nested struct field", "{DPoPKey:{Kty:EC D:pr1vate X:{A:1}} Host:h}", "{DPoPKey:{[redacted]} Host:h}"},
		{"header map", "map[Accept:[*/*] Cookie:[__Host-ioproxy=c00kie; other=1] Proxy-Session:[pr0xy] Set-Cookie:[a=1; Path=/; HttpOnly]]",
			"map[Accept:[*/*] Cookie:[[redacted]] Proxy-Session:[[redacted]] Set-Cookie:[[redacted]]]"},
		{"bracket inside a value", "map[Cookie:[a]b; c=d] Accept:[x]]", "map[Cookie:[[redacted]] Accept:[x]]"},
		{"unclosed bracket", "map[Cookie:[a=1; b=2", "map[Cookie:[[redacted]"},
		{"header lines", "Cookie: __Host-ioproxy=c00kie; other=1\r\nProxy-Session: pr0xy\r\nSet-Cookie: a=1; Path=/\r\nAccept: */*",
			"Cookie: [redacted]\r\nProxy-Session: [redacted]\r\nSet-Cookie: [redacted]\r\nAccept: */*"},
		{"cookie map entry without brackets", "map[Cookie:a=1; b=2 Host:h]", "map[Cookie:[redacted]]"},
		{"json camel case", `{"accessToken":"a","IdToken":"b","dpop_key":"c","sessionId":"d","clientSecret":"e","host":"h"}`,
			`{"accessToken":"[redacted]","IdToken":"[redacted]","dpop_key":"[redacted]","sessionId":"[redacted]","clientSecret":"[redacted]","host":"h"}`},
		{"json private jwk", `{"dpop_key":{"kty":"EC","d":"pr1vate","x":"a]}"},"host":"h"}`, `{"dpop_key":["[redacted]"],"host":"h"}`},
		{"json header values", `{"Accept":["*/*"],"Cookie":["__Host-ioproxy=c00kie"],"Proxy-Session":["pr0xy"]}`,
			`{"Accept":["*/*"],"Cookie":["[redacted]"],"Proxy-Session":["[redacted]"]}`},
		{"json header values redacted", `{"Cookie":["[redacted]"]}`, `{"Cookie":["[redacted]"]}`},
		{"pretty json", "{\n  \"dpop_key\": {\n    \"d\": \"pr1vate\"\n  },\n  \"host\": \"h\"\n}", "{\n  \"dpop_key\": [\"[redacted]\"],\n  \"host\": \"h\"\n}"},
		{"escaped json object", `msg="{\"dpop_key\":{\"d\":\"pr\\\"1}vate\"},\"host\":\"h\"}"`, `msg="{\"dpop_key\":[\"[redacted]\"],\"host\":\"h\"}"`},
		{"escaped json unclosed", `msg="{\"dpop_key\":{\"d\":\"x" then`, `msg="{\"dpop_key\":[\"[redacted]\"]" then`},
		{"already redacted", "https://[redacted]@h/p?… code=[redacted] [redacted-jwt] Bearer [redacted]", "https://[redacted]@h/p?… code=[redacted] [redacted-jwt] Bearer [redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := String(tt.in)
			if got != tt.want {
				t.Errorf("String(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			if again := String(got); again != got {
				t.Errorf("String is not idempotent on %q: %q", got, again)
			}
		})
	}
}

// TestStringNoCopy checks the fast path: clean strings come back as the
// same string, without allocating.
func TestStringNoCopy(t *testing.T) {
	tests := []string{
		"",
		"request",
		"did:plc:ewvi7nxzyoun6zhxrhs64oiz",
		"https://pds.example/xrpc/com.atproto.repo.getRecord",
		"status=502 kind=call",
		"DPoP proof: sign: key is damaged",
		"[2001:db8::1]:443",
	}
	for _, in := range tests {
		if allocs := testing.AllocsPerRun(100, func() { String(in) }); allocs != 0 {
			t.Errorf("String(%q) allocates %v times", in, allocs)
		}
		if _, changed := scrub(in); changed {
			t.Errorf("scrub(%q) reports a change", in)
		}
	}
}

func BenchmarkString(b *testing.B) {
	const mb = 1 << 20
	tests := []struct{ name, in string }{
		{"clean", "GET /xrpc/com.atproto.repo.getRecord did:plc:ewvi7nxzyoun6zhxrhs64oiz 203.0.113.7:4711"},
		{"url error", `Get "https://pds.example/xrpc/com.atproto.repo.listRecords?repo=did:plc:abc&cursor=SECRET": dial tcp 127.0.0.1:1: connect: connection refused`},
		{"1MB clean", strings.Repeat("did:plc:abc alice.test took 15ms status=502 ", mb/44)},
		{"1MB urls", strings.Repeat("Get \"https://h.example/p?a=b&code=c\": EOF ", mb/40)},
		{"1MB one quoted url", `"https://h.example/p?` + strings.Repeat("a b ", mb/4)},
		{"1MB jwt run", "eyJ" + strings.Repeat("A", mb)},
		{"1MB triggers", strings.Repeat("=: J\"", mb/5)},
		{"1MB bearer", strings.Repeat("Bearer ", mb/7)},
		{"1MB schemes", strings.Repeat("http://", mb/7)},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.SetBytes(int64(len(tt.in)))
			b.ReportAllocs()
			for b.Loop() {
				String(tt.in)
			}
		})
	}
}
