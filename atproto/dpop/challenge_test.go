package dpop

import (
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func response(status int, headers map[string][]string, body string) *http.Response {
	h := http.Header{}
	for k, vs := range headers {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body))}
}

func TestNonceChallenge(t *testing.T) {
	const nonceErr = `{"error":"use_dpop_nonce","error_description":"Authorization server requires nonce in DPoP proof"}`
	tests := []struct {
		name      string
		status    int
		headers   map[string][]string
		body      string
		wantOK    bool
		wantNonce string
	}{
		{
			name:    "authorization server 400",
			status:  400,
			headers: map[string][]string{"DPoP-Nonce": {"n1"}, "Content-Type": {"application/json"}},
			body:    nonceErr, wantOK: true, wantNonce: "n1",
		},
		{
			name:    "400 JSON with whitespace",
			status:  400,
			headers: map[string][]string{"Dpop-Nonce": {"  n1  "}},
			body:    "{\n  \"error\" : \"use_dpop_nonce\"\n}\n", wantOK: true, wantNonce: "n1",
		},
		{
			name:    "400 other error",
			status:  400,
			headers: map[string][]string{"DPoP-Nonce": {"n1"}},
			body:    `{"error":"invalid_grant"}`,
		},
		{
			name:   "400 without nonce header",
			status: 400,
			body:   nonceErr,
		},
		{
			name:    "400 not JSON",
			status:  400,
			headers: map[string][]string{"DPoP-Nonce": {"n1"}},
			body:    `use_dpop_nonce`,
		},
		{
			name:    "400 huge body",
			status:  400,
			headers: map[string][]string{"DPoP-Nonce": {"n1"}},
			body:    `{"error":"use_dpop_nonce","pad":"` + strings.Repeat("x", 20000) + `"}`,
		},
		{
			name:   "resource server 401",
			status: 401,
			headers: map[string][]string{"DPoP-Nonce": {"n2"}, "WWW-Authenticate": {
				`DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`}},
			body: `{"error":"use_dpop_nonce","message":"Resource server requires nonce in DPoP proof"}`, wantOK: true, wantNonce: "n2",
		},
		{
			name:   "401 lowercase scheme, params first",
			status: 401,
			headers: map[string][]string{"DPoP-Nonce": {"n2"}, "WWW-Authenticate": {
				`dpop algs="ES256 RS256", error="use_dpop_nonce"`}},
			wantOK: true, wantNonce: "n2",
		},
		{
			name:   "401 unquoted token value",
			status: 401,
			headers: map[string][]string{"DPoP-Nonce": {"n2"}, "WWW-Authenticate": {
				`DPoP error=use_dpop_nonce`}},
			wantOK: true, wantNonce: "n2",
		},
		{
			name:   "401 Bearer and DPoP in one header",
			status: 401,
			headers: map[string][]string{"DPoP-Nonce": {"n2"}, "WWW-Authenticate": {
				`Bearer realm="pds, main", error="invalid_token", DPoP realm="pds", error="use_dpop_nonce"`}},
			wantOK: true, wantNonce: "n2",
		},
		{
			name:   "401 two header lines",
			status: 401,
			headers: map[string][]string{"DPoP-Nonce": {"n2"}, "WWW-Authenticate": {
				`Bearer realm="x"`, `DPoP error="use_dpop_nonce"`}},
			wantOK: true, wantNonce: "n2",
		},
		{
			name:   "401 quoted string mentioning use_dpop_nonce is not the error",
			status: 401,
			headers: map[string][]string{"DPoP-Nonce": {"n2"}, "WWW-Authenticate": {
				`DPoP error="invalid_token", error_description="error=\"use_dpop_nonce\" later"`}},
		},
		{
			name:   "401 use_dpop_nonce under Bearer only",
			status: 401,
			headers: map[string][]string{"DPoP-Nonce": {"n2"}, "WWW-Authenticate": {
				`Bearer error="use_dpop_nonce"`}},
		},
		{
			name:   "401 invalid_token",
			status: 401,
			headers: map[string][]string{"DPoP-Nonce": {"n2"}, "WWW-Authenticate": {
				`DPoP error="invalid_token", error_description="\"exp\" claim timestamp check failed"`}},
		},
		{
			name:    "401 JSON body, no WWW-Authenticate",
			status:  401,
			headers: map[string][]string{"DPoP-Nonce": {"n2"}},
			body:    `{"error":"use_dpop_nonce"}`, wantOK: true, wantNonce: "n2",
		},
		{
			name:   "401 without nonce header",
			status: 401,
			headers: map[string][]string{"WWW-Authenticate": {
				`DPoP error="use_dpop_nonce"`}},
		},
		{
			name:    "200 with nonce header",
			status:  200,
			headers: map[string][]string{"DPoP-Nonce": {"n3"}},
			body:    `{"error":"use_dpop_nonce"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := response(tt.status, tt.headers, tt.body)
			nonce, ok := NonceChallenge(resp)
			if ok != tt.wantOK || (ok && nonce != tt.wantNonce) {
				t.Errorf("NonceChallenge = %q, %v; want %q, %v", nonce, ok, tt.wantNonce, tt.wantOK)
			}
			// The caller must still be able to read the whole body.
			got, err := io.ReadAll(resp.Body)
			if err != nil || string(got) != tt.body {
				t.Errorf("body after NonceChallenge = %d bytes (%v), want %d bytes intact", len(got), err, len(tt.body))
			}
			if err := resp.Body.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	if _, ok := NonceChallenge(nil); ok {
		t.Error("nil response")
	}
}

type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestNonceChallengeClosesOriginalBody(t *testing.T) {
	rec := &closeRecorder{Reader: strings.NewReader(`{"error":"use_dpop_nonce"}`)}
	resp := &http.Response{StatusCode: 400, Header: http.Header{"Dpop-Nonce": {"n"}}, Body: rec}
	if _, ok := NonceChallenge(resp); !ok {
		t.Fatal("not recognized")
	}
	resp.Body.Close()
	if !rec.closed {
		t.Error("original body not closed")
	}
}

func TestIsInvalidToken(t *testing.T) {
	tests := []struct {
		status int
		www    []string
		want   bool
	}{
		{401, []string{`DPoP error="invalid_token", error_description="token expired"`}, true},
		{401, []string{`dpop ERROR="invalid_token"`}, true},
		{401, []string{`Bearer error="invalid_token"`}, true},
		{401, []string{`DPoP algs="ES256", error="invalid_token"`}, true},
		{401, []string{`Basic realm="x"`, `DPoP error="invalid_token"`}, true},
		{401, []string{`DPoP error="use_dpop_nonce"`}, false},
		{401, []string{`DPoP error="invalid_dpop_proof"`}, false},
		{401, nil, false},
		{403, []string{`DPoP error="invalid_token"`}, false},
		{400, []string{`DPoP error="invalid_token"`}, false},
	}
	for _, tt := range tests {
		resp := response(tt.status, map[string][]string{"WWW-Authenticate": tt.www}, "")
		if got := IsInvalidToken(resp); got != tt.want {
			t.Errorf("IsInvalidToken(%d, %q) = %v, want %v", tt.status, tt.www, got, tt.want)
		}
	}
}

func TestParseWWWAuthenticate(t *testing.T) {
	tests := []struct {
		in   []string
		want []Challenge
	}{
		{[]string{`DPoP`}, []Challenge{{Scheme: "DPoP", Params: map[string]string{}}}},
		{[]string{`DPoP error="use_dpop_nonce"`}, []Challenge{{Scheme: "DPoP", Params: map[string]string{"error": "use_dpop_nonce"}}}},
		{[]string{`Basic abc123==`}, []Challenge{{Scheme: "Basic", Token68: "abc123==", Params: map[string]string{}}}},
		{[]string{`Basic abc123==, DPoP error=x`}, []Challenge{
			{Scheme: "Basic", Token68: "abc123==", Params: map[string]string{}},
			{Scheme: "DPoP", Params: map[string]string{"error": "x"}},
		}},
		{[]string{`Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple"`}, []Challenge{
			{Scheme: "Newauth", Params: map[string]string{"realm": "apps", "type": "1", "title": `Login to "apps"`}},
			{Scheme: "Basic", Params: map[string]string{"realm": "simple"}},
		}},
		{[]string{`DPoP  Error = "a, b" ,  ALGS="ES256" ,, Bearer`}, []Challenge{
			{Scheme: "DPoP", Params: map[string]string{"error": "a, b", "algs": "ES256"}},
			{Scheme: "Bearer", Params: map[string]string{}},
		}},
		{[]string{`, ,DPoP error="x", error="y"`}, []Challenge{
			{Scheme: "DPoP", Params: map[string]string{"error": "x"}},
		}},
		{[]string{`DPoP error="unterminated`}, []Challenge{
			{Scheme: "DPoP", Params: map[string]string{"error": "unterminated"}},
		}},
		{[]string{``, `   `}, nil},
		{[]string{`"garbage", DPoP error="x"`}, []Challenge{
			{Scheme: "DPoP", Params: map[string]string{"error": "x"}},
		}},
	}
	for _, tt := range tests {
		got := ParseWWWAuthenticate(tt.in)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseWWWAuthenticate(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
	}
}
