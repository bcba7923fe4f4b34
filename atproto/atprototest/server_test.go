package atprototest_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/atproto/atprototest"
	"github.com/ioproxy/ioproxy/atproto/dpop"
)

// A minimal hand-written client, independent of atproto/oauth, so that
// the fake is checked against the protocol rather than against our client.

const redirect = "http://127.0.0.1:9000/@/callback"

func clientID() string {
	return "http://localhost?" + url.Values{"redirect_uri": {redirect}, "scope": {"atproto"}}.Encode()
}

type flow struct {
	t      *testing.T
	srv    *atprototest.Server
	key    *dpop.Key
	nonce  string
	access string
	refr   string
}

func (f *flow) post(path string, form url.Values) (*http.Response, map[string]any) {
	f.t.Helper()
	for attempt := 0; attempt < 2; attempt++ {
		proof, err := f.key.Proof(dpop.ProofParams{Method: "POST", URL: f.srv.URL + path, Nonce: f.nonce})
		if err != nil {
			f.t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("DPoP", proof)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			f.t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if n := resp.Header.Get("DPoP-Nonce"); n != "" {
			f.nonce = n
		}
		if resp.StatusCode == 400 && body["error"] == "use_dpop_nonce" {
			continue
		}
		return resp, body
	}
	f.t.Fatal("nonce retry failed")
	return nil, nil
}

func newFlow(t *testing.T, srv *atprototest.Server, did string) *flow {
	t.Helper()
	key, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	f := &flow{t: t, srv: srv, key: key}
	verifier := strings.Repeat("v", 50)
	sum := sha256.Sum256([]byte(verifier))
	resp, body := f.post("/oauth/par", url.Values{
		"client_id": {clientID()}, "response_type": {"code"}, "redirect_uri": {redirect}, "scope": {"atproto"},
		"state": {"st"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
	})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PAR: %d %v", resp.StatusCode, body)
	}
	cb, err := srv.Approve(body["request_uri"].(string), did)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(cb)
	if u.Query().Get("iss") != srv.Issuer() || u.Query().Get("state") != "st" {
		t.Fatalf("callback %s", cb)
	}
	resp, body = f.post("/oauth/token", url.Values{
		"client_id": {clientID()}, "grant_type": {"authorization_code"}, "code": {u.Query().Get("code")},
		"redirect_uri": {redirect}, "code_verifier": {verifier},
	})
	if resp.StatusCode != 200 || body["token_type"] != "DPoP" || body["sub"] != did {
		t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	f.access, f.refr = body["access_token"].(string), body["refresh_token"].(string)
	return f
}

// call makes an XRPC call; edit may spoil the proof parameters or request.
func (f *flow) call(edit func(p *dpop.ProofParams, r *http.Request)) (*http.Response, string) {
	f.t.Helper()
	u := f.srv.URL + "/xrpc/com.example.echo?x=1"
	req, _ := http.NewRequest("GET", u, nil)
	req.Header.Set("Authorization", "DPoP "+f.access)
	p := dpop.ProofParams{Method: "GET", URL: u, Nonce: f.nonce, AccessToken: f.access}
	if edit != nil {
		edit(&p, req)
	}
	proof, err := f.key.Proof(p)
	if err != nil {
		f.t.Fatal(err)
	}
	if req.Header.Get("DPoP") == "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestIdentity(t *testing.T) {
	srv := atprototest.New(t, atprototest.Options{})
	a := srv.AddAccount(atprototest.Account{Handle: "Alice.Test"})
	resp, err := http.Get(srv.URL + "/" + a.DID)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		ID          string   `json:"id"`
		AlsoKnownAs []string `json:"alsoKnownAs"`
		Service     []struct {
			ID, Type, ServiceEndpoint string
		} `json:"service"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if doc.ID != a.DID || len(doc.AlsoKnownAs) != 1 || doc.AlsoKnownAs[0] != "at://alice.test" ||
		len(doc.Service) != 1 || doc.Service[0].ServiceEndpoint != srv.URL || doc.Service[0].Type != "AtprotoPersonalDataServer" {
		t.Errorf("DID document %+v", doc)
	}
	resp, _ = http.Get(srv.URL + "/xrpc/com.atproto.identity.resolveHandle?handle=alice.test")
	var out map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if out["did"] != a.DID {
		t.Errorf("resolveHandle = %v", out)
	}
	resp, _ = http.Get(srv.URL + "/xrpc/com.atproto.identity.resolveHandle?handle=nobody.test")
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("unknown handle: %d", resp.StatusCode)
	}
	resp, _ = http.Get(srv.URL + "/" + atprototest.NewDID())
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("unknown DID: %d", resp.StatusCode)
	}
}

func TestResourceServerIsStrict(t *testing.T) {
	srv := atprototest.New(t, atprototest.Options{})
	a := srv.AddAccount(atprototest.Account{Handle: "alice.test"})
	f := newFlow(t, srv, a.DID)

	resp, body := f.call(nil)
	if resp.StatusCode != 200 || !strings.Contains(body, a.DID) || resp.Header.Get("DPoP-Nonce") == "" {
		t.Fatalf("good call: %d %s", resp.StatusCode, body)
	}
	other, _ := dpop.GenerateKey()
	for _, tt := range []struct {
		name  string
		edit  func(p *dpop.ProofParams, r *http.Request)
		error string
	}{
		{"wrong htm", func(p *dpop.ProofParams, r *http.Request) { p.Method = "POST" }, "invalid_dpop_proof"},
		{"wrong htu", func(p *dpop.ProofParams, r *http.Request) { p.URL = srv.URL + "/xrpc/com.example.other" }, "invalid_dpop_proof"},
		{"no ath", func(p *dpop.ProofParams, r *http.Request) { p.AccessToken = "" }, "invalid_dpop_proof"},
		{"wrong ath", func(p *dpop.ProofParams, r *http.Request) { p.AccessToken = "other" }, "invalid_dpop_proof"},
		{"old iat", func(p *dpop.ProofParams, r *http.Request) { p.IssuedAt = time.Now().Add(-5 * time.Minute) }, "invalid_dpop_proof"},
		{"no nonce", func(p *dpop.ProofParams, r *http.Request) { p.Nonce = "" }, "use_dpop_nonce"},
		{"stale nonce", func(p *dpop.ProofParams, r *http.Request) { p.Nonce = "old" }, "use_dpop_nonce"},
		{"unknown token", func(p *dpop.ProofParams, r *http.Request) {
			p.AccessToken = "at-unknown"
			r.Header.Set("Authorization", "DPoP at-unknown")
		}, "invalid_token"},
		{"bearer scheme", func(p *dpop.ProofParams, r *http.Request) { r.Header.Set("Authorization", "Bearer "+f.access) }, "invalid_request"},
		{"malformed proof", func(p *dpop.ProofParams, r *http.Request) { r.Header.Set("DPoP", "x.y.z") }, "invalid_dpop_proof"},
		{"another key", func(p *dpop.ProofParams, r *http.Request) {
			proof, _ := other.Proof(*p)
			r.Header.Set("DPoP", proof)
		}, "invalid_dpop_key_binding"},
	} {
		resp, body := f.call(tt.edit)
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="`+tt.error+`"`) {
			t.Errorf("%s: %d %q %s, want 401 %s", tt.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body, tt.error)
		}
	}

	// A proof is good once.
	proof, _ := f.key.Proof(dpop.ProofParams{Method: "GET", URL: srv.URL + "/xrpc/com.example.echo", Nonce: f.nonce, AccessToken: f.access})
	set := func(p *dpop.ProofParams, r *http.Request) { r.Header.Set("DPoP", proof) }
	if resp, _ := f.call(set); resp.StatusCode != 200 {
		t.Fatalf("first use of a proof: %d", resp.StatusCode)
	}
	if resp, _ := f.call(set); resp.StatusCode != 401 {
		t.Errorf("replayed proof: %d, want 401", resp.StatusCode)
	}

	srv.RotateNonce()
	if resp, _ := f.call(nil); resp.StatusCode != 401 || resp.Header.Get("DPoP-Nonce") != srv.Nonce() {
		t.Errorf("after RotateNonce: %d nonce %q", resp.StatusCode, resp.Header.Get("DPoP-Nonce"))
	}
	f.nonce = srv.Nonce()
	srv.ExpireAccessTokens()
	if resp, body := f.call(nil); resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("expired token: %d %s", resp.StatusCode, body)
	}
	if c := srv.Counts(); c.InvalidToken != 2 || c.XRPC != len(srv.XRPCRequests()) {
		t.Errorf("counts %+v, %d recorded", c, len(srv.XRPCRequests()))
	}
}

