package xrpc

import (
	"context"
	"net/http"
	"net/url"

	"github.com/ioproxy/ioproxy/contract"
)

// Identity is what ioproxy tells an app about the user behind a request.
type Identity struct {
	// Session is the opaque Proxy-Session key; empty when nobody is signed in.
	Session string
	// DID is the signed-in user's DID (User-Did).
	DID string
	// Handle is the signed-in user's handle (User-Handle).
	Handle string
}

// IdentityFrom reads the identity headers that ioproxy sets on a request it forwards to the app.
// ioproxy strips any such headers sent by the client, so they can be trusted behind it.
func IdentityFrom(r *http.Request) Identity {
	return Identity{
		Session: r.Header.Get(contract.ProxySession),
		DID:     r.Header.Get(contract.UserDID),
		Handle:  r.Header.Get(contract.UserHandle),
	}
}

// SignedIn reports whether the request came from a signed-in user.
func (id Identity) SignedIn() bool { return id.DID != "" }

// ProxyClient calls ioproxy's calling port on behalf of a user: it adds Proxy-Session and
// User-Did to every call, so that ioproxy sends it to that user's PDS, with the user's
// credentials when a session is given and without any when only the DID is.
type ProxyClient struct {
	base   *HTTPClient
	header http.Header
}

var _ Client = (*ProxyClient)(nil)

// NewProxyClient returns a client that sends id's Session and DID (those that are set) through
// base, whose Host is the calling port.
func NewProxyClient(base *HTTPClient, id Identity) *ProxyClient {
	h := http.Header{}
	if id.Session != "" {
		h.Set(contract.ProxySession, id.Session)
	}
	if id.DID != "" {
		h.Set(contract.UserDID, id.DID)
	}
	return &ProxyClient{base: base, header: h}
}

// ProxyClientFor returns a client acting for the user behind the incoming request r: it copies
// r's Proxy-Session and User-Did headers.
func ProxyClientFor(base *HTTPClient, r *http.Request) *ProxyClient {
	return NewProxyClient(base, IdentityFrom(r))
}

// PublicClientFor returns a client that reaches did's PDS through the calling port without
// credentials, for public queries such as com.atproto.repo.describeRepo.
func PublicClientFor(base *HTTPClient, did string) *ProxyClient {
	return NewProxyClient(base, Identity{DID: did})
}

// Do implements Client.
func (p *ProxyClient) Do(ctx context.Context, method, nsid string, params url.Values, input, output any) error {
	return p.base.DoWithHeader(ctx, p.header, method, nsid, params, input, output)
}
