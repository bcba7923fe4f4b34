package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/every"
	"github.com/ioproxy/ioproxy/internal/textutil"
)

// errNoInstances means a Nomad service has no instance we can send to.
var errNoInstances = errors.New("no healthy instances")

// NomadConfig configures the Nomad service catalogue client.
type NomadConfig struct {
	Nomad  config.Nomad
	Client *http.Client
	Logger *slog.Logger
	Now    func() time.Time
}

// Nomad resolves "nomad:<service>" backends through Nomad's HTTP API
// (GET /v1/service/<name>), caching each service's instances and
// refreshing them in the background. An instance is used while its
// allocation's Nomad health checks for the service pass (those of the
// "nomad" service provider), and not for a while after a connection to it
// failed.
type Nomad struct {
	cfg          NomadConfig
	warnedChecks atomic.Bool

	mu       sync.Mutex
	services map[string]*nomadService
}

// NewNomad returns a Nomad resolver.
func NewNomad(cfg NomadConfig) *Nomad {
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Nomad{cfg: cfg, services: map[string]*nomadService{}}
}

// nomadService is one service's cached instances.
type nomadService struct {
	n    *Nomad
	name string
	next atomic.Uint64

	mu        sync.Mutex
	instances []*url.URL
	fetched   time.Time
	lastErr   error
	// down holds instances that failed recently, until the given time.
	down map[string]time.Time
	// fetching is non-nil while a fetch is under way; waiters block on it.
	fetching chan struct{}
}

// backend returns the backend for a service; instances are fetched lazily.
func (n *Nomad) backend(name string) *nomadService {
	n.mu.Lock()
	defer n.mu.Unlock()
	s, ok := n.services[name]
	if !ok {
		s = &nomadService{n: n, name: name, down: map[string]time.Time{}}
		n.services[name] = s
	}
	return s
}

// Retain forgets the services not named, which no route uses any more
// (a host removed by a reload, or named only by a reload that failed),
// so that Run stops asking Nomad about them. A route still serving a
// request keeps its service working, fetched on demand.
func (n *Nomad) Retain(names []string) {
	keep := map[string]bool{}
	for _, name := range names {
		keep[name] = true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for name := range n.services {
		if !keep[name] {
			delete(n.services, name)
		}
	}
}

// Services are the names of the services Run keeps fresh, sorted.
func (n *Nomad) Services() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Sorted(maps.Keys(n.services))
}

// Run refreshes every known service at the configured interval until ctx
// ends, so requests never wait for Nomad once a service is known.
func (n *Nomad) Run(ctx context.Context) {
	every.Tick(ctx, n.cfg.Nomad.Refresh, n.refreshAll)
}

// refreshAll asks Nomad about every known service, outside the lock.
func (n *Nomad) refreshAll(ctx context.Context) {
	n.mu.Lock()
	svcs := slices.Collect(maps.Values(n.services))
	n.mu.Unlock()
	for _, s := range svcs {
		if err := s.refresh(ctx); err != nil {
			n.cfg.Logger.Warn("nomad service refresh failed", "service", s.name, "err", err)
		}
	}
}

