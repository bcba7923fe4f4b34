package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	indigoid "github.com/bluesky-social/indigo/atproto/identity"
	"github.com/bluesky-social/indigo/atproto/syntax"

	"github.com/ioproxy/ioproxy/atproto/safehttp"
)

const maxDIDDocBytes = 256 << 10

// didResolver fetches the document of a DID and checks that it is that
// DID's, with no cache and no look at the handle it claims.
type didResolver interface {
	resolveDID(ctx context.Context, did syntax.DID) (*indigoid.DIDDocument, error)
}

// didDocResolver resolves did:plc through the PLC directory and did:web
// from the host the DID names; other methods are refused.
type didDocResolver struct {
	base          *indigoid.BaseDirectory
	client        *http.Client
	allowInsecure bool // did:web on localhost, over http
}

// resolveDID fetches and checks a DID document.
func (d *didDocResolver) resolveDID(ctx context.Context, did syntax.DID) (*indigoid.DIDDocument, error) {
	switch did.Method() {
	case "plc":
		doc, err := d.base.ResolveDID(ctx, did)
		if err != nil {
			return nil, didError(ctx, did, "the PLC directory", err)
		}
		return doc, nil
	case "web":
		return d.resolveDIDWeb(ctx, did)
	default:
		return nil, newError(ErrUnsupportedDID, nil, "%s uses the DID method %q; only did:plc and did:web accounts are supported", did, did.Method())
	}
}

func didError(ctx context.Context, did syntax.DID, where string, err error) error {
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
func (d *didDocResolver) resolveDIDWeb(ctx context.Context, did syntax.DID) (*indigoid.DIDDocument, error) {
	docURL, err := didWebDocURL(did, d.allowInsecure)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return nil, newError(ErrUnsupportedDID, err, "%s is not a usable did:web", did)
	}
	req.Header.Set("Accept", "application/did+json, application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
			return nil, didError(ctx, did, docURL, fmt.Errorf("%w: %w", indigoid.ErrDIDNotFound, err))
		}
		return nil, didError(ctx, did, docURL, err)
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
		return nil, didError(ctx, did, docURL, err)
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

// didWebURL is the URL the Resolver fetches the document of a did:web from.
func (r *Resolver) didWebURL(did syntax.DID) (string, error) {
	return didWebDocURL(did, r.allowInsecure)
}

func didWebDocURL(did syntax.DID, allowInsecure bool) (string, error) {
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
		if !allowInsecure {
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

// validPort reports whether p is a port number from 1 to 65535, in
// digits only.
func validPort(p string) bool {
	if p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}
