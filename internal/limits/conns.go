package limits

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of ConnsConfig.
const (
	// minOverflow keeps a useful number of polite refusals for small
	// limits: Max/8 alone would give a limit of 10 no 503s at all.
	minOverflow = 16
	// defaultOverLimitLifetime is long enough to read one request and
	// write a 503 to a slow client, and short enough that a flood of
	// over-limit connections turns over quickly.
	defaultOverLimitLifetime = 10 * time.Second
	// clientPrefix6 groups IPv6 clients: an ISP delegates a /56 (or a
	// /48, or a /64) to one customer, who can pick any address in it.
	clientPrefix6 = 56
)

// ConnsConfig sizes a Conns.
type ConnsConfig struct {
	// Max is how many connections are served normally at once. Required.
	Max int
	// Overflow is how many connections beyond Max are still accepted and
	// answered 503. Beyond Max+Overflow a connection is closed at once:
	// answering costs a goroutine, buffers and, on TLS, a handshake, which
	// is what the limit protects. Zero means max(16, Max/8).
	Overflow int
	// OverLimitLifetime is the absolute deadline of an over-limit
	// connection, from its accept. Zero means 10s.
	OverLimitLifetime time.Duration
	// PerClient is how many connections one client may have served at
	// once, so that one client cannot hold every slot of Max. A
	// connection beyond it is over the limit (answered 503, or closed
	// beyond the overflow), whatever the total. A client is an IP
	// address, IPv4-mapped IPv6 addresses as IPv4 and IPv6 addresses
	// grouped by /56 (what one customer is delegated). Zero means no
	// limit per client; connections without an IP address (Unix sockets)
	// have none either.
	PerClient int
	// Exempt reports whether a client is exempt from PerClient: a load
	// balancer or reverse proxy in front carries many clients'
	// connections. It gets the connection's remote address, unmapped and
	// without a zone (not its /56), and is called for every accepted
	// connection, concurrently when listeners share the Conns. Nil
	// exempts none.
	Exempt func(netip.Addr) bool
}

// Conns bounds the open connections of one or more listeners (listeners
// wrapped by the same Conns share its budget). Its counters are safe for
// concurrent use.
type Conns struct {
	max, overflow int64
	lifetime      time.Duration
	perClient     int
	exempt        func(netip.Addr) bool

	served  atomic.Int64 // open connections served normally
	over    atomic.Int64 // open over-limit connections, answered 503
	refused atomic.Uint64

	mu      sync.Mutex
	clients map[netip.Addr]int // served connections per client; no zero entries
}

// NewConns returns a Conns for cfg, or an error if cfg is not usable.
func NewConns(cfg ConnsConfig) (*Conns, error) {
	if cfg.Max < 1 {
		return nil, fmt.Errorf("connection limit: Max must be at least 1, not %d", cfg.Max)
	}
	if cfg.Overflow < 0 {
		return nil, fmt.Errorf("connection limit: Overflow must not be negative, not %d (0 means the default, max(16, Max/8))", cfg.Overflow)
	}
	if cfg.OverLimitLifetime < 0 {
		return nil, fmt.Errorf("connection limit: OverLimitLifetime must not be negative, not %s (0 means the default, %s)", cfg.OverLimitLifetime, defaultOverLimitLifetime)
	}
	if cfg.PerClient < 0 {
		return nil, fmt.Errorf("connection limit: PerClient must not be negative, not %d (0 means no limit per client)", cfg.PerClient)
	}
	c := &Conns{
		max: int64(cfg.Max), overflow: int64(cfg.Overflow), lifetime: cfg.OverLimitLifetime,
		perClient: cfg.PerClient, exempt: cfg.Exempt, clients: make(map[netip.Addr]int),
	}
	if c.overflow == 0 {
		c.overflow = max(minOverflow, c.max/8)
	}
	if c.lifetime == 0 {
		c.lifetime = defaultOverLimitLifetime
	}
	return c, nil
}

// Open is the number of connections open now: the ones served normally and
// the over-limit ones not yet closed.
func (c *Conns) Open() int { return int(c.served.Load() + c.over.Load()) }

// Refused is the number of connections accepted beyond Max, or beyond
// PerClient, since c was made: the ones answered 503 and the ones closed
// at once.
func (c *Conns) Refused() uint64 { return c.refused.Load() }

// Listener wraps ln so that its connections are counted and, beyond Max,
// marked for Handler or closed.
//
// It keeps calling Accept at the limit, unlike netutil.LimitListener:
// a client left in the kernel's backlog sees a hang, not an answer.
func (c *Conns) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, conns: c} }

type listener struct {
	net.Listener
	conns *Conns
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			// Unwrapped, so that http.Server still sees its temporary
			// errors (EMFILE) as such and backs off.
			return nil, err
		}
		if conn := l.conns.admit(nc); conn != nil {
			return conn, nil
		}
	}
}

// admit wraps nc, or closes it and returns nil when even the overflow is
// full.
func (c *Conns) admit(nc net.Conn) net.Conn {
	client, limited := c.clientOf(nc)
	if !limited || c.takeClient(client) {
		if acquire(&c.served, c.max) {
			return &conn{Conn: nc, count: &c.served, owner: c, client: client, limited: limited}
		}
		if limited {
			c.releaseClient(client)
		}
	}
	c.refused.Add(1)
	if !acquire(&c.over, c.overflow) {
		_ = nc.Close()
		return nil
	}
	oc := &overConn{conn: conn{Conn: nc, count: &c.over, owner: c}, deadline: time.Now().Add(c.lifetime)}
	_ = nc.SetDeadline(oc.deadline)
	return oc
}

