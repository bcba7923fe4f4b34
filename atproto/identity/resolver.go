// Package identity resolves AT Protocol handles and DIDs for the OAuth
// client and the calling ports: handle → DID → DID document → PDS, with the
// bidirectional handle check, a short cache, and a fresh path for the moment
// after a token exchange when stale data would be a security bug.
//
// It builds on indigo's identity.BaseDirectory for did:plc and for DNS and
// HTTPS well-known handle resolution, handing it an SSRF-guarded client.
package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	indigoid "github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"
	"golang.org/x/sync/singleflight"

	"github.com/ioproxy/ioproxy/atproto/safehttp"
)

const (
	// DefaultPLCURL is the public PLC directory.
	DefaultPLCURL = "https://plc.directory"
	// DefaultCacheTTL is how long a resolved identity is reused.
	DefaultCacheTTL = 5 * time.Minute
	// MaxCacheTTL is exclusive: the AT Protocol OAuth profile wants identity
	// data used during a sign-in to be under 10 minutes old.
	MaxCacheTTL = 10 * time.Minute

	pdsServiceID   = "atproto_pds"
	pdsServiceType = "AtprotoPersonalDataServer"
)

// Config configures New.
type Config struct {
	// PLCURL is the PLC directory (default DefaultPLCURL).
	PLCURL string
	// HandleResolver, when set, is the base URL of an XRPC service whose
	// com.atproto.identity.resolveHandle resolves every handle, instead of
	// DNS and the HTTPS well-known. A local PDS's `.test` handles resolve
	// only this way.
	HandleResolver string
	// HTTPClient makes every request (default: a safehttp client with
	// AllowInsecure). Only tests should pass an unguarded client.
	HTTPClient *http.Client
	// AllowInsecure is the development switch: it permits http:// URLs for
	// PLCURL, HandleResolver and PDS endpoints, and did:web on localhost.
	AllowInsecure bool
	// CacheTTL is how long lookups are cached: default DefaultCacheTTL,
	// negative disables the cache, values of MaxCacheTTL or more are
	// invalid.
	CacheTTL time.Duration
	// DNSDial, when set, dials the DNS server for _atproto TXT lookups
	// (through Go's resolver); by default the system's resolver is used.
	DNSDial func(ctx context.Context, network, address string) (net.Conn, error)
	// Now is the clock for cache expiry (default time.Now).
	Now func() time.Time
	// Logger receives debug notes on failed handle checks (default: none).
	Logger *slog.Logger
}

