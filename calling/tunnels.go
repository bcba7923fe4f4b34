package calling

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/every"
)

// A WebSocket through a calling port outlives the call that opened it,
// and the port's listener too: a reload that changes or removes the call
// block closes Config.Retired, which closes its tunnels; and a tunnel
// that carries the user's provider session (auth with credential =
// "session:<name>") is closed once that session is gone or no longer
// admitted (a sign-out, its end, the host's rules), or is another one,
// as each open tunnel is asked again every TunnelRecheck. A tunnel to an
// ingress host is judged by that host besides (ingress/tunnels.go).

// DefaultTunnelRecheck is how often a tunnel's session is looked at
// again.
const DefaultTunnelRecheck = 30 * time.Second

// errRetired ends the tunnels of a call block that a reload changed or
// removed.
var errRetired = errors.New("the call block changed or was removed by a reload")

func (p *port) isRetired() bool {
	select {
	case <-p.cfg.Retired:
		return true
	default:
		return false
	}
}

// isUpgrade reports whether a call asks for a tunnel (the guards have
// let only websocket through by then).
func isUpgrade(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// watchTunnel returns r under a context that ends when the call block is
// retired or the call's session lapses, and the function that stops the
// watch, which the handler calls before it returns: it waits for the
// watch's goroutines, of which there are only those that can end the
// tunnel.
func (p *port) watchTunnel(r *http.Request) (*http.Request, func()) {
	ctx, cancel := context.WithCancelCause(r.Context())
	var wg sync.WaitGroup
	if p.cfg.Retired != nil {
		wg.Go(func() {
			select {
			case <-p.cfg.Retired:
				p.close(cancel, errRetired)
			case <-ctx.Done():
			}
		})
	}
	if auth := p.cfg.Call.Auth; auth != nil && auth.Provider != "" {
		// A fixed credential does not lapse; a session's may.
		proxySession := r.Header.Get(contract.ProxySession)
		wg.Go(func() { p.watchSession(ctx, cancel, proxySession) })
	}
	return r.WithContext(ctx), func() {
		cancel(nil)
		wg.Wait()
	}
}

// watchSession cancels the tunnel once the session among proxySession's
// keys is gone, no longer admitted, or another than at the start. It
// refreshes nothing (the calls that need a token do) and logs only the
// close: a store out of reach keeps every tunnel open, silently.
func (p *port) watchSession(ctx context.Context, cancel context.CancelCauseFunc, proxySession string) {
	var first string // the session's id, once known
	if sess, err := credentialSession(ctx, p.cfg, proxySession); err == nil {
		first = sess.ID
	}
	every.Spread(ctx, p.recheck, func(ctx context.Context) {
		sess, err := credentialSession(ctx, p.cfg, proxySession)
		var refused *refusal
		switch {
		case errors.As(err, &refused):
			p.close(cancel, refused)
		case err != nil:
		case first == "":
			first = sess.ID
		case sess.ID != first:
			p.close(cancel, errors.New("the Proxy-Session keys now find another session"))
		}
	})
}

func (p *port) close(cancel context.CancelCauseFunc, why error) {
	p.cfg.Logger.Info("call tunnel closed", "call", p.cfg.Call.Label, "why", why)
	cancel(why)
}
