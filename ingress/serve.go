package ingress

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/internal/httpguard"
)

// A serve block's port is a host route of its own, reached by port
// rather than by name: the block's backend behind the block's gate, with
// the header contract of any host. Nobody signs in there (a browser signs
// in on a host whose backend is serving:<label>, which config has made
// the block's front), so it admits API keys and public paths only, and
// never reads a session cookie.
type serveInfo struct {
	label string
	// signInAt are the hosts that front the block, for the page that
	// tells a person where to sign in.
	signInAt []string
	// loopback: the port listens on this machine only, so any Host but
	// an IP or localhost is a web page's, through DNS rebinding.
	loopback bool
}

// newServeRoute builds the route of a serve block's port.
func (router *Router) newServeRoute(s config.Serve, cfg RoutesConfig) (*hostRoute, error) {
	h := config.Host{Hostname: "serve:" + s.Label, ShortName: s.ShortName, Backend: s.Backend, Access: s.Access}
	hr, err := router.newHostRoute(h, cfg)
	if err != nil {
		return nil, err
	}
	info := &serveInfo{label: s.Label, loopback: isLoopbackBind(s.Bind)}
	if s.Access != nil && s.Access.Rules != nil {
		// Only require_atproto admits people who sign in on the hosts.
		info.signInAt = s.Hosts
	}
	hr.serve = info
	return hr, nil
}

// isLoopbackBind reports whether a bind address is this machine only.
func isLoopbackBind(bind string) bool {
	if bind == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(bind)
	return err == nil && a.IsLoopback()
}

// ServeHandler returns the handler of a serve block's port.
func (routes *Routes) ServeHandler(label string) (http.Handler, bool) {
	hr, ok := routes.serves[label]
	return hr, ok
}

// hostRefused answers a request to a loopback serve port under a name
// that is not this machine's; it reports whether it did.
func (hr *hostRoute) hostRefused(w http.ResponseWriter, r *http.Request) bool {
	if !hr.serve.loopback || httpguard.HostAllowed(r.Host, nil) {
		return false
	}
	httpguard.CloseIfBody(w, r)
	writeError(w, r, errorPage{Status: http.StatusMisdirectedRequest, Title: "Wrong address", Message: "This port answers only at localhost or an IP address of this machine."})
	return true
}

// signInMessage tells a person on a serve port where to sign in.
func (si *serveInfo) signInMessage() string {
	if len(si.signInAt) == 0 {
		return "This service needs an API key here."
	}
	sites := make([]string, len(si.signInAt))
	for i, h := range si.signInAt {
		sites[i] = "https://" + h + "/"
	}
	return "Use an API key here, or sign in at " + strings.Join(sites, " or ") + " to use this service."
}
