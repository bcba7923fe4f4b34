package atprototest

import (
	"context"
	"io"
	"net/http"
	"strings"
)

// xrpc is the resource server. A call without Authorization is served as
// a public read; a call with one needs a DPoP-bound access token and a
// proof for it.
func (s *Server) xrpc(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	rec := XRPCRequest{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(body),
		Header: r.Header.Clone(), Authorization: r.Header.Get("Authorization"),
	}
	sw := &statusRecorder{ResponseWriter: w}
	defer func() {
		rec.Status = sw.status()
		s.mu.Lock()
		s.counts.XRPC++
		s.xrpcLog = append(s.xrpcLog, rec)
		s.mu.Unlock()
	}()
	w = sw
	if auth := rec.Authorization; auth != "" {
		scheme, token, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "DPoP") || token == "" {
			s.challenge(w, "invalid_request", "DPoP-bound access token required (Authorization: DPoP <token>)")
			return
		}
		pr, perr := s.checkProof(r, token)
		if pr != nil {
			rec.Nonce = pr.nonce
		}
		if perr != nil {
			if perr.nonce {
				s.challenge(w, "use_dpop_nonce", "Resource server requires nonce in DPoP proof")
				return
			}
			s.challenge(w, "invalid_dpop_proof", perr.msg)
			return
		}
		now := s.opts.Now()
		s.mu.Lock()
		g, ok := s.byAccess[token]
		var did, jkt string
		expired := ok && !now.Before(g.accessExpiry)
		if ok {
			did, jkt = g.did, g.jkt
		}
		if !ok || expired {
			s.counts.InvalidToken++
		}
		s.mu.Unlock()
		switch {
		case !ok:
			s.challenge(w, "invalid_token", "Invalid token")
			return
		case expired:
			s.challenge(w, "invalid_token", "Token expired")
			return
		case jkt != pr.jkt:
			s.challenge(w, "invalid_dpop_key_binding", "DPoP proof key does not match the token's")
			return
		}
		rec.DID = did
	}
	w.Header().Set("DPoP-Nonce", s.Nonce())
	nsid := strings.TrimPrefix(r.URL.Path, "/xrpc/")
	s.mu.Lock()
	h := s.xrpcHandlers[nsid]
	s.mu.Unlock()
	if h != nil {
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		r.ContentLength = int64(len(body))
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), didKey{}, rec.DID)))
		return
	}
	writeJSON(w, http.StatusOK, Echo{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(body), DID: rec.DID, ServiceProxy: r.Header.Get("Atproto-Proxy")})
}

// challenge answers 401 the way the reference PDS does: a DPoP
// WWW-Authenticate challenge, the current nonce, and an XRPC error body.
func (s *Server) challenge(w http.ResponseWriter, code, desc string) {
	w.Header().Set("WWW-Authenticate", `DPoP algs="ES256", error="`+code+`", error_description="`+desc+`"`)
	w.Header().Set("DPoP-Nonce", s.Nonce())
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": code, "message": desc})
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusRecorder) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
