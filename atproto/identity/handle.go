package identity

import (
	"context"
	"fmt"
	"time"

	indigoid "github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
)

const dnsLookupTimeout = 3 * time.Second

// handleResolver finds the DID a valid, normalized handle names, with no
// cache and no look at that DID's document.
type handleResolver interface {
	resolveHandle(ctx context.Context, h syntax.Handle) (syntax.DID, error)
}

// ResolveHandle resolves a handle to a DID, without checking the DID's
// document and without the cache. With a HandleResolver it asks that
// service; otherwise DNS TXT _atproto.<handle>, then
// https://<handle>/.well-known/atproto-did.
func (r *Resolver) ResolveHandle(ctx context.Context, h syntax.Handle) (syntax.DID, error) {
	if r.cfgErr != nil {
		return "", r.cfgErr
	}
	h = h.Normalize()
	if h.IsInvalidHandle() {
		return "", newError(ErrInvalidInput, nil, "%s is not a valid handle", h)
	}
	if !h.AllowedTLD() {
		return "", newError(ErrHandleNotFound, nil, "handle %s uses a reserved top-level domain (.%s) and cannot belong to an account", h, h.TLD())
	}
	return r.handles.resolveHandle(ctx, h)
}

// confirmHandle is the handle-to-DID half of the two-way check: the
// document of the DID that handle h resolved to must claim h.
func confirmHandle(h syntax.Handle, did syntax.DID, declared syntax.Handle) error {
	if declared == h {
		return nil
	}
	claims := "claims no handle"
	if declared != "" {
		claims = "claims " + declared.String()
	}
	return newError(ErrHandleMismatch, nil,
		"handle %s points to account %s, but that account does not confirm it (its DID document %s)", h, did, claims)
}

// verifyHandle is the DID-to-handle half of the two-way check: the handle
// that the document of did declares counts only if it resolves back to did.
// Any other outcome is handle.invalid, not an error, so that the account
// still signs in; only the end of ctx fails.
func (r *Resolver) verifyHandle(ctx context.Context, did syntax.DID, declared syntax.Handle) (syntax.Handle, error) {
	if declared == "" {
		return syntax.HandleInvalid, nil
	}
	resolved, err := r.ResolveHandle(ctx, declared)
	switch {
	case ctx.Err() != nil:
		return "", fmt.Errorf("verify handle %s of %s: %w", declared, did, ctx.Err())
	case err != nil:
		r.log.DebugContext(ctx, "handle of DID does not resolve; showing handle.invalid", "did", did, "handle", declared, "err", err)
	case resolved != did:
		r.log.DebugContext(ctx, "handle of DID resolves elsewhere; showing handle.invalid", "did", did, "handle", declared, "resolved", resolved)
	default:
		return declared, nil
	}
	return syntax.HandleInvalid, nil
}

// domainHandleResolver asks the handle's own domain: DNS TXT
// _atproto.<handle>, then https://<handle>/.well-known/atproto-did.
type domainHandleResolver struct {
	base *indigoid.BaseDirectory
}

func (d *domainHandleResolver) resolveHandle(ctx context.Context, h syntax.Handle) (syntax.DID, error) {
	dnsCtx, cancel := context.WithTimeout(ctx, dnsLookupTimeout)
	did, dnsErr := d.base.ResolveHandleDNS(dnsCtx, h)
	cancel()
	if dnsErr == nil {
		return did, nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("resolve handle %s: %w", h, ctx.Err())
	}
	did, httpErr := d.base.ResolveHandleWellKnown(ctx, h)
	if httpErr == nil {
		return did, nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("resolve handle %s: %w", h, ctx.Err())
	}
	return "", newError(ErrHandleNotFound, fmt.Errorf("DNS: %w; HTTPS well-known: %w", dnsErr, httpErr),
		"handle %s does not resolve to an account", h)
}