func TestRefreshTokenSingleUse(t *testing.T) {
	srv := atprototest.New(t, atprototest.Options{})
	a := srv.AddAccount(atprototest.Account{Handle: "alice.test"})
	f := newFlow(t, srv, a.DID)
	refresh := func(rt string) (int, map[string]any) {
		resp, body := f.post("/oauth/token", url.Values{"client_id": {clientID()}, "grant_type": {"refresh_token"}, "refresh_token": {rt}})
		return resp.StatusCode, body
	}
	first := f.refr
	code, body := refresh(first)
	if code != 200 {
		t.Fatalf("refresh: %d %v", code, body)
	}
	second, newAccess := body["refresh_token"].(string), body["access_token"].(string)
	if srv.TokenValid(f.access) || !srv.TokenValid(newAccess) {
		t.Error("refresh must retire the old access token and issue a valid one")
	}
	if code, body := refresh(first); code != 400 || body["error"] != "invalid_grant" {
		t.Errorf("replayed refresh token: %d %v", code, body)
	}
	if srv.TokenValid(newAccess) || srv.ActiveGrants() != 0 {
		t.Error("a replayed refresh token must end the whole grant")
	}
	if code, _ := refresh(second); code != 400 {
		t.Errorf("refresh token of a revoked grant: %d", code)
	}
}

func TestPublicCallsAndHandlers(t *testing.T) {
	srv := atprototest.New(t, atprototest.Options{})
	srv.HandleXRPC("com.example.fail", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		_, _ = io.WriteString(w, `{"error":"InvalidRequest","message":"no"}`)
	}))
	resp, _ := http.Post(srv.URL+"/xrpc/com.example.echo", "text/plain", strings.NewReader("hello"))
	var e atprototest.Echo
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if e.Body != "hello" || e.DID != "" || e.Method != "POST" {
		t.Errorf("echo %+v", e)
	}
	resp, _ = http.Get(srv.URL + "/xrpc/com.example.fail")
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("handler status %d", resp.StatusCode)
	}
	if got := srv.XRPCRequests(); len(got) != 2 || got[0].Body != "hello" || got[1].Status != 400 {
		t.Errorf("recorded %+v", got)
	}
}
