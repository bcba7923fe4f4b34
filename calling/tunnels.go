package calling

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/contract"
	"github.com/ioproxy/ioproxy/internal/every"
)

// A WebSocket through a calling port outlives the call that opened it,
// and the port's listener too: a reload that changes or removes the call
// block retires the port's handler (Retire), which closes its tunnels;
// and a tunnel that carries the user's provider session (auth with
// credential = "session:<name>") is closed once that session would no
// longer give a credential (a sign-out, its end, the host's rules), as
// each open tunnel is asked again every TunnelRecheck. A tunnel to an
// ingress host is judged by that host besides (ingress/tunnels.go).

// DefaultTunnelRecheck is how often a tunnel's session credential is
// looked at again.
const DefaultTunnelRecheck = 30 * time.Second

// errRetired ends the tunnels of a port that a reload replaced.
var errRetired = errors.New("the call block changed or was removed by a reload")

// errNoCredential ends a tunnel whose session gives no credential now.
var errNoCredential = errors.New("the user's session no longer gives a credential")

// Retire closes the port's open tunnels, and those it opens from now
// on: the server calls it on a handler whose call block a reload
// changed or removed. Calls in flight that do not upgrade finish.
func (p *port) Retire() { p.retireOnce.Do(func() { close(p.retired) }) }

func (p *port) isRetired() bool {
	select {
	case <-p.retired:
		return true
	default:
		return false
	}
}

// isUpgrade reports whether a call asks for a tunnel (the guards have
// let only websocket through by then).
func isUpgrade(r *http.Request) bool { return r.Header.Get("Upgrade") != "" }

// watchTunnel returns r under a context that ends when the port is
// retired or the call's session credential lapses, and the function that
// stops the watch, which the handler calls before it returns.
func (p *port) watchTunnel(r *http.Request) (*http.Request, func()) {
	ctx, cancel := context.WithCancelCause(r.Context())
	watched := r.WithContext(ctx)
	proxySession := r.Header.Get(contract.ProxySession)
	go func() {
		// Touches nothing of r: not waited for.
		select {
		case <-p.retired:
			p.cfg.Logger.Info("call tunnel closed", "call", p.cfg.Call.Label, "why", errRetired)
			cancel(errRetired)
		case <-ctx.Done():
		}
	}()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if auth := p.cfg.Call.Auth; auth == nil || auth.Provider == "" {
			return // a fixed credential does not lapse
		}
		every.Tick(ctx, p.recheck, func(ctx context.Context) {
			if !p.stillCredentialed(ctx, proxySession) {
				p.cfg.Logger.Info("call tunnel closed", "call", p.cfg.Call.Label, "why", errNoCredential)
				cancel(errNoCredential)
			}
		})
	}()
	return watched, func() {
		cancel(nil)
		<-stopped
	}
}

// stillCredentialed reports whether the tunnel's call would still get
// its session credential; a store that cannot answer or a refresh that
// fails for now counts as yes (an outage must not cut every tunnel).
func (p *port) stillCredentialed(ctx context.Context, proxySession string) bool {
	_, status, code, _ := credential(ctx, p.cfg, proxySession)
	switch {
	case status == 0:
		return true
	case status == http.StatusUnauthorized && strings.EqualFold(code, "AuthRequired"):
		return false
	}
	return true
}
