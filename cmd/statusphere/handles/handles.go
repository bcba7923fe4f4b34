// Package handles resolves authors' DIDs to handles for display, through ioproxy's calling
// port: a public com.atproto.repo.describeRepo sent with User-Did set to the author, which
// ioproxy forwards, without credentials, to that author's PDS, then
// com.atproto.identity.resolveHandle, which ioproxy answers itself, to check that the handle
// really names the author. Results are cached.
package handles

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/lex/com/atproto/identity"
	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/lex/com/atproto/repo"
	"github.com/ioproxy/ioproxy/cmd/statusphere/internal/xrpc"
)

// Config configures a Resolver.
type Config struct {
	// Calling is the calling port. Required.
	Calling *xrpc.HTTPClient
	// TTL is how long a resolved handle is cached. Default: 1h.
	TTL time.Duration
	// FailureTTL is how long a failed lookup is remembered, so that a broken PDS is not asked
	// on every page view. Default: 1m.
	FailureTTL time.Duration
	// LookupTimeout bounds one describeRepo call. Default: 5s.
	LookupTimeout time.Duration
	// MaxEntries bounds the cache. Default: 10000.
	MaxEntries int
	// Parallel bounds concurrent lookups. Default: 8.
	Parallel int
	Logger   *slog.Logger
	Now      func() time.Time
}

// Resolver maps DIDs to handles.
type Resolver struct {
	cfg Config
	log *slog.Logger
	sem chan struct{}

	mu       sync.Mutex
	cache    map[string]entry
	inflight map[string]*lookup
}

type entry struct {
	handle  string // "" for a failed lookup
	expires time.Time
}

type lookup struct {
	done   chan struct{}
	handle string
}

// New returns a Resolver.
func New(cfg Config) *Resolver {
	if cfg.TTL <= 0 {
		cfg.TTL = time.Hour
	}
	if cfg.FailureTTL <= 0 {
		cfg.FailureTTL = time.Minute
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 5 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 10000
	}
	if cfg.Parallel <= 0 {
		cfg.Parallel = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Resolver{
		cfg:      cfg,
		log:      log.With("component", "handles"),
		sem:      make(chan struct{}, cfg.Parallel),
		cache:    map[string]entry{},
		inflight: map[string]*lookup{},
	}
}

// Remember caches a handle learnt elsewhere (the User-Handle header of a signed-in user).
func (r *Resolver) Remember(did, handle string) {
	if did == "" || !validHandle(handle) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.putLocked(did, strings.ToLower(handle), r.cfg.TTL)
}

// Handles returns the handles of those dids it can resolve before ctx ends; the others are
// missing from the map (show the DID). Lookups still running when ctx ends go on in the
// background, bounded by LookupTimeout, and fill the cache for the next page.
func (r *Resolver) Handles(ctx context.Context, dids []string) map[string]string {
	out := map[string]string{}
	var waits []*lookup
	var waitDIDs []string
	now := r.cfg.Now()
	r.mu.Lock()
	for _, did := range dids {
		if _, done := out[did]; done {
			continue
		}
		if e, ok := r.cache[did]; ok && now.Before(e.expires) {
			if e.handle != "" {
				out[did] = e.handle
			}
			continue
		}
		l, ok := r.inflight[did]
		if !ok {
			l = &lookup{done: make(chan struct{})}
			r.inflight[did] = l
			go r.resolve(context.WithoutCancel(ctx), did, l)
		}
		waits = append(waits, l)
		waitDIDs = append(waitDIDs, did)
	}
	r.mu.Unlock()

	for i, l := range waits {
		select {
		case <-l.done:
			if l.handle != "" {
				out[waitDIDs[i]] = l.handle
			}
		case <-ctx.Done():
			return out
		}
	}
	return out
}

func (r *Resolver) resolve(ctx context.Context, did string, l *lookup) {
	r.sem <- struct{}{}
	defer func() { <-r.sem }()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.LookupTimeout)
	defer cancel()

	handle, err := r.describe(ctx, did)
	ttl := r.cfg.TTL
	if err != nil {
		r.log.Warn("cannot resolve a handle; showing the DID", "did", did, "err", err)
		handle, ttl = "", r.cfg.FailureTTL
	}
	r.mu.Lock()
	r.putLocked(did, handle, ttl)
	delete(r.inflight, did)
	l.handle = handle
	close(l.done)
	r.mu.Unlock()
}

func (r *Resolver) describe(ctx context.Context, did string) (string, error) {
	out, err := repo.DescribeRepo(ctx, xrpc.PublicClientFor(r.cfg.Calling, did), repo.DescribeRepoParams{Repo: did})
	if err != nil {
		return "", fmt.Errorf("describe repo %s: %w", did, err)
	}
	if out.DID != did {
		return "", fmt.Errorf("describe repo %s: answered for %q", did, out.DID)
	}
	if !out.HandleIsCorrect {
		return "", fmt.Errorf("describe repo %s: handle %q does not resolve back to the DID", did, out.Handle)
	}
	if !validHandle(out.Handle) {
		return "", fmt.Errorf("describe repo %s: invalid handle %q", did, out.Handle)
	}
	// describeRepo is answered by the author's own PDS, which may claim
	// any handle (and handleIsCorrect). ioproxy answers resolveHandle
	// itself, verified both ways: only a handle that names this DID is
	// shown.
	handle := strings.ToLower(out.Handle)
	res, err := identity.ResolveHandle(ctx, r.cfg.Calling, identity.ResolveHandleParams{Handle: handle})
	if err != nil {
		return "", fmt.Errorf("resolve handle %q of %s: %w", handle, did, err)
	}
	if res.DID != did {
		return "", fmt.Errorf("describe repo %s: handle %q belongs to %s", did, handle, res.DID)
	}
	return handle, nil
}

func (r *Resolver) putLocked(did, handle string, ttl time.Duration) {
	now := r.cfg.Now()
	if len(r.cache) >= r.cfg.MaxEntries {
		for k, e := range r.cache {
			if !now.Before(e.expires) {
				delete(r.cache, k)
			}
		}
		// Still full: forget arbitrary entries; they are only a cache.
		for k := range r.cache {
			if len(r.cache) < r.cfg.MaxEntries {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[did] = entry{handle: handle, expires: now.Add(ttl)}
}

// validHandle is a light check of handle syntax: what is shown must look like a domain name.
func validHandle(h string) bool {
	if len(h) < 3 || len(h) > 253 || !strings.Contains(h, ".") || strings.HasPrefix(h, ".") || strings.HasSuffix(h, ".") {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}
