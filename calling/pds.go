package calling

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
	"github.com/ioproxy/ioproxy/atproto/dpop"
	"github.com/ioproxy/ioproxy/atproto/identity"
	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/httpguard"
	"github.com/ioproxy/ioproxy/internal/httpx"
	"github.com/ioproxy/ioproxy/internal/limits"
	"github.com/ioproxy/ioproxy/internal/observe"
	"github.com/ioproxy/ioproxy/internal/textutil"
	"github.com/ioproxy/ioproxy/sessions"
)

// pdsHandler sends calls to the user's PDS (endpoint "@").
type pdsHandler struct {
	cfg Config
	// buffers recycles the response copy buffers (32 KiB per call otherwise).
	buffers *httpx.BufferPool
}

// forwardHeader reports whether a request header is passed to the PDS.
// Everything else stays behind: cookies, the caller's own Authorization,
// ioproxy's identity headers, hop-by-hop headers.
func forwardHeader(name string) bool {
	switch name {
	case "Accept", "Accept-Language", "Accept-Encoding", "Content-Type", "Content-Encoding",
		"Atproto-Proxy", "Atproto-Accept-Labelers", "If-None-Match", "If-Modified-Since", "User-Agent":
		return true
	}
	return false
}

// dropResponseHeader reports whether a response header stays behind:
// hop-by-hop and connection-specific ones, and the PDS's DPoP nonce, which
// is ioproxy's business.
func dropResponseHeader(name string) bool {
	return httpx.IsHopByHop(name) || name == "Content-Length" || name == "Dpop-Nonce"
}

func (h *pdsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.Call.Timeout)
	defer cancel()
	if r.URL.Path == "/xrpc/"+resolveHandleNSID && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		h.resolveHandle(ctx, w, r)
		return
	}
	for _, v := range r.Header.Values("Atproto-Proxy") {
		// The PDS mints a service token for whatever audience this names,
		// on the user's behalf: only the services the call block lists.
		if !h.cfg.Call.AllowsServiceProxy(v) {
			httpguard.CloseIfBody(w, r)
			writeXRPCError(w, http.StatusForbidden, "ServiceProxyNotAllowed", fmt.Sprintf("call %q does not proxy to %q; the services it allows are its service_proxies: %s", h.cfg.Call.Label, v, strings.Join(h.cfg.Call.ServiceProxies, ", ")))
			return
		}
	}
	did := strings.TrimSpace(r.Header.Get(contract.UserDID))
	key := strings.TrimSpace(r.Header.Get(contract.ProxySession))
	if did == "" {
		httpguard.CloseIfBody(w, r)
		writeXRPCError(w, http.StatusBadRequest, "InvalidRequest", "the User-Did header is required: pass on the User-Did (and Proxy-Session) headers ioproxy gave your backend, or name the account whose PDS to call")
		return
	}
	// A client trickling its body must not hold the call open for ever.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(h.cfg.Call.Timeout))
	body, err := readBody(r, h.cfg.Call.MaxBodyBytes)
	if errors.Is(err, errBodyTooLarge) {
		writeXRPCError(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge", fmt.Sprintf("request bodies through call %q are limited to %d bytes (max_body_bytes)", h.cfg.Call.Label, h.cfg.Call.MaxBodyBytes))
		return
	} else if errors.Is(err, limits.ErrBodyTooSlow) {
		writeXRPCError(w, http.StatusRequestTimeout, "BodyTooSlow", "the request body came too slowly and was cut off")
		return
	} else if err != nil {
		writeXRPCError(w, http.StatusBadRequest, "InvalidRequest", "the request body could not be read")
		return
	}
	if key == "" {
		h.public(ctx, w, r, did, body)
		return
	}
	sess, err := h.cfg.Sessions.ByProxyKeys(ctx, key, "")
	if errors.Is(err, sessions.ErrNotFound) {
		writeXRPCError(w, http.StatusUnauthorized, "AuthRequired", "no session for this Proxy-Session: the user signed out or the session expired; sign in again")
		return
	} else if err != nil {
		h.cfg.Logger.Error("session store failed", "call", h.cfg.Call.Label, "err", err)
		writeXRPCError(w, http.StatusServiceUnavailable, "SessionStoreUnavailable", "the session store is not reachable; try again in a moment")
		return
	}
	if sess.DID != did {
		writeXRPCError(w, http.StatusUnauthorized, "AuthRequired", "the Proxy-Session belongs to another account than User-Did")
		return
	}
	if h.cfg.ATProtoAdmitted != nil && !h.cfg.ATProtoAdmitted(sess) {
		writeXRPCError(w, http.StatusUnauthorized, "AuthRequired", "the account may no longer use this site (its host's rules changed, or the host is gone): sign in again")
		return
	}
	// A handle due for a recheck is checked by a refresh in the
	// background, as for a page: the rules judge the new one.
	// RefreshLater does nothing for a session that is not stale.
	h.cfg.Sessions.RefreshLater(sess)
	h.authenticated(ctx, w, r, sess, body)
}

