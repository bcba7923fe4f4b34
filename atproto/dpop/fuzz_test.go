package dpop

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fuzzDeadline is far above what parsing a header takes; past it the
// parser is taken to loop.
const fuzzDeadline = 5 * time.Second

// parseWithin runs ParseWWWAuthenticate with a deadline, so that a loop
// fails with its input instead of stalling the fuzzer.
func parseWithin(t *testing.T, values []string) []Challenge {
	t.Helper()
	done := make(chan []Challenge, 1)
	go func() { done <- ParseWWWAuthenticate(values) }()
	select {
	case c := <-done:
		return c
	case <-time.After(fuzzDeadline):
		t.Fatalf("ParseWWWAuthenticate(%q) did not return within %s", values, fuzzDeadline)
		return nil
	}
}

// FuzzParseWWWAuthenticate feeds arbitrary WWW-Authenticate values, as a
// PDS or any server a user names may send them.
//
// Properties: the parser terminates; every challenge has a non-empty
// token scheme, non-nil parameters whose names are non-empty lower-case
// tokens (as Challenge documents), and either a token68 (token68
// characters, then "=" padding) or parameters, not both; and header
// values are parsed independently: parsing two values gives the
// challenges of each, in order.
func FuzzParseWWWAuthenticate(f *testing.F) {
	for _, s := range [][2]string{
		{`DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`, ""},
		{`DPoP algs="ES256", error="invalid_token"`, `Bearer realm="x"`},
		{`Bearer error="invalid_token", DPoP error="use_dpop_nonce"`, ""},
		{`Basic dXNlcjpwYXNz`, `Negotiate abc==, DPoP error="x"`},
		{`DPoP error="a\"b\\c,d"`, ``},
		{`DPoP error="unterminated`, `Bearer`},
		{`DPoP"x", Bearer error=y`, `,,, ,`},
		{`DPoP ERROR=USE_DPOP_NONCE, Error=second`, ``},
		{`dpop error = "spaced" , realm=r`, "\t"},
		{`DPoP error="use_dpop_nonce" junk, Bearer x=y`, `=, =x, x=, "q", DPoP =`},
		{`Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple"`, ""},
		{"DPoP error=\"\xff\x00\"", "\x00"},
		{`a b=c=d, e`, `tok68=== , x`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, v1, v2 string) {
		both := parseWithin(t, []string{v1, v2})
		for _, c := range both {
			checkChallenge(t, c)
		}
		first := parseWithin(t, []string{v1})
		second := parseWithin(t, []string{v2})
		if want := append(append([]Challenge{}, first...), second...); !equalChallenges(both, want) {
			t.Fatalf("parsing %q and %q together gives %+v; one by one %+v", v1, v2, both, want)
		}
	})
}

func checkChallenge(t *testing.T, c Challenge) {
	t.Helper()
	if c.Scheme == "" || !isToken(c.Scheme) {
		t.Fatalf("challenge with scheme %q", c.Scheme)
	}
	if c.Params == nil {
		t.Fatalf("challenge %q has nil Params", c.Scheme)
	}
	for name := range c.Params {
		if name == "" || !isToken(name) || name != strings.ToLower(name) {
			t.Fatalf("challenge %q has the parameter name %q", c.Scheme, name)
		}
	}
	if c.Token68 != "" {
		if len(c.Params) != 0 {
			t.Fatalf("challenge %q has both token68 %q and params %v", c.Scheme, c.Token68, c.Params)
		}
		body := strings.TrimRight(c.Token68, "=")
		if body == "" || strings.IndexFunc(body, func(r rune) bool { return r > 0x7f || !isToken68char(byte(r)) }) >= 0 {
			t.Fatalf("challenge %q has the token68 %q", c.Scheme, c.Token68)
		}
	}
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

// equalChallenges treats nil and empty results alike.
func equalChallenges(a, b []Challenge) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return reflect.DeepEqual(a, b)
}

