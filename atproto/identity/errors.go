package identity

import (
	"errors"
	"fmt"
)

// Error kinds, for errors.Is. Every error the Resolver returns for a failed
// resolution is an *Error whose Kind is one of these.
var (
	// ErrInvalidInput: the input is neither a valid handle nor a valid DID.
	ErrInvalidInput = errors.New("not a valid handle or DID")
	// ErrHandleNotFound: the handle does not resolve to a DID.
	ErrHandleNotFound = errors.New("handle does not resolve to an account")
	// ErrHandleMismatch: the handle resolves to a DID whose document does
	// not claim the handle back.
	ErrHandleMismatch = errors.New("handle is not confirmed by the account's DID document")
	// ErrDIDNotFound: the DID has no document.
	ErrDIDNotFound = errors.New("account not found")
	// ErrUnsupportedDID: a DID method other than plc and web, or a did:web
	// form the AT Protocol does not allow.
	ErrUnsupportedDID = errors.New("unsupported DID")
	// ErrNoPDS: the DID document names no usable PDS endpoint.
	ErrNoPDS = errors.New("account has no usable PDS")
	// ErrUnavailable: a directory, resolver or server could not be reached
	// or answered wrongly; trying later may help.
	ErrUnavailable = errors.New("identity service unavailable")
	// ErrConfig: the Resolver's Config is invalid.
	ErrConfig = errors.New("invalid identity configuration")
)

// Error is a failed resolution. Msg is a sentence fit to show the person who
// typed the handle; Error() adds the underlying cause, for logs.
type Error struct {
	Kind error  // one of the Err* values above
	Msg  string // e.g. "handle alice.example.com does not resolve to an account"
	Err  error  // the cause, may be nil
}

func (e *Error) Error() string {
	if e.Err == nil {
		return e.Msg
	}
	return e.Msg + ": " + e.Err.Error()
}

// Unwrap exposes both the kind and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

func newError(kind, cause error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// UserMessage returns the user-facing sentence of a resolution error, or a
// generic one for any other error.
func UserMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Msg
	}
	return "could not look up the account"
}
