package ingress

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"sync"

	"github.com/ioproxy/ioproxy/internal/httpx"
)

// forwarder passes a request to a backend and the backend's answer back:
// what httputil.ReverseProxy does for ioproxy, without its deep copy of
// every request and header map, which was most of the cost of a proxied
// request. It keeps what ReverseProxy gave: hop-by-hop headers removed
// (with the names Connection lists) before the hook sets its headers,
// "Te: trailers" kept, no Go User-Agent added, the query cleaned of what
// url.ParseQuery would drop, 1xx answers passed on, trailers, streaming
// answers flushed as they come, and a broken answer aborted rather than
// cut short silently.
//
// Requests that upgrade (websocket, the only upgrade the guards let
// through) are not for it: ReverseProxy serves them, as it owns the
// tunnel.
type forwarder struct {
	transport http.RoundTripper
	buffers   *httpx.BufferPool
	// decorate sets what the backend is told (identity, X-Forwarded-*)
	// on out, the outbound header, once the hop-by-hop headers are gone:
	// a client's "Connection: User-Did" cannot make it drop them.
	decorate func(in *http.Request, out http.Header, st *proxyState)
	// fail answers a request that the backend did not answer.
	fail func(w http.ResponseWriter, r *http.Request, st *proxyState, err error)
}

// errSwitchWithoutUpgrade is a backend's 101 to a request that asked for
// no upgrade (those go through ReverseProxy).
var errSwitchWithoutUpgrade = errors.New("the backend switched protocols, but the request asked for no upgrade")

// exchange is what one forwarded request needs beside the request
// itself, in one allocation: the 1xx relay, the trace that feeds it and
// the outbound URL.
type exchange struct {
	relay informational
	trace httptrace.ClientTrace
	url   url.URL
}

