// Package limits bounds what one client can make an ioproxy listener hold:
// connections, the time a request body may take, and the time an answer
// may wait for the client to take it.
//
// # Connections: Conns
//
// Every open connection costs a file descriptor, a goroutine and buffers, so
// a client (or many) opening connections without end can exhaust a
// listener. Conns serves up to Max connections normally. It does not stop
// accepting at the limit the way netutil.LimitListener does, since clients
// would then wait unanswered in the kernel's backlog, which looks like a
// hang. A connection beyond Max is accepted and every request on it is
// answered 503 Service Unavailable with Connection: close and Retry-After:
// 1, within an absolute deadline (10s by default) that the server's own
// timeouts cannot extend. Beyond Max plus a small overflow (max(16, Max/8)
// by default) a connection is closed at once, because answering it would
// cost what the limit protects. With PerClient, one client (an IP
// address; an IPv6 /56) gets the same treatment beyond its own share,
// whatever the total, so that it cannot take every slot; Exempt spares
// the proxies in front, which carry many clients.
//
// Its three parts, and BodyLimits below, are wired into one http.Server
// (TLS included: the server hands ConnContext the *tls.Conn around the
// counted conn):
//
//	conns, err := limits.NewConns(limits.ConnsConfig{Max: 4096, PerClient: 256, Exempt: isTrustedProxy})
//	...
//	bodies := limits.BodyLimits{IdleTimeout: 30 * time.Second, MinRate: 1024, WriteIdleTimeout: time.Minute}
//	srv.ConnContext = conns.ConnContext            // marks over-limit connections
//	srv.Handler = conns.Handler(bodies.Handler(h)) // conns outermost: it answers them 503
//	err = srv.Serve(conns.Listener(ln))            // or srv.ServeTLS(conns.Listener(ln), cert, key)
//
// Open and Refused are for metrics.
//
// # Request bodies: BodyLimits
//
// http.Server's ReadHeaderTimeout stops a client that trickles its headers,
// but nothing stops one that trickles its body: a byte a second keeps a
// proxied POST, its handler and its backend connection open for ever
// (slowloris, "slow POST"). BodyLimits.Handler makes a body read fail with
// ErrBodyTooSlow when no byte comes for IdleTimeout, or when fewer than
// MinRate × IdleTimeout bytes come in any IdleTimeout its Reads wait; the
// handler answers 408 Request Timeout:
//
//	proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
//		if errors.Is(err, limits.ErrBodyTooSlow) {
//			w.Header().Set("Connection", "close")
//			http.Error(w, "request body too slow", http.StatusRequestTimeout)
//			return
//		}
//		...
//	}
//
// A stalled Read is interrupted with http.ResponseController's
// SetReadDeadline, so every ResponseWriter wrapper between the server and
// BodyLimits.Handler needs an Unwrap method; without one only the rate is
// checked, when a Read returns.
//
// # Answers: BodyLimits too
//
// An answer can hold a connection as well. On HTTP/1.x net/http reads up
// to 256 KiB of an unread request body, at the client's pace and with no
// deadline, before it sends the answer; BodyLimits.Handler gives such
// answers (redirects, refusals, errors: every handler that does not read
// the body) Connection: close, and bounds what net/http reads after them,
// even with IdleTimeout zero. And a client that never reads its answer
// blocks the handler's Writes, and the backend behind it, for ever;
// WriteIdleTimeout fails a Write that stays blocked that long, without
// cutting streams that go quiet between writes. The ResponseWriter it
// gives handlers keeps http.ResponseController (Flush, Hijack for
// WebSockets, deadlines) working through Unwrap.
package limits