// Validate reports configuration mistakes, for the config layer to show.
func (c Config) Validate() error {
	var errs []error
	if c.PLCURL != "" {
		if _, err := serviceURL(c.PLCURL, c.AllowInsecure); err != nil {
			errs = append(errs, fmt.Errorf("PLC URL: %w", err))
		}
	}
	if c.HandleResolver != "" {
		if _, err := serviceURL(c.HandleResolver, c.AllowInsecure); err != nil {
			errs = append(errs, fmt.Errorf("handle resolver URL: %w", err))
		}
	}
	if c.CacheTTL >= MaxCacheTTL {
		errs = append(errs, fmt.Errorf("cache TTL %s must be under %s", c.CacheTTL, MaxCacheTTL))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// Identity is a resolved account.
type Identity struct {
	DID syntax.DID
	// Handle is verified both ways, or "handle.invalid" when the check
	// failed: key on the DID, show the handle.
	Handle syntax.Handle
	// PDS is the account's PDS endpoint URL, without trailing slash.
	PDS string
}

// Resolver resolves and caches identities. It is safe for concurrent use.
type Resolver struct {
	// dids (did.go) and handles (handle.go, handle_xrpc.go) fetch without
	// remembering anything; the Resolver checks what they return against
	// each other (handle.go) and keeps only verified identities in its
	// cache (cache.go), filled by lookups shared between concurrent
	// callers (shared.go).

	log *slog.Logger
	// allowInsecure permits http PDS endpoints (checkPDS); the resolvers
	// apply it to their own URLs.
	allowInsecure bool
	cfgErr        error
	dids          didResolver
	handles       handleResolver
	cache         identityCache
	// flights makes concurrent lookups of one identifier share one
	// resolution instead of each hitting the network.
	flights singleflight.Group
}

// New returns a Resolver. A Config that fails Validate makes every lookup
// fail with ErrConfig; call Config.Validate first to report it early.
func New(cfg Config) *Resolver {
	client := cfg.HTTPClient
	if client == nil {
		client = safehttp.NewClient(safehttp.Options{AllowInsecure: cfg.AllowInsecure})
	}
	plcURL := DefaultPLCURL
	if cfg.PLCURL != "" {
		if u, err := serviceURL(cfg.PLCURL, cfg.AllowInsecure); err == nil {
			plcURL = u
		}
	}
	base := &indigoid.BaseDirectory{
		PLCURL:     plcURL,
		HTTPClient: *client,
		// Bluesky's own PDS hosts serve handles over HTTPS only.
		SkipDNSDomainSuffixes: []string{".bsky.social"},
	}
	if cfg.DNSDial != nil {
		base.Resolver.PreferGo = true
		base.Resolver.Dial = cfg.DNSDial
	}
	var handles handleResolver = &domainHandleResolver{base: base}
	if cfg.HandleResolver != "" {
		if u, err := serviceURL(cfg.HandleResolver, cfg.AllowInsecure); err == nil {
			handles = &xrpcHandleResolver{url: u, client: client}
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Resolver{
		log:           log,
		allowInsecure: cfg.AllowInsecure,
		cfgErr:        cfg.Validate(),
		dids:          &didDocResolver{base: base, client: client, allowInsecure: cfg.AllowInsecure},
		handles:       handles,
		cache:         newIdentityCache(cfg.CacheTTL, cfg.Now),
	}
}

// Lookup resolves a handle (with or without a leading @, any case) or a DID.
// A handle must resolve to a DID whose document claims it back, or Lookup
// fails with ErrHandleMismatch. A DID whose handle does not verify comes
// back with Handle "handle.invalid". Results are cached for the CacheTTL.
func (r *Resolver) Lookup(ctx context.Context, input string) (*Identity, error) {
	id, err := ParseInput(input)
	if err != nil {
		return nil, err
	}
	if did, err := id.AsDID(); err == nil {
		return r.LookupDID(ctx, did)
	}
	h, err := id.AsHandle()
	if err != nil {
		return nil, newError(ErrInvalidInput, err, "%q is not a valid handle or DID", input)
	}
	return r.LookupHandle(ctx, h)
}

// LookupHandle resolves and verifies a handle, using the cache.
func (r *Resolver) LookupHandle(ctx context.Context, h syntax.Handle) (*Identity, error) {
	if r.cfgErr != nil {
		return nil, r.cfgErr
	}
	h = h.Normalize()
	if ident, ok := r.cache.handle(h); ok {
		return ident, nil
	}
	return r.shared(ctx, "handle:"+h.String(), func(ctx context.Context) (*Identity, error) {
		return r.lookupHandle(ctx, h)
	})
}

// LookupDID resolves a DID and verifies the handle its document claims,
// using the cache.
func (r *Resolver) LookupDID(ctx context.Context, did syntax.DID) (*Identity, error) {
	if r.cfgErr != nil {
		return nil, r.cfgErr
	}
	if ident, ok := r.cache.did(did); ok {
		return ident, nil
	}
	return r.shared(ctx, "did:"+did.String(), func(ctx context.Context) (*Identity, error) {
		return r.lookupDID(ctx, did)
	})
}

// LookupDIDFresh is LookupDID without the cache: it always resolves the
// DID document and the handle again, then refreshes the cache. Use it after
// a token exchange or before a refresh, to bind the token's subject to its
// current PDS.
func (r *Resolver) LookupDIDFresh(ctx context.Context, did syntax.DID) (*Identity, error) {
	if r.cfgErr != nil {
		return nil, r.cfgErr
	}
	// Fresh lookups share only with each other: joining a cached-path
	// flight is no worse, but keeping them apart keeps the rule simple.
	return r.shared(ctx, "fresh:"+did.String(), func(ctx context.Context) (*Identity, error) {
		return r.lookupDID(ctx, did)
	})
}

// lookupHandle resolves a handle to its account, which must claim the
// handle back.
func (r *Resolver) lookupHandle(ctx context.Context, h syntax.Handle) (*Identity, error) {
	did, err := r.ResolveHandle(ctx, h)
	if err != nil {
		return nil, err
	}
	ident, declared, err := r.resolveIdentity(ctx, did)
	if err != nil {
		return nil, err
	}
	if err := confirmHandle(h, did, declared); err != nil {
		return nil, err
	}
	ident.Handle = h
	return &ident, nil
}

// lookupDID resolves a DID to its account, showing the handle it claims
// only when that handle resolves back to it.
func (r *Resolver) lookupDID(ctx context.Context, did syntax.DID) (*Identity, error) {
	ident, declared, err := r.resolveIdentity(ctx, did)
	if err != nil {
		return nil, err
	}
	ident.Handle, err = r.verifyHandle(ctx, did, declared)
	if err != nil {
		return nil, err
	}
	return &ident, nil
}

// resolveIdentity fetches a DID document and extracts the DID, PDS and
// declared (unverified) handle. Handle is left as handle.invalid.
func (r *Resolver) resolveIdentity(ctx context.Context, did syntax.DID) (Identity, syntax.Handle, error) {
	doc, err := r.dids.resolveDID(ctx, did)
	if err != nil {
		return Identity{}, "", err
	}
	parsed := indigoid.ParseIdentity(doc)
	ident := Identity{DID: doc.DID, Handle: syntax.HandleInvalid}
	svc, ok := parsed.Services[pdsServiceID]
	if !ok || svc.Type != pdsServiceType {
		return Identity{}, "", newError(ErrNoPDS, nil, "account %s has no PDS in its DID document", doc.DID)
	}
	pds, err := r.checkPDS(svc.URL)
	if err != nil {
		return Identity{}, "", newError(ErrNoPDS, err, "account %s has an unusable PDS endpoint", doc.DID)
	}
	ident.PDS = pds
	declared, err := parsed.DeclaredHandle()
	if err != nil {
		declared = ""
	}
	return ident, declared, nil
}