// clientOf is the client of nc for PerClient, if it is limited.
func (c *Conns) clientOf(nc net.Conn) (netip.Addr, bool) {
	if c.perClient == 0 {
		return netip.Addr{}, false
	}
	ip, ok := remoteIP(nc.RemoteAddr())
	if !ok || c.exempt != nil && c.exempt(ip) {
		return netip.Addr{}, false
	}
	return clientKey(ip), true
}

// remoteIP is the IP address of a remote address, unmapped and without a
// zone: the form netip.Prefix.Contains matches.
func remoteIP(a net.Addr) (netip.Addr, bool) {
	var ip netip.Addr
	switch a := a.(type) {
	case nil:
		return ip, false
	case *net.TCPAddr:
		var ok bool
		if ip, ok = netip.AddrFromSlice(a.IP); !ok {
			return ip, false
		}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return ip, false
		}
		ip = ap.Addr()
	}
	return ip.Unmap().WithZone(""), true
}

// clientKey is the client an address belongs to: itself for IPv4, its
// /56 for IPv6.
func clientKey(ip netip.Addr) netip.Addr {
	if ip.Is4() {
		return ip
	}
	p, err := ip.Prefix(clientPrefix6)
	if err != nil {
		return ip
	}
	return p.Addr()
}

func (c *Conns) takeClient(client netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.clients[client] >= c.perClient {
		return false
	}
	c.clients[client]++
	return true
}

// releaseClient gives back a client's slot, and forgets a client with
// none left, so that the map holds only clients with open connections.
func (c *Conns) releaseClient(client netip.Addr) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.clients[client] - 1; n > 0 {
		c.clients[client] = n
	} else {
		delete(c.clients, client)
	}
}

// acquire takes one of limit slots, with compare-and-swap rather than an
// add and an undo so that Open never counts more than the limits.
func acquire(n *atomic.Int64, limit int64) bool {
	for {
		cur := n.Load()
		if cur >= limit {
			return false
		}
		if n.CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

// conn gives back its slots on the first Close: http.Server, a TLS conn
// over it and a handler that hijacked it may each close it.
type conn struct {
	net.Conn
	count   *atomic.Int64
	owner   *Conns
	client  netip.Addr
	limited bool // it holds one of client's PerClient slots
	closed  atomic.Bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.count.Add(-1)
		if c.limited {
			c.owner.releaseClient(c.client)
		}
	}
	return err
}

// overConn keeps its absolute deadline: http.Server (ReadHeaderTimeout,
// IdleTimeout, TLS handshakes) and handlers set and clear deadlines, and
// any of them would otherwise let the connection outlive it.
type overConn struct {
	conn
	deadline time.Time
}

func (c *overConn) clamp(t time.Time) time.Time {
	if t.IsZero() || t.After(c.deadline) {
		return c.deadline
	}
	return t
}

func (c *overConn) SetDeadline(t time.Time) error      { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *overConn) SetReadDeadline(t time.Time) error  { return c.Conn.SetReadDeadline(c.clamp(t)) }
func (c *overConn) SetWriteDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(c.clamp(t)) }

// overLimitKey marks, in a connection's context, that the connection is
// over the limit of the Conns in it. The Conns is part of the key so that
// nested limits (one per listener, one for the process) do not mix.
type overLimitKey struct{ conns *Conns }

// ConnContext is meant for http.Server.ConnContext: it marks the context of
// an over-limit connection for Handler. It is the only place where a
// handler's request can be tied to its connection: the server calls it
// with the conn Accept returned, which over TLS is a *tls.Conn around ours.
func (c *Conns) ConnContext(ctx context.Context, nc net.Conn) context.Context {
	for nc != nil {
		switch v := nc.(type) {
		case *overConn:
			if v.owner == c {
				return context.WithValue(ctx, overLimitKey{c}, true)
			}
			return ctx
		case *conn:
			return ctx
		case interface{ NetConn() net.Conn }:
			nc = v.NetConn()
		default:
			return ctx
		}
	}
	return ctx
}

// Handler answers every request on an over-limit connection with a 503 and
// closes the connection after it, and passes the others to next. It must
// be the outermost handler, so that an overloaded server does no other work
// for them.
func (c *Conns) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(overLimitKey{c}) == nil {
			next.ServeHTTP(w, r)
			return
		}
		writeOverloaded(w, r)
	})
}

const overloadedMessage = "the server has too many open connections; retry in a second"

func writeOverloaded(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// On HTTP/2, net/http turns Connection: close into a GOAWAY.
	h.Set("Connection", "close")
	h.Set("Retry-After", "1")
	h.Set("Cache-Control", "no-store")
	if wantsJSON(r) {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "Overloaded", "message": overloadedMessage})
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = fmt.Fprintf(w, "503 Service Unavailable: %s\n", overloadedMessage)
}

// wantsJSON reports whether the request's Accept names a JSON media type
// (application/json, application/problem+json, ...): XRPC and API clients
// parse errors, browsers and curl read them.
func wantsJSON(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept") {
		for _, mr := range strings.Split(v, ",") {
			mt, params, _ := strings.Cut(mr, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
			if !strings.HasSuffix(mt, "/json") && !strings.HasSuffix(mt, "+json") {
				continue
			}
			if refusedByQ(params) {
				continue
			}
			return true
		}
	}
	return false
}

// refusedByQ reports whether media-range parameters carry q=0, which means
// "not this type".
func refusedByQ(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			v = strings.TrimSpace(v)
			return strings.Trim(v, "0.") == "" && v != ""
		}
	}
	return false
}
