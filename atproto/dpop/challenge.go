package dpop

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// maxPeekBytes bounds how much of an error body NonceChallenge reads: a
// use_dpop_nonce error is a few dozen bytes, and the reference client
// stops at 10 KiB too.
const maxPeekBytes = 16 << 10

// NonceChallenge reports whether resp asks the client to retry with a new
// DPoP nonce, and returns that nonce. It recognizes both shapes:
//
//   - an authorization server's 400 with a JSON body {"error":"use_dpop_nonce"}
//     (RFC 9449 §8);
//   - a resource server's 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"`
//     (RFC 9449 §9), or, failing that header, the same JSON body.
//
// Both must carry a DPoP-Nonce header. When the body is inspected it is read
// and put back, so the caller can still read it in full.
//
// Retry only when the returned nonce differs from the one the request
// carried, and only once.
func NonceChallenge(resp *http.Response) (nonce string, ok bool) {
	if resp == nil {
		return "", false
	}
	nonce = strings.TrimSpace(resp.Header.Get("DPoP-Nonce"))
	if nonce == "" {
		return "", false
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		if challengeError(resp.Header, "DPoP") == "use_dpop_nonce" {
			return nonce, true
		}
		return nonce, peekJSONError(resp) == "use_dpop_nonce"
	case http.StatusBadRequest:
		return nonce, peekJSONError(resp) == "use_dpop_nonce"
	}
	return "", false
}

// IsInvalidToken reports whether resp is a 401 whose WWW-Authenticate
// challenge (DPoP or Bearer) says error="invalid_token": the access token
// expired or was revoked, and a refresh may help.
func IsInvalidToken(resp *http.Response) bool {
	if resp == nil || resp.StatusCode != http.StatusUnauthorized {
		return false
	}
	return challengeError(resp.Header, "DPoP") == "invalid_token" ||
		challengeError(resp.Header, "Bearer") == "invalid_token"
}

// challengeError returns the error parameter of the first challenge with
// the given scheme.
func challengeError(h http.Header, scheme string) string {
	for _, c := range ParseWWWAuthenticate(h.Values("WWW-Authenticate")) {
		if strings.EqualFold(c.Scheme, scheme) {
			return c.Params["error"]
		}
	}
	return ""
}

// peekJSONError reads the start of the body, puts it back, and returns the
// "error" member if the body is a small JSON object.
func peekJSONError(resp *http.Response) string {
	if resp.Body == nil || resp.Body == http.NoBody {
		return ""
	}
	orig := resp.Body
	buf, err := io.ReadAll(io.LimitReader(orig, maxPeekBytes+1))
	resp.Body = &replayBody{Reader: io.MultiReader(bytes.NewReader(buf), orig), closer: orig}
	if err != nil || len(buf) > maxPeekBytes {
		return ""
	}
	var v struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(buf, &v) != nil {
		return ""
	}
	return v.Error
}

type replayBody struct {
	io.Reader
	closer io.Closer
}

func (b *replayBody) Close() error { return b.closer.Close() }

// Challenge is one challenge of a WWW-Authenticate header (RFC 9110 §11.6.1).
type Challenge struct {
	Scheme  string            // as sent; compare with strings.EqualFold
	Token68 string            // set for token68 challenges
	Params  map[string]string // parameter names lowercased, values unquoted
}

// ParseWWWAuthenticate parses the values of WWW-Authenticate headers. A
// value may hold several challenges, and a challenge several parameters,
// all separated by commas; quoted strings may contain commas and escaped
// quotes. Malformed parts are skipped, not fatal.
func ParseWWWAuthenticate(values []string) []Challenge {
	var out []Challenge
	for _, v := range values {
		p := &authParser{s: v}
		out = p.parse(out)
	}
	return out
}

type authParser struct {
	s string
	i int
}

func (p *authParser) eof() bool { return p.i >= len(p.s) }

func (p *authParser) peek() byte {
	if p.eof() {
		return 0
	}
	return p.s[p.i]
}

func (p *authParser) skipWS() int {
	n := 0
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
		n++
	}
	return n
}

func (p *authParser) skipWSAndCommas() {
	for !p.eof() && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == ',') {
		p.i++
	}
}

// skipItem moves past the current malformed list element.
func (p *authParser) skipItem() {
	for !p.eof() && p.s[p.i] != ',' {
		if p.s[p.i] == '"' {
			p.quoted()
			continue
		}
		p.i++
	}
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken68char(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~+/", c) >= 0
}

func (p *authParser) token() string {
	start := p.i
	for !p.eof() && isTchar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// quoted reads a quoted-string starting at '"' and returns it unescaped.
func (p *authParser) quoted() string {
	p.i++ // opening quote
	var b strings.Builder
	for !p.eof() {
		c := p.s[p.i]
		p.i++
		switch c {
		case '"':
			return b.String()
		case '\\':
			if !p.eof() {
				b.WriteByte(p.s[p.i])
				p.i++
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String() // unterminated: keep what there is
}

func (p *authParser) parse(out []Challenge) []Challenge {
	for {
		p.skipWSAndCommas()
		if p.eof() {
			return out
		}
		scheme := p.token()
		if scheme == "" {
			p.skipItem()
			continue
		}
		c := Challenge{Scheme: scheme, Params: map[string]string{}}
		ws := p.skipWS()
		if p.eof() || p.peek() == ',' {
			out = append(out, c)
			continue
		}
		if ws == 0 {
			// e.g. `DPoP"x"`: not a challenge we understand.
			p.skipItem()
			continue
		}
		if t, ok := p.token68(); ok {
			c.Token68 = t
			out = append(out, c)
			continue
		}
		p.params(&c)
		out = append(out, c)
	}
}

// token68 reads a token68 credential if that is what follows: a run of
// token68 characters and '=' padding, then the end of the element.
func (p *authParser) token68() (string, bool) {
	start := p.i
	j := p.i
	for j < len(p.s) && isToken68char(p.s[j]) {
		j++
	}
	if j == start {
		return "", false
	}
	for j < len(p.s) && p.s[j] == '=' {
		j++
	}
	k := j
	for k < len(p.s) && (p.s[k] == ' ' || p.s[k] == '\t') {
		k++
	}
	if k < len(p.s) && p.s[k] != ',' {
		return "", false
	}
	p.i = k
	return p.s[start:j], true
}

// params reads comma-separated auth-params until the next challenge starts.
func (p *authParser) params(c *Challenge) {
	for {
		p.skipWSAndCommas()
		if p.eof() {
			return
		}
		save := p.i
		name := p.token()
		if name == "" {
			p.skipItem()
			continue
		}
		p.skipWS()
		if p.peek() != '=' {
			// A bare token: the scheme of the next challenge.
			p.i = save
			return
		}
		p.i++ // '='
		p.skipWS()
		var val string
		if p.peek() == '"' {
			val = p.quoted()
		} else {
			val = p.token()
		}
		key := strings.ToLower(name)
		if _, dup := c.Params[key]; !dup {
			c.Params[key] = val
		}
		p.skipWS()
		if !p.eof() && p.peek() != ',' {
			p.skipItem()
		}
	}
}
