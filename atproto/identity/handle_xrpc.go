package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/ioproxy/ioproxy/atproto/safehttp"
)

const (
	maxResolveHandle  = 16 << 10
	xrpcResolveHandle = "/xrpc/com.atproto.identity.resolveHandle"
)

// xrpcHandleResolver asks one service's com.atproto.identity.resolveHandle
// about every handle (Config.HandleResolver).
type xrpcHandleResolver struct {
	url    string // checked by serviceURL, without trailing slash
	client *http.Client
}

func (x *xrpcHandleResolver) resolveHandle(ctx context.Context, h syntax.Handle) (syntax.DID, error) {
	u := x.url + xrpcResolveHandle + "?handle=" + url.QueryEscape(h.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", newError(ErrConfig, err, "cannot query the handle resolver")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := x.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("resolve handle %s: %w", h, ctx.Err())
		}
		return "", newError(ErrUnavailable, err, "could not reach the handle resolver to look up %s", h)
	}
	defer resp.Body.Close()
	body, err := safehttp.ReadBody(resp.Body, maxResolveHandle)
	if err != nil {
		return "", newError(ErrUnavailable, err, "the handle resolver sent a bad answer for %s", h)
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		var out struct {
			DID string `json:"did"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			return "", newError(ErrUnavailable, fmt.Errorf("decode resolveHandle response: %w", err), "the handle resolver sent a bad answer for %s", h)
		}
		did, err := syntax.ParseDID(out.DID)
		if err != nil {
			return "", newError(ErrUnavailable, err, "the handle resolver sent an invalid DID for %s", h)
		}
		return did, nil
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusNotFound:
		// The reference PDS answers 400 {"error":"InvalidRequest","message":
		// "Unable to resolve handle"}; newer ones say HandleNotFound.
		var xe struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &xe)
		return "", newError(ErrHandleNotFound,
			fmt.Errorf("resolveHandle: HTTP %d %s %s", resp.StatusCode, xe.Error, xe.Message),
			"handle %s does not resolve to an account", h)
	default:
		return "", newError(ErrUnavailable, fmt.Errorf("resolveHandle: HTTP %d", resp.StatusCode),
			"the handle resolver failed to look up %s", h)
	}
}
