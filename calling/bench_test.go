package calling

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ioproxy/ioproxy/atproto/dpop"
)

// BenchmarkCallingPath measures what the calling port adds to a call to
// the user's PDS, against a loopback fake PDS that verifies every DPoP
// proof (the same cost in every sub-benchmark):
//
//   - direct: the caller talks to the fake itself with a prepared proof
//     and token, the floor a perfect proxy could reach;
//   - port: the caller talks to a calling port over loopback HTTP, which
//     looks the session up, makes a fresh DPoP proof and calls the fake;
//   - handler: the port's handler called in-process, without the
//     caller-to-port hop.
//
// The added latency per call is port minus direct; allocations per call
// count the whole process (caller, port and fake), so compare them the
// same way.
func BenchmarkCallingPath(b *testing.B) {
	e := newCallEnv(b)
	sess := e.signIn(b, e.alice)
	const path = "/xrpc/com.atproto.repo.getRecord?repo=did%3Aplc%3Aalice&collection=xyz.statusphere.status&rkey=3kabc"
	// One prepared proof, reused: the fake is told to allow it.
	e.srv.AllowProofReuse(true)
	proof, err := sess.DPoPKey.Proof(dpop.ProofParams{Method: "GET", URL: e.srv.URL + path, Nonce: e.srv.Nonce(), AccessToken: sess.AccessToken})
	if err != nil {
		b.Fatal(err)
	}
	caller := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	do := func(b *testing.B, req *http.Request) {
		resp, err := caller.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}

	b.Run("direct", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
			req.Header.Set("Authorization", "DPoP "+sess.AccessToken)
			req.Header.Set("DPoP", proof)
			do(b, req)
		}
	})

	h := e.port(b, pdsCall())
	port := httptest.NewServer(h)
	b.Cleanup(port.Close)
	before := e.srv.Counts()
	b.Run("port", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest("GET", port.URL+path, nil)
			req.Header.Set("User-Did", sess.DID)
			req.Header.Set("Proxy-Session", sess.ProxyKey)
			do(b, req)
		}
	})

	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req := httptest.NewRequest("GET", "http://127.0.0.1:7000"+path, nil)
			req.Header.Set("User-Did", sess.DID)
			req.Header.Set("Proxy-Session", sess.ProxyKey)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
	// The port never needed a retry or refresh: what was measured is the
	// steady state.
	if c := e.srv.Counts(); c.NonceChallenges != before.NonceChallenges || c.Token != before.Token {
		b.Fatalf("nonce challenges or refreshes during the benchmark: %+v → %+v", before, c)
	}
}
