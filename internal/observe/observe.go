// Package observe is what ingress, the calling ports and sign-in report
// about their work, and the Recorder interface they report to. The admin
// package implements it (access logs, metrics, the traffic view); the
// reporting packages need to know nothing of that.
package observe

import "time"

// The kinds of Request.
const (
	KindIngress = "ingress" // a request to one of the ingress hosts
	KindCall    = "call"    // a request through a calling port
)

// The sign-in stages of Recorder.SignIn.
const (
	SignInStarted   = "started"
	SignInCompleted = "completed"
	SignInFailed    = "failed"
	// SignInStoreFull: a sign-in refused because the session store holds
	// as many sessions, or sign-ins in progress, as it may.
	SignInStoreFull = "store_full"
)

// The kinds of server of Recorder.NonceRetry. Servers are chosen by
// users, so a metric is labelled by kind, never by server.
const (
	NonceServerPDS  = "pds"
	NonceServerAuth = "auth_server"
)

// Request is one finished ingress request or call.
type Request struct {
	Time time.Time
	// Kind is KindIngress or KindCall.
	Kind string
	// Source is the host's name for ingress, or the call block's label
	// for calls. It becomes a metric label: pass configured names only.
	Source string
	// Operation is the configured operation (or sign-in route) the
	// request matched, empty when none. It becomes a metric label: never
	// pass a value taken from the request.
	Operation string
	Method    string
	// Path is the request path, without its query: query strings may
	// carry codes and tokens.
	Path     string
	Status   int
	Duration time.Duration
	// Upstream is where the request went: a backend address, a PDS URL,
	// or "ioproxy" for what ioproxy answered itself.
	Upstream string
	// DID is the signed-in account, empty when there is none.
	DID string
	// Remote is the client address: logged, not shown in the traffic view.
	Remote string
	// Aborted: the answer broke off after its status was sent (the
	// backend failed half way), so Status is not what the client got.
	Aborted bool
}

// Recorder receives the reports. Its methods must be safe for concurrent
// use and must not block: they run on the request path.
type Recorder interface {
	// Request reports a finished request or call.
	Request(Request)
	// UpstreamDuration reports how long an upstream took to answer with
	// headers; kind is KindIngress (source: the host) or KindCall
	// (source: the call block).
	UpstreamDuration(kind, source string, d time.Duration)
	// NonceRetry reports a request sent again for a new DPoP nonce, by
	// kind of server (NonceServerPDS, NonceServerAuth).
	NonceRetry(server string)
	// TokenRefresh reports an OAuth token refresh and whether it worked.
	TokenRefresh(ok bool)
	// SignIn reports a sign-in reaching a stage (SignInStarted, …).
	SignIn(stage string)
}

// Discard is a Recorder that records nothing.
type Discard struct{}

// Request implements Recorder.
func (Discard) Request(Request) {}

// UpstreamDuration implements Recorder.
func (Discard) UpstreamDuration(string, string, time.Duration) {}

// NonceRetry implements Recorder.
func (Discard) NonceRetry(string) {}

// TokenRefresh implements Recorder.
func (Discard) TokenRefresh(bool) {}

// SignIn implements Recorder.
func (Discard) SignIn(string) {}

var _ Recorder = Discard{}