// forward sends in to st.target and copies the answer to w.
func (f *forwarder) forward(w http.ResponseWriter, in *http.Request, st *proxyState) {
	ex := &exchange{relay: informational{w: w, expectContinue: expectsContinue(in.Header)}}
	ex.trace.Got1xxResponse = ex.relay.got1xx
	out := outboundRequest(httptrace.WithClientTrace(in.Context(), &ex.trace), in, st.target, &ex.url)
	f.decorate(in, out.Header, st)
	res, err := f.transport.RoundTrip(out)
	ex.relay.done()
	if err != nil {
		f.fail(w, in, st, err)
		return
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusSwitchingProtocols {
		f.fail(w, in, st, errSwitchWithoutUpgrade)
		return
	}
	removeHopByHop(res.Header)
	dropOwnCookies(res.Header)
	h := w.Header()
	for k, vv := range res.Header {
		h[k] = vv
	}
	announced := len(res.Trailer)
	if announced > 0 {
		names := make([]string, 0, announced)
		for k := range res.Trailer {
			names = append(names, k)
		}
		h["Trailer"] = []string{strings.Join(names, ", ")}
	}
	w.WriteHeader(res.StatusCode)
	if err := f.copyBody(w, res); err != nil {
		if st.trace != nil {
			st.trace.aborted = true // the log must not say the status went out whole
		}
		abort(in)
		return
	}
	res.Body.Close() // now, to read the trailers
	copyTrailers(w, res, announced)
}

// outboundRequest is the request to send to target under ctx: in's
// method, body and Host, the target's scheme, host and path prefix (in
// u, which it fills), and in's header without the hop-by-hop headers.
// Header values are shared with in, which nothing writes to afterwards.
func outboundRequest(ctx context.Context, in *http.Request, target, u *url.URL) *http.Request {
	out := in.WithContext(ctx) // a shallow copy
	*u = *in.URL
	u.Scheme, u.Host = target.Scheme, target.Host
	u.Path, u.RawPath = joinURLPath(target, in.URL)
	q := cleanQueryParams(in.URL.RawQuery)
	switch {
	case target.RawQuery == "" || q == "":
		u.RawQuery = target.RawQuery + q
	default:
		u.RawQuery = target.RawQuery + "&" + q
	}
	out.URL = u
	out.RequestURI, out.Close, out.TLS, out.Form, out.PostForm, out.MultipartForm = "", false, nil, nil, nil, nil
	out.Proto, out.ProtoMajor, out.ProtoMinor = "HTTP/1.1", 1, 1
	out.TransferEncoding = nil
	// A client's request trailers are not passed on: they arrive after
	// decorate has checked the header, and a backend that merges them
	// into its headers would believe a trailer "User-Did" (found in
	// review; ReverseProxy passed their names only, by accident).
	out.Trailer = nil
	if in.ContentLength == 0 {
		out.Body = nil // lets the Transport retry on a stale connection
	} else if in.Body != nil {
		out.Body = io.NopCloser(in.Body) // the server closes in.Body
	}
	out.Header = outboundHeader(in.Header)
	return out
}

// noUserAgent stops the Transport from adding Go's User-Agent to a
// request whose client sent none. Never written to.
var noUserAgent = []string{""}

// teTrailers is the one Te value passed on. Never written to.
var teTrailers = []string{"trailers"}

// outboundHeader copies in without the hop-by-hop headers and the names
// its Connection header lists (decorate then takes off what no client
// may say, X-Forwarded-* among them, and writes its own).
func outboundHeader(in http.Header) http.Header {
	listed := in["Connection"]
	out := make(http.Header, len(in)+8)
	for k, vv := range in {
		if httpx.IsHopByHop(k) || connectionLists(listed, k) {
			continue
		}
		out[k] = vv
	}
	if tokenListed(in["Te"], "trailers") {
		out["Te"] = teTrailers
	}
	if _, ok := out["User-Agent"]; !ok {
		out["User-Agent"] = noUserAgent
	}
	return out
}

// removeHopByHop deletes, in place, the hop-by-hop headers of an answer.
func removeHopByHop(h http.Header) {
	listed := h["Connection"]
	for k := range h {
		if httpx.IsHopByHop(k) || connectionLists(listed, k) {
			delete(h, k)
		}
	}
}

// upgrades reports whether a request asks to switch protocols (the
// guards let only websocket through), as ReverseProxy reads it.
func upgrades(h http.Header) bool {
	return len(h["Upgrade"]) > 0 && tokenListed(h["Connection"], "upgrade")
}

// dropOwnCookies removes from an answer the Set-Cookie lines that name
// ioproxy's own cookies: a backend (compromised, or one that reflects
// headers) must not set a browser's session or sign-in cookie, which
// would sign the browser in as someone else.
func dropOwnCookies(h http.Header) {
	lines, ok := h["Set-Cookie"]
	if !ok {
		return
	}
	kept := lines[:0:0]
	for _, line := range lines {
		name, value, _ := strings.Cut(line, "=")
		if strings.TrimSpace(name) == "" {
			// "=ioproxy-session=x" has no name, and browsers send it back
			// as its value alone: "ioproxy-session=x".
			name, _, _ = strings.Cut(value, "=")
		}
		if ownCookie(strings.TrimSpace(name)) {
			continue
		}
		kept = append(kept, line)
	}
	if len(kept) == len(lines) {
		return
	}
	if len(kept) == 0 {
		delete(h, "Set-Cookie")
		return
	}
	h["Set-Cookie"] = kept
}

// connectionLists reports whether the Connection header values name k.
func connectionLists(connection []string, k string) bool {
	return len(connection) > 0 && tokenListed(connection, k)
}

// tokenListed reports whether a comma-separated header names token, in
// any case.
func tokenListed(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

// copyBody copies the answer's body to w, flushing after each write when
// the answer streams (server-sent events, or a body of unknown length),
// so that what the backend sends reaches the client as it comes.
func (f *forwarder) copyBody(w http.ResponseWriter, res *http.Response) error {
	var rc *http.ResponseController
	if res.ContentLength == -1 || isEventStream(res.Header.Get("Content-Type")) {
		rc = http.NewResponseController(w)
	}
	bp := f.buffers.GetBuffer()
	defer f.buffers.PutBuffer(bp)
	buf := *bp
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if rc != nil {
				if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

func isEventStream(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

// copyTrailers sets the answer's trailers on w once its body is sent:
// the announced ones by name, any others with http.TrailerPrefix.
func copyTrailers(w http.ResponseWriter, res *http.Response, announced int) {
	if len(res.Trailer) == 0 {
		return
	}
	// A flush forces a chunked answer, which is what carries trailers.
	_ = http.NewResponseController(w).Flush()
	h := w.Header()
	for k, vv := range res.Trailer {
		if len(res.Trailer) != announced {
			k = http.TrailerPrefix + k
		}
		for _, v := range vv {
			h.Add(k, v)
		}
	}
}

// abort ends an answer that could not be sent whole, so that the client
// sees it broken rather than complete but short: the server recovers
// http.ErrAbortHandler and drops the connection. Outside a server (tests
// calling the handler directly) there is nothing to abort.
func abort(r *http.Request) {
	if r.Context().Value(http.ServerContextKey) != nil {
		panic(http.ErrAbortHandler)
	}
}

// informational passes the backend's 1xx answers (103 Early Hints) to the
// client until the final answer arrives, at most maxInformational of them.
type informational struct {
	w http.ResponseWriter
	// expectContinue: the client sent "Expect: 100-continue", so the
	// server may write its own 100 Continue on another goroutine while
	// the body is read; a 1xx relayed then would interleave with it (a
	// net/http race, golang/go#80949). Those requests get no 1xx relayed.
	expectContinue bool

	mu       sync.Mutex
	finished bool
	relayed  int
}

// maxInformational bounds the 1xx answers of one request: once a trace
// takes them, the Transport reads 1xx after 1xx without its header
// limit, so a backend could send them for ever.
const maxInformational = 10

var errTooManyInformational = errors.New("the backend sent more than 10 informational (1xx) answers")

// expectsContinue reports whether a request carries Expect: 100-continue.
func expectsContinue(h http.Header) bool { return tokenListed(h["Expect"], "100-continue") }

func (i *informational) got1xx(code int, header textproto.MIMEHeader) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.finished || i.expectContinue || code == http.StatusContinue {
		return nil // the server answers 100 Continue itself
	}
	if i.relayed++; i.relayed > maxInformational {
		return errTooManyInformational
	}
	h := i.w.Header()
	for k, vv := range header {
		h[k] = vv
	}
	i.w.WriteHeader(code)
	clear(h) // a 1xx's headers are not the final answer's
	return nil
}

func (i *informational) done() {
	i.mu.Lock()
	i.finished = true
	i.mu.Unlock()
}

// joinURLPath joins the target's path and the request's, as ReverseProxy
// does: one slash between them, the escaped forms kept.
func joinURLPath(a, b *url.URL) (path, rawpath string) {
	if a.RawPath == "" && b.RawPath == "" {
		return singleJoiningSlash(a.Path, b.Path), ""
	}
	apath, bpath := a.EscapedPath(), b.EscapedPath()
	aslash, bslash := strings.HasSuffix(apath, "/"), strings.HasPrefix(bpath, "/")
	switch {
	case aslash && bslash:
		return a.Path + b.Path[1:], apath + bpath[1:]
	case !aslash && !bslash:
		return a.Path + "/" + b.Path, apath + "/" + bpath
	}
	return a.Path + b.Path, apath + bpath
}

func singleJoiningSlash(a, b string) string {
	aslash, bslash := strings.HasSuffix(a, "/"), strings.HasPrefix(b, "/")
	switch {
	case aslash && bslash:
		return a + b[1:]
	case !aslash && !bslash:
		return a + "/" + b
	}
	return a + b
}

// cleanQueryParams re-encodes a query that url.ParseQuery would read
// differently from a lenient backend (";" separators, bad escapes), as
// ReverseProxy does: the backend and ioproxy then agree on it.
func cleanQueryParams(s string) string {
	reencode := func(s string) string {
		v, _ := url.ParseQuery(s)
		return v.Encode()
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