// FuzzWWWAuthenticateRoundTrip builds a well-formed header from fuzzed
// parts and checks that the parser gives those parts back: any scheme
// and parameter name that are tokens, any value that a quoted-string can
// hold (escaped as RFC 9110 says), followed by a second challenge.
func FuzzWWWAuthenticateRoundTrip(f *testing.F) {
	f.Add("DPoP", "error", "use_dpop_nonce", "Bearer")
	f.Add("DPoP", "Error_Description", `a "quoted", \escaped, value`, "DPoP")
	f.Add("x", "realm", "", "Basic")
	f.Add("Newauth", "title", "Login to \"apps\"", "y")
	f.Add("a", "b", "tab\there, and high bytes \xc3\xa9", "c")
	f.Fuzz(func(t *testing.T, scheme, name, value, scheme2 string) {
		if scheme == "" || !isToken(scheme) || name == "" || !isToken(name) || scheme2 == "" || !isToken(scheme2) {
			return
		}
		if strings.ContainsFunc(value, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			return // not allowed in a quoted-string
		}
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(value) + `"`
		header := scheme + " " + name + "=" + quoted + ", other=token, " + scheme2 + ` error="x"`
		got := parseWithin(t, []string{header})
		want := []Challenge{
			{Scheme: scheme, Params: map[string]string{strings.ToLower(name): value, "other": "token"}},
			{Scheme: scheme2, Params: map[string]string{"error": "x"}},
		}
		if strings.ToLower(name) == "other" {
			want[0].Params["other"] = value // the first one wins
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q parses as %+v, want %+v", header, got, want)
		}
	})
}

// closeCounter is a response body that counts its closes.
type closeCounter struct {
	io.Reader
	closes int
}

func (c *closeCounter) Close() error {
	c.closes++
	return nil
}

// FuzzNonceChallenge builds responses with arbitrary status, headers and
// body, as an authorization server or PDS (both chosen by the user) may
// send them, and asks NonceChallenge and IsInvalidToken about them.
//
// Properties: neither panics; NonceChallenge says yes only for a 400 or
// 401 with a non-empty DPoP-Nonce, and then returns exactly that header
// (trimmed); it says yes exactly when the documented signals are there (a
// 400 whose small JSON body has error "use_dpop_nonce"; a 401 whose first
// DPoP challenge has that error, or that body); IsInvalidToken says yes
// only for a 401 whose DPoP or Bearer challenge has error
// "invalid_token"; and after both, the body still reads in full, and
// closing it closes the original once.
func FuzzNonceChallenge(f *testing.F) {
	nonceBody := []byte(`{"error":"use_dpop_nonce","error_description":"Authorization server requires nonce in DPoP proof"}`)
	f.Add(uint8(0), "", "nonce-1", nonceBody)
	f.Add(uint8(1), `DPoP error="use_dpop_nonce"`, "nonce-2", []byte(""))
	f.Add(uint8(1), `DPoP error="invalid_token"`, "nonce-3", []byte(`{"error":"InvalidToken"}`))
	f.Add(uint8(1), `Bearer error="invalid_token"`, "", []byte(`{"error":"ExpiredToken"}`))
	f.Add(uint8(1), "Bearer realm=\"x\"\nDPoP error=\"use_dpop_nonce\"", " n ", []byte("not json"))
	f.Add(uint8(0), `DPoP error="use_dpop_nonce"`, "n", []byte(`{"error":"invalid_dpop_proof"}`))
	f.Add(uint8(2), `DPoP error="use_dpop_nonce"`, "n", nonceBody)
	f.Add(uint8(0), "", "n", append(nonceBody, bytes.Repeat([]byte(" "), maxPeekBytes)...))
	f.Add(uint8(0), "", "n", []byte(`{"error":"use_dpop_nonce","error":"other"}`))
	f.Add(uint8(0), "", "\t", nonceBody)
	// The two status codes that may ask for a nonce, and some that may not.
	statuses := []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusOK, http.StatusForbidden, http.StatusInternalServerError}
	f.Fuzz(func(t *testing.T, status uint8, www, nonce string, body []byte) {
		code := statuses[int(status)%len(statuses)]
		h := http.Header{}
		for _, v := range strings.Split(www, "\n") {
			if v != "" {
				h.Add("WWW-Authenticate", v)
			}
		}
		h.Set("DPoP-Nonce", nonce)
		orig := &closeCounter{Reader: bytes.NewReader(body)}
		resp := &http.Response{StatusCode: code, Header: h, Body: orig}

		got, ok := NonceChallenge(resp)
		invalid := IsInvalidToken(resp)

		trimmed := strings.TrimSpace(nonce)
		if ok && (got != trimmed || got == "") {
			t.Fatalf("NonceChallenge returned %q; the DPoP-Nonce header is %q", got, nonce)
		}
		want := false
		if trimmed != "" {
			switch code {
			case http.StatusBadRequest:
				want = bodyError(body) == "use_dpop_nonce"
			case http.StatusUnauthorized:
				want = firstError(h, "DPoP") == "use_dpop_nonce" || bodyError(body) == "use_dpop_nonce"
			}
		}
		if ok != want {
			t.Fatalf("NonceChallenge(%d, %q, nonce %q, body %q) = %v, want %v", code, www, nonce, body, ok, want)
		}
		wantInvalid := code == http.StatusUnauthorized && (firstError(h, "DPoP") == "invalid_token" || firstError(h, "Bearer") == "invalid_token")
		if invalid != wantInvalid {
			t.Fatalf("IsInvalidToken(%d, %q) = %v, want %v", code, www, invalid, wantInvalid)
		}

		rest, err := io.ReadAll(resp.Body)
		if err != nil || !bytes.Equal(rest, body) {
			t.Fatalf("after the checks the body reads %q, %v; want %q", rest, err, body)
		}
		if err := resp.Body.Close(); err != nil || orig.closes != 1 {
			t.Fatalf("closing the body: %v, original closed %d times", err, orig.closes)
		}
	})
}

