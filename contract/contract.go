// Package contract is ioproxy's header contract with the apps behind it:
// the headers through which ioproxy tells a backend who is signed in, and
// through which the backend names that user to a calling port. Backends
// trust these headers, so ioproxy strips every spelling of them from what
// clients send before it sets its own.
//
// An app written in Go may import this package; apps in other languages
// read the same names from the README's contract table.
package contract

import (
	"net/http"
	"strings"

	"github.com/ioproxy/ioproxy/internal/textutil"
)

// The headers of the contract.
const (
	// UserDID is the signed-in account's DID, on every request of a
	// signed-in browser; the backend passes it on to a calling port
	// (alone, for a public call to that account's PDS).
	UserDID = "User-Did"
	// UserHandle is the account's handle, verified both ways
	// ("handle.invalid" when the check fails or is too old).
	UserHandle = "User-Handle"
	// UserScope is the scope the account's authorization server granted
	// the session, space-separated (the permission sets of include:
	// expanded by the server): an app checks it for what its features
	// need, as an operator may add a permission to the configuration
	// after the user signed in.
	UserScope = "User-Scope"
	// ProxySession is the opaque key a backend passes to a calling port
	// to make calls as the user (never the session cookie).
	ProxySession = "Proxy-Session"
	// APIKeyUser names the apikey_auth entry a machine client
	// authenticated as.
	APIKeyUser = "Apikey-User"
	// ProxyProvider lists the OAuth providers other than AT Protocol
	// (a host's oauth "<name>" blocks) the browser is signed in with,
	// comma-separated in the host's order ("google, github").
	ProxyProvider = "Proxy-Provider"
	// UserEmail is the verified email of the account of the first
	// provider in Proxy-Provider (one the host's rules admitted, when
	// they name any); absent when that provider gave none verified.
	UserEmail = "User-Email"
	// UserSubject is that same account's id at that provider, after its
	// name: "google:1234567890".
	UserSubject = "User-Subject"
)

// identityHeaders are the contract's headers as fold spells them.
var identityHeaders = map[string]bool{
	strings.ToLower(UserDID): true, strings.ToLower(UserHandle): true, strings.ToLower(UserScope): true,
	strings.ToLower(ProxySession): true, strings.ToLower(APIKeyUser): true,
	strings.ToLower(ProxyProvider): true, strings.ToLower(UserEmail): true, strings.ToLower(UserSubject): true,
}

// shortest and longest are the lengths of the shortest and longest of
// the contract's headers, so that most names cost no folding.
const (
	shortest = min(len(UserDID), len(UserHandle), len(UserScope), len(ProxySession), len(APIKeyUser), len(ProxyProvider), len(UserEmail), len(UserSubject))
	longest  = max(len(UserDID), len(UserHandle), len(UserScope), len(ProxySession), len(APIKeyUser), len(ProxyProvider), len(UserEmail), len(UserSubject))
)

// IsIdentity reports whether a header name is, or could be read by some
// backend as, one of the contract's headers: any case, and with "_" for
// "-" (some servers fold the two, a real advisory of a popular proxy).
func IsIdentity(name string) bool {
	if len(name) < shortest || len(name) > longest {
		return false
	}
	var b [longest]byte
	return identityHeaders[string(textutil.FoldHeader(b[:0], name))]
}

// StripProxySession removes every spelling of Proxy-Session alone: what
// a calling port takes off a call to a service of the app's own, which
// may read the rest of the contract but never holds ioproxy's key.
func StripProxySession(h http.Header) {
	for name := range h {
		var b [len(ProxySession)]byte
		if len(name) == len(ProxySession) && string(textutil.FoldHeader(b[:0], name)) == foldedProxySession {
			delete(h, name)
		}
	}
}

// foldedProxySession is Proxy-Session as fold spells it.
var foldedProxySession = strings.ToLower(ProxySession)

// StripIdentity removes every spelling of the contract's headers.
func StripIdentity(h http.Header) {
	for name := range h {
		if IsIdentity(name) {
			delete(h, name)
		}
	}
}
