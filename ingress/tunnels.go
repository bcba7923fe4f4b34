package ingress

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/internal/every"
	"github.com/ioproxy/ioproxy/sessions"
)

// A WebSocket is admitted once, at its upgrade, and may stay open for
// hours: a sign-out, an expired session or a reload that removes the rule
// or key that admitted it would leave it open. So an open tunnel is judged
// again every tunnelRecheck, as a new request of the same browser would
// be under the routes then in use, and closed when that request would not
// be admitted as the same identity. Across replicas this needs nothing
// more than the store: a sign-out on one replica deletes the session that
// the others look up.

// DefaultTunnelRecheck is how often an open WebSocket is judged again:
// a session lookup (cached on Redis) per tunnel per interval.
const DefaultTunnelRecheck = 30 * time.Second

// recheckKey marks the request of a tunnel's recheck: a store out of
// reach is logged by the requests that meet it, not again by every open
// tunnel at every recheck, and its API key is not counted against the
// wrong-key limit (admitKey).
type recheckKey struct{}

// rechecking reports whether r is an open tunnel's, judged again.
func rechecking(r *http.Request) bool { return r.Context().Value(recheckKey{}) != nil }

// logLookupFailure logs a session store's failure to answer r.
func (hr *hostRoute) logLookupFailure(r *http.Request, err error) {
	if !rechecking(r) {
		hr.router.log.Error("session store failed", "host", hr.host.Hostname, "err", err)
	}
}

// errTunnelRefused ends a tunnel whose request is no longer admitted.
var errTunnelRefused = errors.New("the websocket is no longer admitted")

// admittedAs is who a request was admitted as, as the backend was told:
// the account, the API key's user and the provider sessions passed on.
type admittedAs struct {
	did, keyUser, providers string
}

func identityOf(sess *sessions.Session, provs []*sessions.Session, keyUser string) admittedAs {
	id := admittedAs{keyUser: keyUser}
	if sess != nil {
		id.did = sess.DID
	}
	ids := make([]string, len(provs))
	for i, ps := range provs {
		ids[i] = ps.ID
	}
	id.providers = strings.Join(ids, ",")
	return id
}

// serveTunnel passes an upgrade to the backend through the ReverseProxy,
// which owns the tunnel, and watches its admission while it is open.
func (hr *hostRoute) serveTunnel(w http.ResponseWriter, r *http.Request, st *proxyState) {
	ctx, cancel := context.WithCancelCause(r.Context())
	was := identityOf(st.session, st.providers, st.keyUser)
	// The watch asks under ctx, so that its lookups end with the tunnel,
	// and the handler waits for it: nothing reads r after ServeHTTP.
	watched := r.WithContext(context.WithValue(ctx, recheckKey{}, true))
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		every.Spread(ctx, hr.router.tunnelRecheck, func(context.Context) {
			if why := hr.rejudge(watched, was); why != "" {
				hr.router.log.Info("websocket closed", "host", hr.host.Hostname, "path", r.URL.Path, "why", why)
				cancel(errTunnelRefused)
			}
		})
	}()
	defer func() {
		cancel(nil)
		<-stopped
	}()
	// The ReverseProxy closes the backend's side when the request's
	// context ends, and then the client's.
	hr.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, ctxKey{}, st)))
}

// rejudge says why the request of an open tunnel would not be admitted
// as was now, under the routes in use; "" when it would. A store
// that cannot answer keeps the tunnel open: an outage must not cut every
// WebSocket at once.
func (hr *hostRoute) rejudge(r *http.Request, was admittedAs) string {
	cur := hr.router.Routes().same(hr)
	if cur == nil {
		return "its host or serve block was removed"
	}
	sess, provs, err := cur.signedIn(r)
	if err != nil {
		return ""
	}
	adm := cur.admit(r, sess, provs, publicPathsApply)
	switch {
	case adm.outcome == busy:
		// The key could not be checked just now (a reload's new keys
		// check it again, and a flood of wrong keys may fill the
		// queue): no answer, as a store out of reach is none. The
		// wrong-key limit, which others at its address may have spent,
		// does not apply to a recheck (admitKey).
		return ""
	case adm.outcome != admitted:
		return "the request would not be admitted now (signed out, expired, or the rules changed)"
	case identityOf(adm.session, adm.providers, adm.keyUser) != was:
		return "the request would be admitted as someone else now"
	}
	return ""
}

// same is the route of these routes that stands for hr, of the same or
// another configuration: the same host name, or the same serve block.
func (routes *Routes) same(hr *hostRoute) *hostRoute {
	if hr.serve != nil {
		return routes.serves[hr.serve.label]
	}
	return routes.hosts[hr.host.Hostname]
}
