// Package xrpc is a small client for AT Protocol XRPC calls over plain HTTP and JSON.
//
// Client is the one interface that Lexicon-generated call functions
// (cmd/statusphere/internal/lex/...) are written against. HTTPClient calls a host directly;
// ProxyClient calls ioproxy's calling port on behalf of a signed-in user by adding the
// Proxy-Session and User-Did headers.
package xrpc

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// Methods of XRPC calls: a Lexicon query is an HTTP GET, a procedure an HTTP POST.
const (
	Query     = http.MethodGet
	Procedure = http.MethodPost
)

// Client makes one XRPC call.
//
// method is Query or Procedure; nsid names the Lexicon method; params become the query string;
// input, when not nil, is sent as the JSON body; output, when not nil, receives the decoded JSON
// response. A response with a non-2xx status is returned as an *Error.
type Client interface {
	Do(ctx context.Context, method, nsid string, params url.Values, input, output any) error
}

// Error is an XRPC error response: the HTTP status and the {"error","message"} body.
type Error struct {
	// NSID is the method that was called.
	NSID string
	// StatusCode is the HTTP status of the response.
	StatusCode int
	// Name is the "error" field, e.g. "InvalidRequest" or a Lexicon-declared error such as
	// "RecordNotFound". When the body was not an XRPC error, it is derived from the status.
	Name string `json:"error"`
	// Message is the "message" field, or the start of a body that was not an XRPC error.
	Message string `json:"message"`
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("xrpc %s: %d %s", e.NSID, e.StatusCode, e.Name)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// IsError reports whether err is (or wraps) an XRPC *Error whose Name is name.
func IsError(err error, name string) bool {
	var xe *Error
	return errors.As(err, &xe) && xe.Name == name
}

// StatusCode returns the HTTP status of the XRPC *Error in err, or 0 when err is not one (for
// example when the host could not be reached).
func StatusCode(err error) int {
	var xe *Error
	if errors.As(err, &xe) {
		return xe.StatusCode
	}
	return 0
}
