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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
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

	maxCacheEntries   = 10000
	maxDIDDocBytes    = 256 << 10
	maxResolveHandle  = 16 << 10
	dnsLookupTimeout  = 3 * time.Second
	sharedWorkTimeout = 30 * time.Second
	pdsServiceID      = "atproto_pds"
	pdsServiceType    = "AtprotoPersonalDataServer"
	xrpcResolveHandle = "/xrpc/com.atproto.identity.resolveHandle"
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

// serviceURL checks an operator-configured base URL and trims its trailing
// slash.
func serviceURL(raw string, allowInsecure bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowInsecure {
			return "", fmt.Errorf("%q must use https (http is allowed only with identity.allow_insecure)", raw)
		}
	default:
		return "", fmt.Errorf("%q must be an absolute https URL", raw)
	}
	if u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return "", fmt.Errorf("%q must be a plain https://host[:port][/path] URL", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// validPort reports whether p is a port number from 1 to 65535, in
// digits only.
func validPort(p string) bool {
	if p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
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
	log           *slog.Logger
	plcURL        string
	xrpcURL       string
	allowInsecure bool
	client        *http.Client
	base          *indigoid.BaseDirectory
	ttl           time.Duration
	now           func() time.Time
	cfgErr        error
	// flights makes concurrent lookups of one identifier share one
	// resolution instead of each hitting the network.
	flights singleflight.Group

	mu       sync.Mutex
	byDID    map[syntax.DID]didEntry
	byHandle map[syntax.Handle]handleEntry
}

type didEntry struct {
	ident   Identity
	expires time.Time
}

type handleEntry struct {
	did     syntax.DID
	expires time.Time
}

// New returns a Resolver. A Config that fails Validate makes every lookup
// fail with ErrConfig; call Config.Validate first to report it early.
func New(cfg Config) *Resolver {
	r := &Resolver{
		allowInsecure: cfg.AllowInsecure,
		client:        cfg.HTTPClient,
		ttl:           cfg.CacheTTL,
		now:           cfg.Now,
		byDID:         make(map[syntax.DID]didEntry),
		byHandle:      make(map[syntax.Handle]handleEntry),
	}
	if err := cfg.Validate(); err != nil {
		r.cfgErr = err
	}
	if r.client == nil {
		r.client = safehttp.NewClient(safehttp.Options{AllowInsecure: cfg.AllowInsecure})
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.log = cfg.Logger
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.ttl == 0 {
		r.ttl = DefaultCacheTTL
	}
	r.plcURL = DefaultPLCURL
	if cfg.PLCURL != "" {
		if u, err := serviceURL(cfg.PLCURL, cfg.AllowInsecure); err == nil {
			r.plcURL = u
		}
	}
	if cfg.HandleResolver != "" {
		if u, err := serviceURL(cfg.HandleResolver, cfg.AllowInsecure); err == nil {
			r.xrpcURL = u
		}
	}
	r.base = &indigoid.BaseDirectory{
		PLCURL:     r.plcURL,
		HTTPClient: *r.client,
		// Bluesky's own PDS hosts serve handles over HTTPS only.
		SkipDNSDomainSuffixes: []string{".bsky.social"},
	}
	if cfg.DNSDial != nil {
		r.base.Resolver.PreferGo = true
		r.base.Resolver.Dial = cfg.DNSDial
	}
	return r
}

// ParseInput turns what a person typed into a handle or a DID: surrounding
// space and a leading "@" are dropped, handles are lowercased.
func ParseInput(input string) (syntax.AtIdentifier, error) {
	s := strings.TrimSpace(input)
	s = strings.TrimPrefix(s, "@")
	if len(s) >= 4 && strings.EqualFold(s[:4], "did:") {
		did, err := syntax.ParseDID(s)
		if err != nil {
			return "", newError(ErrInvalidInput, err, "%q is not a valid DID", s)
		}
		return did.AtIdentifier(), nil
	}
	h, err := syntax.ParseHandle(s)
	if err != nil {
		return "", newError(ErrInvalidInput, err, "%q is not a valid handle (like alice.bsky.social) or DID", s)
	}
	h = h.Normalize()
	if h.IsInvalidHandle() {
		return "", newError(ErrInvalidInput, nil, "%q is not a valid handle", s)
	}
	return h.AtIdentifier(), nil
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
	if ident, ok := r.cachedHandle(h); ok {
		return ident, nil
	}
	return r.shared(ctx, "handle:"+h.String(), func(ctx context.Context) (*Identity, error) {
		return r.lookupHandle(ctx, h)
	})
}

func (r *Resolver) lookupHandle(ctx context.Context, h syntax.Handle) (*Identity, error) {
	did, err := r.ResolveHandle(ctx, h)
	if err != nil {
		return nil, err
	}
	doc, err := r.resolveDID(ctx, did)
	if err != nil {
		return nil, err
	}
	ident, declared, err := r.identityFromDoc(doc)
	if err != nil {
		return nil, err
	}
	if declared != h {
		claims := "claims no handle"
		if declared != "" {
			claims = "claims " + declared.String()
		}
		return nil, newError(ErrHandleMismatch, nil,
			"handle %s points to account %s, but that account does not confirm it (its DID document %s)", h, did, claims)
	}
	ident.Handle = h
	r.store(ident)
	return &ident, nil
}

// LookupDID resolves a DID and verifies the handle its document claims,
// using the cache.
func (r *Resolver) LookupDID(ctx context.Context, did syntax.DID) (*Identity, error) {
	if r.cfgErr != nil {
		return nil, r.cfgErr
	}
	if ident, ok := r.cachedDID(did); ok {
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

// shared runs fn once for all concurrent callers with the same key. The
// work is detached from the first caller's cancellation (one impatient
// caller must not fail the others) but bounded in time; each caller still
// stops waiting when its own context ends.
func (r *Resolver) shared(ctx context.Context, key string, fn func(context.Context) (*Identity, error)) (*Identity, error) {
	subject := key[strings.IndexByte(key, ':')+1:]
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("look up %s: %w", subject, err)
	}
	ch := r.flights.DoChan(key, func() (any, error) {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedWorkTimeout)
		defer cancel()
		return fn(wctx)
	})
	select {
	case <-ctx.Done():
		return nil, fmt.Errorf("look up %s: %w", subject, ctx.Err())
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		ident := *res.Val.(*Identity) // each caller gets its own copy
		return &ident, nil
	}
}

func (r *Resolver) lookupDID(ctx context.Context, did syntax.DID) (*Identity, error) {
	doc, err := r.resolveDID(ctx, did)
	if err != nil {
		return nil, err
	}
	ident, declared, err := r.identityFromDoc(doc)
	if err != nil {
		return nil, err
	}
	if declared != "" {
		resolved, err := r.ResolveHandle(ctx, declared)
		switch {
		case ctx.Err() != nil:
			return nil, fmt.Errorf("verify handle %s of %s: %w", declared, did, ctx.Err())
		case err != nil:
			r.log.DebugContext(ctx, "handle of DID does not resolve; showing handle.invalid", "did", did, "handle", declared, "err", err)
		case resolved != did:
			r.log.DebugContext(ctx, "handle of DID resolves elsewhere; showing handle.invalid", "did", did, "handle", declared, "resolved", resolved)
		default:
			ident.Handle = declared
		}
	}
	r.store(ident)
	return &ident, nil
}

// identityFromDoc extracts the DID, PDS and declared (unverified) handle.
// Handle is left as handle.invalid.
func (r *Resolver) identityFromDoc(doc *indigoid.DIDDocument) (Identity, syntax.Handle, error) {
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

// checkPDS accepts an absolute https URL (http with AllowInsecure) without
// credentials, query or fragment, and returns it without trailing slash.
func (r *Resolver) checkPDS(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("PDS endpoint %q is not a URL: %w", raw, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
	case "http":
		if !r.allowInsecure {
			return "", fmt.Errorf("PDS endpoint %q is not https (http is allowed only with identity.allow_insecure)", raw)
		}
	default:
		return "", fmt.Errorf("PDS endpoint %q is not an http(s) URL", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("PDS endpoint %q has no host", raw)
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("PDS endpoint %q must be a plain URL without credentials, query or fragment", raw)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	return strings.TrimRight(u.String(), "/"), nil
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
	if r.xrpcURL != "" {
		return r.resolveHandleXRPC(ctx, h)
	}
	dnsCtx, cancel := context.WithTimeout(ctx, dnsLookupTimeout)
	did, dnsErr := r.base.ResolveHandleDNS(dnsCtx, h)
	cancel()
	if dnsErr == nil {
		return did, nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("resolve handle %s: %w", h, ctx.Err())
	}
	did, httpErr := r.base.ResolveHandleWellKnown(ctx, h)
	if httpErr == nil {
		return did, nil
	}
	if ctx.Err() != nil {
		return "", fmt.Errorf("resolve handle %s: %w", h, ctx.Err())
	}
	return "", newError(ErrHandleNotFound, fmt.Errorf("DNS: %w; HTTPS well-known: %w", dnsErr, httpErr),
		"handle %s does not resolve to an account", h)
}

func (r *Resolver) resolveHandleXRPC(ctx context.Context, h syntax.Handle) (syntax.DID, error) {
	u := r.xrpcURL + xrpcResolveHandle + "?handle=" + url.QueryEscape(h.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", newError(ErrConfig, err, "cannot query the handle resolver")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
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

// resolveDID fetches and checks a DID document.
func (r *Resolver) resolveDID(ctx context.Context, did syntax.DID) (*indigoid.DIDDocument, error) {
	switch did.Method() {
	case "plc":
		doc, err := r.base.ResolveDID(ctx, did)
		if err != nil {
			return nil, r.didError(ctx, did, "the PLC directory", err)
		}
		return doc, nil
	case "web":
		return r.resolveDIDWeb(ctx, did)
	default:
		return nil, newError(ErrUnsupportedDID, nil, "%s uses the DID method %q; only did:plc and did:web accounts are supported", did, did.Method())
	}
}

func (r *Resolver) didError(ctx context.Context, did syntax.DID, where string, err error) error {
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("resolve %s: %w", did, ctx.Err())
	case errors.Is(err, indigoid.ErrDIDNotFound):
		return newError(ErrDIDNotFound, err, "account %s was not found", did)
	default:
		return newError(ErrUnavailable, err, "could not fetch the DID document of %s from %s", did, where)
	}
}

// resolveDIDWeb fetches https://<host>/.well-known/did.json. The AT
// Protocol allows only hostname-level did:web, and localhost (with an
// encoded port) only for development.
func (r *Resolver) resolveDIDWeb(ctx context.Context, did syntax.DID) (*indigoid.DIDDocument, error) {
	docURL, err := r.didWebURL(did)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return nil, newError(ErrUnsupportedDID, err, "%s is not a usable did:web", did)
	}
	req.Header.Set("Accept", "application/did+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, r.didError(ctx, did, docURL, fmt.Errorf("%w: %w", indigoid.ErrDIDNotFound, err))
		}
		return nil, r.didError(ctx, did, docURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, newError(ErrDIDNotFound, fmt.Errorf("GET %s: HTTP %d", docURL, resp.StatusCode), "account %s was not found", did)
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, newError(ErrUnavailable, fmt.Errorf("GET %s: HTTP %d", docURL, resp.StatusCode), "could not fetch the DID document of %s", did)
	}
	body, err := safehttp.ReadBody(resp.Body, maxDIDDocBytes)
	if err != nil {
		return nil, r.didError(ctx, did, docURL, err)
	}
	var doc indigoid.DIDDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, newError(ErrUnavailable, fmt.Errorf("decode %s: %w", docURL, err), "the DID document of %s is not valid JSON", did)
	}
	if doc.DID != did {
		return nil, newError(ErrDIDNotFound, fmt.Errorf("document id is %q", doc.DID), "the DID document at %s is not for %s", docURL, did)
	}
	return &doc, nil
}

func (r *Resolver) didWebURL(did syntax.DID) (string, error) {
	id := did.Identifier()
	if strings.Contains(id, ":") {
		return "", newError(ErrUnsupportedDID, nil, "%s is a path-based did:web, which the AT Protocol does not support", did)
	}
	hostport, err := url.PathUnescape(id)
	if err != nil {
		return "", newError(ErrUnsupportedDID, err, "%s is not a valid did:web", did)
	}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	}
	host = strings.ToLower(host)
	if host == "localhost" {
		if !r.allowInsecure {
			return "", newError(ErrUnsupportedDID, nil, "%s names localhost, allowed only with identity.allow_insecure", did)
		}
		if hostport != host && !validPort(port) {
			// A port is digits and nothing else: "%3A80%40evil.example"
			// would make the URL's host evil.example.
			return "", newError(ErrUnsupportedDID, nil, "%s names localhost with a port that is not a number from 1 to 65535", did)
		}
		if port == "" {
			return "http://localhost/.well-known/did.json", nil
		}
		return "http://" + net.JoinHostPort(host, port) + "/.well-known/did.json", nil
	}
	if port != "" {
		return "", newError(ErrUnsupportedDID, nil, "%s has a port number, allowed only for localhost in development", did)
	}
	h, err := syntax.ParseHandle(host)
	if err != nil {
		return "", newError(ErrUnsupportedDID, err, "%s does not name a valid hostname", did)
	}
	if !h.AllowedTLD() {
		return "", newError(ErrUnsupportedDID, nil, "%s uses a reserved top-level domain (.%s)", did, h.TLD())
	}
	return "https://" + h.String() + "/.well-known/did.json", nil
}

func (r *Resolver) cachedHandle(h syntax.Handle) (*Identity, bool) {
	if r.ttl < 0 {
		return nil, false
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	he, ok := r.byHandle[h]
	if !ok || !now.Before(he.expires) {
		return nil, false
	}
	de, ok := r.byDID[he.did]
	if !ok || !now.Before(de.expires) || de.ident.Handle != h {
		return nil, false
	}
	ident := de.ident
	return &ident, true
}

func (r *Resolver) cachedDID(did syntax.DID) (*Identity, bool) {
	if r.ttl < 0 {
		return nil, false
	}
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	de, ok := r.byDID[did]
	if !ok || !now.Before(de.expires) {
		return nil, false
	}
	ident := de.ident
	return &ident, true
}

// store caches ident under its DID and, when verified, its handle.
func (r *Resolver) store(ident Identity) {
	if r.ttl < 0 {
		return
	}
	now := r.now()
	expires := now.Add(r.ttl)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.byDID) >= maxCacheEntries || len(r.byHandle) >= maxCacheEntries {
		r.evictLocked(now)
	}
	r.byDID[ident.DID] = didEntry{ident: ident, expires: expires}
	if !ident.Handle.IsInvalidHandle() {
		r.byHandle[ident.Handle] = handleEntry{did: ident.DID, expires: expires}
	}
}

// evictLocked drops expired entries, then arbitrary ones, to make room.
func (r *Resolver) evictLocked(now time.Time) {
	for k, e := range r.byDID {
		if !now.Before(e.expires) {
			delete(r.byDID, k)
		}
	}
	for k, e := range r.byHandle {
		if !now.Before(e.expires) {
			delete(r.byHandle, k)
		}
	}
	for k := range r.byDID {
		if len(r.byDID) < maxCacheEntries*9/10 {
			break
		}
		delete(r.byDID, k)
	}
	for k := range r.byHandle {
		if len(r.byHandle) < maxCacheEntries*9/10 {
			break
		}
		delete(r.byHandle, k)
	}
}

// Purge forgets a DID and any handle cached for it.
func (r *Resolver) Purge(did syntax.DID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if de, ok := r.byDID[did]; ok {
		if he, ok := r.byHandle[de.ident.Handle]; ok && he.did == did {
			delete(r.byHandle, de.ident.Handle)
		}
	}
	delete(r.byDID, did)
}