// bodyError is the "error" member of a JSON object body small enough to
// be looked at.
func bodyError(body []byte) string {
	if len(body) > maxPeekBytes {
		return ""
	}
	var v struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	return v.Error
}

// firstError is the error parameter of the first challenge of the scheme.
func firstError(h http.Header, scheme string) string {
	for _, c := range ParseWWWAuthenticate(h.Values("WWW-Authenticate")) {
		if strings.EqualFold(c.Scheme, scheme) {
			return c.Params["error"]
		}
	}
	return ""
}

// FuzzHTUOrigin checks HTU and Origin, which normalize the URLs of
// endpoints that servers chosen by the user publish: HTU goes into every
// DPoP proof, Origin keys the nonce store.
//
// Properties: both accept the same URLs; the htu has no query and no
// fragment (RFC 9449 §4.2), a lower-case scheme and host without the
// default port, a rooted path, and is its own htu; the origin is the
// origin of the htu and its own origin; and a nonce stored under the URL
// is found under its htu and its origin.
func FuzzHTUOrigin(f *testing.F) {
	for _, s := range []string{
		"https://pds.example.com/xrpc/com.atproto.repo.createRecord", "https://PDS.Example.COM:443/xrpc?x=1#frag",
		"http://localhost:2583/oauth/token", "http://localhost:80", "https://pds.example.com", "https://pds.example.com:8443/a%2Fb",
		"https://[::1]/x", "https://[::1]:443/x", "https://[fe80::1%25eth0]/x", "https://user:pw@pds.example.com/x",
		"https://pds.example.com:/x", "https://pds.example.com:0443/x", "https://:443/x", "ftp://pds.example.com/x",
		"pds.example.com/x", "https:///x", "https://p%C3%A9.example/x", "https://pds.example.com/?", "https://pds.example.com/a b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, errO := Origin(s)
		h, errH := HTU(s)
		if (errO == nil) != (errH == nil) {
			t.Fatalf("Origin(%q) = %q, %v but HTU = %q, %v", s, o, errO, h, errH)
		}
		if errO != nil {
			return
		}
		if strings.ContainsAny(h, "?#") {
			t.Fatalf("HTU(%q) = %q keeps a query or fragment", s, h)
		}
		if in, err := url.Parse(s); err != nil || strings.Contains(in.Host, "%") {
			// An IPv6 zone is written with a bare "%", which does not
			// parse again; safehttp refuses link-local addresses anyway.
			return
		}
		u, err := url.Parse(h)
		if err != nil {
			t.Fatalf("HTU(%q) = %q, which does not parse: %v", s, h, err)
		}
		def := map[string]string{"https": "443", "http": "80"}[u.Scheme]
		if def == "" || u.Host != strings.ToLower(u.Host) || u.Port() == def || u.User != nil || !strings.HasPrefix(u.EscapedPath(), "/") {
			t.Fatalf("HTU(%q) = %q: scheme %q, host %q, user %v, path %q", s, h, u.Scheme, u.Host, u.User, u.EscapedPath())
		}
		if again, err := HTU(h); err != nil || again != h {
			t.Fatalf("HTU(%q) = %q, whose htu is %q, %v", s, h, again, err)
		}
		for _, from := range []string{h, o} {
			if again, err := Origin(from); err != nil || again != o {
				t.Fatalf("Origin(%q) = %q, but Origin(%q) = %q, %v", s, o, from, again, err)
			}
		}
		var n Nonces
		if !n.Set(s, "fuzz-nonce") {
			t.Fatalf("Nonces.Set(%q) stored nothing", s)
		}
		if n.Get(h) != "fuzz-nonce" || n.Get(o) != "fuzz-nonce" {
			t.Fatalf("a nonce stored for %q is not found under %q or %q", s, h, o)
		}
	})
}