const resolveHandleNSID = "com.atproto.identity.resolveHandle"

// resolveHandle answers com.atproto.identity.resolveHandle itself, with
// the handle verified both ways (the handle names the DID and the DID's
// document claims the handle), as for sign-in. Forwarded to a PDS, the
// answer would be whatever that PDS says, and an app showing handles must
// not take a PDS's word for them.
func (h *pdsHandler) resolveHandle(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	setUpstream(r, "ioproxy")
	handle := strings.TrimSpace(r.URL.Query().Get("handle"))
	if handle == "" || strings.HasPrefix(handle, "did:") {
		writeXRPCError(w, http.StatusBadRequest, "InvalidRequest", "the handle parameter must be a handle, such as alice.bsky.social")
		return
	}
	id, err := h.cfg.Identity.Lookup(ctx, handle)
	switch {
	case errors.Is(err, identity.ErrHandleNotFound), errors.Is(err, identity.ErrHandleMismatch), errors.Is(err, identity.ErrInvalidInput):
		writeXRPCError(w, http.StatusBadRequest, "HandleNotFound", identity.UserMessage(err))
		return
	case err != nil:
		status, code := http.StatusBadGateway, "UpstreamFailure"
		if errors.Is(err, context.DeadlineExceeded) {
			status, code = http.StatusGatewayTimeout, "UpstreamTimeout"
		}
		writeXRPCError(w, status, code, identity.UserMessage(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=60")
	_ = json.NewEncoder(w).Encode(map[string]string{"did": id.DID.String()})
}

// public forwards a call without credentials to the PDS of the DID named
// in User-Did, for public reads such as listRecords or describeRepo.
func (h *pdsHandler) public(ctx context.Context, w http.ResponseWriter, r *http.Request, did string, body []byte) {
	d, err := syntax.ParseDID(did)
	if err != nil {
		writeXRPCError(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("User-Did %q is not a DID", did))
		return
	}
	id, err := h.cfg.Identity.LookupDID(ctx, d)
	if err != nil {
		status, code := http.StatusBadGateway, "UpstreamFailure"
		if errors.Is(err, identity.ErrDIDNotFound) || errors.Is(err, identity.ErrNoPDS) || errors.Is(err, identity.ErrUnsupportedDID) {
			status, code = http.StatusNotFound, "AccountNotFound"
		}
		writeXRPCError(w, status, code, identity.UserMessage(err))
		return
	}
	target := targetURL(id.PDS, r)
	setUpstream(r, id.PDS)
	req, err := h.newRequest(ctx, r, target, body)
	if err != nil {
		writeXRPCError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
		return
	}
	resp, err := h.send(req)
	if err != nil {
		h.upstreamError(w, id.PDS, err)
		return
	}
	defer resp.Body.Close()
	h.rememberNonce(id.PDS, resp)
	h.copyResponse(w, resp)
}

// authenticated sends a call with the session's credentials: a fresh
// token, a DPoP proof with the server's nonce, one retry on a nonce
// change, one refresh and retry on a rejected token.
func (h *pdsHandler) authenticated(ctx context.Context, w http.ResponseWriter, r *http.Request, sess sessions.Session, body []byte) {
	sess, err := h.cfg.Sessions.Fresh(ctx, sess)
	if err != nil {
		h.tokenError(w, err)
		return
	}
	dpopKey, err := h.cfg.Sessions.Key(sess)
	if err != nil {
		writeXRPCError(w, http.StatusUnauthorized, "AuthRequired", "the session is damaged; sign in again")
		return
	}
	refreshed := false
	nonceRetried := false
	for {
		target := targetURL(sess.PDS, r)
		setUpstream(r, sess.PDS)
		req, err := h.newRequest(ctx, r, target, body)
		if err != nil {
			writeXRPCError(w, http.StatusBadRequest, "InvalidRequest", err.Error())
			return
		}
		sent := h.cfg.Nonces.Get(sess.PDS)
		if sent == "" && sess.PDSNonce != "" {
			// Another replica talked to this PDS last: its nonce, kept
			// with the session, spares one refused request.
			sent = sess.PDSNonce
		}
		proof, err := dpopKey.Proof(dpop.ProofParams{Method: r.Method, URL: target, Nonce: sent, AccessToken: sess.AccessToken})
		if err != nil {
			writeXRPCError(w, http.StatusInternalServerError, "InternalError", "could not make a DPoP proof")
			return
		}
		req.Header.Set("Authorization", "DPoP "+sess.AccessToken)
		req.Header.Set("DPoP", proof)
		resp, err := h.send(req)
		if err != nil {
			h.upstreamError(w, sess.PDS, err)
			return
		}
		h.rememberNonce(sess.PDS, resp)
		if nonce, ok := dpop.NonceChallenge(resp); ok && !nonceRetried && nonce != sent {
			nonceRetried = true
			h.cfg.Recorder.NonceRetry(observe.NonceServerPDS)
			drain(resp)
			continue
		}
		if resp.StatusCode == http.StatusUnauthorized && !refreshed && tokenRejected(resp) {
			refreshed = true
			next, err := h.cfg.Sessions.Refresh(ctx, sess.ID, sess.AccessToken)
			if err != nil {
				drain(resp)
				h.tokenError(w, err)
				return
			}
			if next.AccessToken != sess.AccessToken {
				drain(resp)
				sess = next
				continue
			}
			// Not refreshed (the session was, under a minute ago): the
			// same token would be refused again, so the PDS's answer
			// stands.
		}
		if resp.StatusCode == http.StatusForbidden {
			h.noteScopeMissing(resp, sess, r)
		}
		h.copyResponse(w, resp)
		resp.Body.Close()
		return
	}
}

// targetURL is the PDS's URL for the call: same path and query.
func targetURL(pds string, r *http.Request) string {
	target := strings.TrimSuffix(pds, "/") + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	return target
}

// tokenRejected reports whether a 401 says the access token is no good
// (expired or revoked), as opposed to a permission error a refresh
// cannot fix.
func tokenRejected(resp *http.Response) bool {
	if dpop.IsInvalidToken(resp) {
		return true
	}
	// Some PDS versions answer with an XRPC error body instead.
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(strings.NewReader(string(b)), resp.Body), resp.Body}
	if err != nil {
		return false
	}
	s := string(b)
	return strings.Contains(s, `"ExpiredToken"`) || strings.Contains(s, `"InvalidToken"`) || strings.Contains(s, `"invalid_token"`)
}

// send sends a request to a PDS and observes how long it took to answer.
func (h *pdsHandler) send(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := h.cfg.PDSClient.Do(req)
	if err == nil {
		h.cfg.Recorder.UpstreamDuration(observe.KindCall, h.cfg.Call.Label, time.Since(start))
	}
	return resp, err
}

func (h *pdsHandler) newRequest(ctx context.Context, in *http.Request, target string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, in.Method, target, bodyReader(body))
	if err != nil {
		return nil, fmt.Errorf("cannot build the call: %w", err)
	}
	for name, v := range in.Header {
		if forwardHeader(name) {
			req.Header[name] = v
		}
	}
	if body == nil {
		req.ContentLength = 0
	}
	return req, nil
}

func (h *pdsHandler) rememberNonce(pds string, resp *http.Response) {
	if n := resp.Header.Get("DPoP-Nonce"); n != "" {
		h.cfg.Nonces.Set(pds, n)
	}
}

func (h *pdsHandler) tokenError(w http.ResponseWriter, err error) {
	if errors.Is(err, sessions.ErrEnded) {
		writeXRPCError(w, http.StatusUnauthorized, "AuthRequired", "the session ended because its tokens could not be refreshed; sign in again")
		return
	}
	if errors.Is(err, sessions.ErrUnavailable) {
		h.cfg.Logger.Error("session store failed", "call", h.cfg.Call.Label, "err", err)
		writeXRPCError(w, http.StatusServiceUnavailable, "SessionStoreUnavailable", "the session's tokens are due for a refresh and the session store is not reachable; try again in a moment")
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		writeXRPCError(w, http.StatusGatewayTimeout, "UpstreamTimeout", "refreshing the session's tokens took too long")
		return
	}
	h.cfg.Logger.Warn("token refresh failed", "call", h.cfg.Call.Label, "err", err)
	writeXRPCError(w, http.StatusBadGateway, "UpstreamFailure", "the session's tokens could not be refreshed: the authorization server is not reachable")
}

func (h *pdsHandler) upstreamError(w http.ResponseWriter, pds string, err error) {
	h.cfg.Logger.Warn("PDS call failed", "call", h.cfg.Call.Label, "pds", pds, "err", err)
	status, code := upstreamErrorStatus(err)
	msg := fmt.Sprintf("the PDS %s is not reachable", pds)
	if status == http.StatusGatewayTimeout {
		msg = fmt.Sprintf("the PDS %s did not answer in time", pds)
	}
	writeXRPCError(w, status, code, msg)
}

// copyResponse streams the PDS's answer back unchanged: status, headers
// and body (XRPC errors included).
func (h *pdsHandler) copyResponse(w http.ResponseWriter, resp *http.Response) {
	for k, v := range resp.Header {
		if dropResponseHeader(k) {
			continue
		}
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	buf := h.buffers.Get()
	defer h.buffers.Put(buf)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if f, ok := w.(http.Flusher); ok && resp.ContentLength < 0 {
				f.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// maxErrorPeek bounds how much of a refusal's body is read to see why.
const maxErrorPeek = 8 << 10

// noteScopeMissing logs a PDS's refusal for a scope the session was not
// granted (ScopeMissingError: the host's scopes lack it, or the user
// signed in before it was added), naming the call and the account, and
// leaves the answer to be passed on unchanged.
func (h *pdsHandler) noteScopeMissing(resp *http.Response, sess sessions.Session, r *http.Request) {
	peek, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorPeek))
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(peek), resp.Body), resp.Body}
	if err != nil {
		return
	}
	if strings.EqualFold(resp.Header.Get("Content-Encoding"), "gzip") {
		// The app asked for gzip, and the PDS compressed its refusal:
		// read it for the log only (bounded); the app gets it as it came.
		zr, err := gzip.NewReader(bytes.NewReader(peek))
		if err != nil {
			return
		}
		peek, _ = io.ReadAll(io.LimitReader(zr, maxErrorPeek))
	}
	var xe struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(peek, &xe) != nil || xe.Error != "ScopeMissingError" {
		return
	}
	h.cfg.Logger.Info("call refused by the PDS: the session lacks a scope; add it to the host's scopes, and the user must sign in again",
		"did", sess.DID, "method", r.Method, "path", r.URL.Path, "message", textutil.Clip(xe.Message, 200))
}

func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