func (s *nomadService) pick(ctx context.Context) (*url.URL, error) {
	s.mu.Lock()
	stale := s.fetched.IsZero() || s.n.cfg.Now().Sub(s.fetched) > 3*s.n.cfg.Nomad.Refresh
	s.mu.Unlock()
	if stale {
		if err := s.refresh(ctx); err != nil {
			s.mu.Lock()
			have := len(s.instances) > 0
			s.mu.Unlock()
			if !have {
				return nil, err
			}
			// Keep serving the last known instances while Nomad is unreachable.
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.n.cfg.Now()
	var healthy []*url.URL
	for _, u := range s.instances {
		if until, bad := s.down[u.Host]; !bad || now.After(until) {
			healthy = append(healthy, u)
		}
	}
	if len(healthy) == 0 {
		if len(s.instances) == 0 {
			if s.lastErr != nil {
				return nil, s.lastErr
			}
			return nil, fmt.Errorf("nomad service %q: %w (no registered instances)", s.name, errNoInstances)
		}
		// Every instance failed recently: try them anyway rather than
		// refuse, since passive checks may be stale.
		healthy = s.instances
	}
	i := s.next.Add(1)
	return healthy[int(i%uint64(len(healthy)))], nil
}

func (s *nomadService) failed(target *url.URL) {
	s.mu.Lock()
	s.down[target.Host] = s.n.cfg.Now().Add(10 * time.Second)
	s.mu.Unlock()
}

// refresh fetches the instances; concurrent callers share one fetch.
func (s *nomadService) refresh(ctx context.Context) error {
	s.mu.Lock()
	if wait := s.fetching; wait != nil {
		s.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.lastErr
	}
	done := make(chan struct{})
	s.fetching = done
	s.mu.Unlock()

	instances, err := s.n.fetch(ctx, s.name)

	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetching = nil
	close(done)
	s.lastErr = err
	if err != nil {
		return err
	}
	s.instances = instances
	s.fetched = s.n.cfg.Now()
	return nil
}

type nomadRegistration struct {
	ServiceName string
	AllocID     string
	Address     string
	Port        int
}

// nomadCheck is one entry of GET /v1/client/allocation/<id>/checks.
type nomadCheck struct {
	Service string
	Status  string // "success", "failure" or "pending"
}

func (n *Nomad) fetch(ctx context.Context, service string) ([]*url.URL, error) {
	u, err := url.Parse(n.cfg.Nomad.Address)
	if err != nil {
		return nil, fmt.Errorf("nomad address %q: %w", n.cfg.Nomad.Address, err)
	}
	u = u.JoinPath("v1", "service", service)
	q := url.Values{}
	if n.cfg.Nomad.Namespace != "" {
		q.Set("namespace", n.cfg.Nomad.Namespace)
	}
	if n.cfg.Nomad.Region != "" {
		q.Set("region", n.cfg.Nomad.Region)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("nomad service %q: %w", service, err)
	}
	if n.cfg.Nomad.Token != "" {
		req.Header.Set("X-Nomad-Token", n.cfg.Nomad.Token)
	}
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("nomad service %q: %w", service, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("nomad service %q: read response: %w", service, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("nomad service %q: %s: %s", service, resp.Status, textutil.Clip(string(body), 200))
	}
	var regs []nomadRegistration
	if err := json.Unmarshal(body, &regs); err != nil {
		return nil, fmt.Errorf("nomad service %q: decode response: %w", service, err)
	}
	var out []*url.URL
	checked := map[string]bool{} // alloc id -> its checks pass
	for _, r := range regs {
		if r.Address == "" || r.Port <= 0 {
			continue
		}
		if r.AllocID != "" {
			ok, seen := checked[r.AllocID]
			if !seen {
				ok = n.allocHealthy(ctx, r.AllocID, service)
				checked[r.AllocID] = ok
			}
			if !ok {
				continue
			}
		}
		out = append(out, &url.URL{Scheme: "http", Host: net.JoinHostPort(r.Address, strconv.Itoa(r.Port))})
	}
	return out, nil
}

// checksUnreadable says once, at warn level, that health checks cannot be
// read, so that an operator learns that only passive checks apply.
func (n *Nomad) checksUnreadable(allocID, why string) {
	if n.warnedChecks.CompareAndSwap(false, true) {
		n.cfg.Logger.Warn("cannot read Nomad health checks; using connection failures only (the token needs read-job)", "alloc", allocID, "reason", why)
	}
}

// allocHealthy reports whether every Nomad health check of service in an
// allocation passes. Checks that cannot be read (an older Nomad, or a
// token without read-job) count as passing: the passive check on
// connection failures still applies.
func (n *Nomad) allocHealthy(ctx context.Context, allocID, service string) bool {
	u, err := url.Parse(n.cfg.Nomad.Address)
	if err != nil {
		return true
	}
	u = u.JoinPath("v1", "client", "allocation", allocID, "checks")
	if n.cfg.Nomad.Namespace != "" {
		u.RawQuery = url.Values{"namespace": {n.cfg.Nomad.Namespace}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return true
	}
	if n.cfg.Nomad.Token != "" {
		req.Header.Set("X-Nomad-Token", n.cfg.Nomad.Token)
	}
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		n.checksUnreadable(allocID, err.Error())
		return true
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		n.checksUnreadable(allocID, resp.Status)
		return true
	}
	var checks map[string]nomadCheck
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&checks); err != nil {
		return true
	}
	for _, c := range checks {
		if c.Service == service && c.Status != "success" {
			return false
		}
	}
	return true
}
