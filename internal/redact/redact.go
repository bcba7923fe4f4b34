// Package redact keeps query strings and credentials out of log lines.
//
// Errors from HTTP clients carry full URLs (a *url.Error prints
// `Get "https://pds/xrpc/…?repo=…&cursor=…": dial tcp …`), and OAuth
// failures can echo Authorization headers or form bodies. Fixing every call
// site would miss the next one, so the process logger scrubs every record
// through [NewHandler]; [String] is the same scrubbing for texts that leave
// the process another way (error pages, JSON errors).
//
// The rules, applied in one left-to-right pass (see [String]):
//
//   - URLs: any "scheme://" (http, https, ws, wss and every other scheme):
//     the userinfo becomes "[redacted]", and everything from the first "?"
//     or "#" after the host to the end of the URL becomes "?…" (or "#…"
//     when the URL has a fragment but no query); a lone "?" at the end
//     stays. A URL opened by `"`, `'`, "`" or "<" ends at the matching
//     closing character or a control character (an escaped `\"` does not
//     close a `"`; a URL opened by `\"` ends at the next `\"`), so a query
//     holding spaces still goes. Any other URL ends at whitespace, a
//     control character, `"`, "<", ">" or "`", and trailing `.,;:!)]}'`
//     are left out of it, so "https://h/p?q=1: dial" keeps its colon.
//     "%3F" is not a "?". A bare path with a query ("/p?x=1") is not a URL
//     and is left alone (its secret parameters still go, as below). The
//     host and path are scanned for the other rules.
//   - JWTs: "eyJ" at the start of a base64url run of at least 4 characters
//     (not inside a longer run), followed by one or more ".segment"s of
//     which at least one is not empty (two-part, JWS and JWE forms),
//     becomes "[redacted-jwt]"; a trailing "." stays.
//   - Authorization schemes: the credential (a token68, padding included,
//     or an unencoded "user:password") after "DPoP ", "Bearer " or
//     "Basic " (any case, not inside a longer word) becomes "[redacted]";
//     the scheme stays. After "Authorization" (as in "Authorization:
//     Bearer x", "authorization=Bearer x", "map[Authorization:[Bearer
//     x]]") it is always redacted. Elsewhere two forms are prose, not
//     credentials, and stay: a plain word ("DPoP proof", "Bearer token",
//     "DPoP JWK": letters only, lower case after the first, or up to 5
//     upper-case letters) and an auth-param (`DPoP error="use_dpop_nonce"`,
//     `Basic realm="x"`, realm=x).
//   - Secret names: access_token, refresh_token, id_token, token, code,
//     code_verifier, pkce_verifier, client_assertion, client_secret,
//     assertion, password, passwd, secret, state, request_uri, dpop,
//     dpop_key, proxy_key, proxy_session, session_id, authorization,
//     cookie, set_cookie, api_key, and any name ending in _token, _secret
//     or _password, or in Token, Secret or Password after a letter or
//     digit (csrfToken). Case, "_" and "-" do not matter, so that Go
//     fields, JSON members, form parameters and headers match alike
//     (AccessToken, accessToken, DPoPKey, Proxy-Session, Set-Cookie); a
//     hyphenated name is also secret when its part after a hyphen is
//     (X-Api-Key, x-access_token).
//   - Secret parameters: the value after a secret name becomes
//     "[redacted]" in key=value text, in JSON ("key":"value", also escaped
//     as \"key\":\"value\"), in Go's printing of struct fields and map
//     entries (Key:value, as %+v and %v print them: "{RefreshToken:abc}",
//     "map[Cookie:[a=b]]"), and in a header line after Cookie, Set-Cookie,
//     Proxy-Session and Authorization ("Cookie: a=b; c=d"; after other
//     names, "Key: value" with a space is prose: "state: expired"). The
//     name must not continue a longer word (auth_code is not code), though
//     it may follow a percent-escape ("%26code=…", an encoded "&"). An
//     unquoted value ends at whitespace, a control character, one of
//     &;,"'`<>\)]} or the end, except that a URL as the value goes to the
//     URL's end, and a cookie header's value goes to the end of the line
//     (or a quote, a backslash, "]" or "}"). A quoted value (key="…",
//     key=\"…\", Key:"…") is redacted inside its quotes, a bracketed one
//     (Key:[…], Key:{…}, to the bracket that closes it and is followed by
//     a delimiter) inside its brackets, and a JSON array or object after a
//     secret name ("Cookie":["…"], "dpop_key":{…}) becomes ["[redacted]"].
//     An authorization scheme at the start of a value stays. A code of one
//     to three digits (code=404) is a status, not an OAuth code, and stays.
//
// Everything else (DIDs, handles, host names, paths without a query,
// durations, status codes, addresses) passes through unchanged, and a string
// with nothing to scrub is returned as is, without allocating.
package redact

import (
	"strings"

	"github.com/ioproxy/ioproxy/contract"
)

const (
	// mark replaces a redacted credential or parameter value. It holds no
	// character that the rules treat as part of a value, so scrubbing is
	// idempotent.
	mark = "[redacted]"
	// jwtMark replaces a whole JWT.
	jwtMark = "[redacted-jwt]"
	// queryCut and fragmentCut replace a URL's query and fragment.
	queryCut    = "?…"
	fragmentCut = "#…"

	// maxKeyLen bounds the look-back for a parameter name, which keeps the
	// scan linear; a longer name is not taken for a secret one.
	maxKeyLen = 40
	// maxSchemeLookback bounds the look-back from "://" for the character
	// that opened a quoted URL.
	maxSchemeLookback = 32
)

// Byte classes, immutable lookup tables.
var (
	// trigger marks the bytes at which a rule may start; every other byte
	// is skipped with one table lookup.
	trigger = makeTable(":= J")
	// keyChar is a character of a parameter name.
	keyChar = makeTable("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
	// schemeChar is a character of a URL scheme.
	schemeChar = makeTable("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
	// b64url is a character of a base64url JWT segment.
	b64url = makeTable("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
	// token68 is a character of an RFC 7235 token68 credential (without
	// the trailing "=" padding).
	token68 = makeTable("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/")
	// urlEnd ends a URL that was not opened by a quote: whitespace, control
	// characters and the characters that cannot appear in a URL and
	// usually delimit one.
	urlEnd = makeTable(" \"<>`\x7f" + controls())
	// authorityEnd ends the host part of a URL.
	authorityEnd = makeTable("/?# \"<>`\x7f" + controls())
	// urlTrail are left out at the end of an unquoted URL: sentence
	// punctuation and closing brackets around it.
	urlTrail = makeTable(".,;:!)]}'")
	// valueEnd ends an unquoted key=value value.
	valueEnd = makeTable("&;,\"'`<>\\)]} \x7f" + controls())
	// cookieEnd ends a cookie header's value, which holds spaces and ";"
	// ("a=1; b=2"): the end of the line, a quote or backslash (neither is
	// in a cookie), or the bracket that closes a map entry or a struct.
	cookieEnd = makeTable("\"\\]}\x7f" + controls())
	// closeAfter may follow the bracket that closes a value %v printed
	// ("map[Cookie:[a] Accept:[b]]", "{Key:[1 2]}"); a bracket followed by
	// anything else is inside the value.
	closeAfter = makeTable(" ]})>,;\"'`\\\x7f" + controls())
)

func controls() string {
	var b [32]byte
	for i := range b {
		b[i] = byte(i)
	}
	return string(b[:])
}

func makeTable(chars string) [256]bool {
	var t [256]bool
	for i := 0; i < len(chars); i++ {
		t[chars[i]] = true
	}
	return t
}

// String returns s with URL queries and fragments, URL userinfo, JWTs,
// Authorization credentials and secret parameter values replaced (the rules
// are in the package documentation). It returns s itself, without
// allocating, when there is nothing to replace, and String(String(s)) ==
// String(s).
func String(s string) string {
	out, _ := scrub(s)
	return out
}

// scrub is String that also reports whether anything was replaced, so the
// handler can keep records it does not need to rebuild.
func scrub(s string) (string, bool) {
	if !mayNeedScrub(s) {
		return s, false
	}
	return scrubAll(s)
}

// scrubAll is scrub without the quick reject.
func scrubAll(s string) (string, bool) {
	sc := scrubber{s: s}
	return sc.run()
}

// scrubRemoved is scrub that also returns the texts it replaced (nil when
// it replaced none).
func scrubRemoved(s string) (string, []string) {
	if !mayNeedScrub(s) {
		return s, nil
	}
	sc := scrubber{s: s, collect: true}
	out, _ := sc.run()
	return out, sc.removed
}

// run scans all of s.
func (sc *scrubber) run() (string, bool) {
	sc.region(0, len(sc.s), true)
	if !sc.edited {
		return sc.s, false
	}
	sc.b.WriteString(sc.s[sc.last:])
	return sc.b.String(), true
}

// mayNeedScrub is a quick reject for the common case, clean text: every
// rule starts at one of these patterns. Nearly every byte of clean text
// costs one table lookup.
func mayNeedScrub(s string) bool {
	for i := 0; i < len(s); i++ {
		if !trigger[s[i]] {
			continue
		}
		switch s[i] {
		case '=':
			return true
		case ':':
			if i+2 < len(s) && s[i+1] == '/' && s[i+2] == '/' || i > 0 && s[i-1] == '"' {
				return true
			}
			if nameBefore(s, i, 0) {
				if _, ok := keyBefore(s, i, 0); ok {
					return true
				}
			}
		case 'J':
			if i >= 2 && s[i-1] == 'y' && s[i-2] == 'e' {
				return true
			}
		case ' ':
			// The last letters of dpop, basic, bearer, in any case.
			if i >= 4 {
				w := uint32(s[i-4]) | uint32(s[i-3])<<8 | uint32(s[i-2])<<16 | uint32(s[i-1])<<24
				w |= 0x20202020
				if w == 'd'|'p'<<8|'o'<<16|'p'<<24 || w == 'a'|'s'<<8|'i'<<16|'c'<<24 || w == 'a'|'r'<<8|'e'<<16|'r'<<24 {
					return true
				}
			}
		}
	}
	return false
}

// scrubber rewrites s lazily: nothing is copied until the first
// replacement, and s[last:] is what has not been copied yet.
type scrubber struct {
	s      string
	b      strings.Builder
	last   int
	edited bool
	// collect asks for the replaced texts in removed.
	collect bool
	removed []string
	// cutEnd is where the last query or fragment cut ended.
	cutEnd int
}

// replace writes s[last:from] and then with in place of s[from:to].
func (sc *scrubber) replace(from, to int, with string) {
	if !sc.edited {
		sc.edited = true
		sc.b.Grow(len(sc.s))
	}
	sc.b.WriteString(sc.s[sc.last:from])
	sc.b.WriteString(with)
	sc.last = to
	if sc.collect {
		sc.removed = append(sc.removed, sc.s[from:to])
	}
}

// region scans s[from:to]. URLs are looked for only outside URLs (urls),
// so a URL's path, scanned for JWTs and parameters, cannot start another.
// Every rule returns where it stopped; a rule never reaches past to.
func (sc *scrubber) region(from, to int, urls bool) {
	s := sc.s
	for i := from; i < to; i++ {
		c := s[i]
		if !trigger[c] {
			continue
		}
		// Look-backs stop at what was already replaced or at the region.
		lo := max(from, sc.last)
		end := -1
		switch c {
		case ':':
			if i+2 < to && s[i+1] == '/' && s[i+2] == '/' {
				if urls {
					end = sc.url(i, lo, to)
				}
			} else if i > lo && s[i-1] == '"' {
				end = sc.jsonParam(i, lo, to)
			} else if nameBefore(s, i, from) {
				end = sc.colonParam(i, from, to)
			}
		case '=':
			if nameBefore(s, i, lo) {
				end = sc.formParam(i, lo, to)
			}
		case ' ':
			if i > from && s[i-1] == ':' {
				end = sc.headerLine(i, from, to)
			}
			if end < 0 {
				end = sc.authScheme(i, lo, to)
			}
		case 'J':
			end = sc.jwt(i, lo, to)
		}
		if end > i {
			i = end - 1
		}
	}
}

// span is the extent of a URL in s.
type span struct {
	// authStart and authEnd bound the authority; pathEnd is where the
	// query or fragment starts (end when there is none); end is the end
	// of the URL.
	authStart, authEnd, pathEnd, end int
	// triggered reports a byte in the authority or path at which another
	// rule may start; most hosts and paths hold none, and are not scanned
	// again.
	triggered bool
}

// urlSpan finds the extent of the URL whose "://" is at i.
func urlSpan(s string, i, lo, to int) span {
	// The scheme is not needed to know this is a URL (another rule may
	// have replaced it), only to find the character that opened it.
	start := i
	for start > lo && i-start < maxSchemeLookback && schemeChar[s[start-1]] {
		start--
	}
	// Only what was not replaced tells how the URL was opened: after a
	// replacement, the replacement's last character stands before it on
	// the next pass.
	var q quote
	if start > lo {
		switch s[start-1] {
		case '"':
			q.close = '"'
			q.escaped = start-1 > lo && s[start-2] == '\\'
		case '\'', '`':
			q.close = s[start-1]
		case '<':
			q.close = '>'
		}
	}

	sp := span{authStart: i + 3, pathEnd: -1}
	k := sp.authStart
	for k < to && !authorityEnd[s[k]] && !q.ends(s, k, to) {
		sp.triggered = sp.triggered || trigger[s[k]]
		k++
	}
	sp.authEnd = k
	sp.end = k
	if k < to && (s[k] == '/' || s[k] == '?' || s[k] == '#') {
		for k < to && (q.close == 0 && !urlEnd[s[k]] || q.close != 0 && !q.ends(s, k, to)) {
			if sp.pathEnd < 0 {
				if s[k] == '?' || s[k] == '#' {
					sp.pathEnd = k
				}
				sp.triggered = sp.triggered || trigger[s[k]]
			}
			k++
		}
		sp.end = k
		if q.close == 0 {
			for sp.end > sp.authEnd && urlTrail[s[sp.end-1]] {
				sp.end--
			}
		}
	}
	if sp.pathEnd < 0 || sp.pathEnd > sp.end {
		sp.pathEnd = sp.end
	}
	return sp
}

// url handles the URL whose "://" is at i and returns where it ends.
func (sc *scrubber) url(i, lo, to int) int {
	s := sc.s
	sp := urlSpan(s, i, lo, to)
	authStart, authEnd, pathEnd, end := sp.authStart, sp.authEnd, sp.pathEnd, sp.end

	hostStart := authStart
	if at := strings.LastIndexByte(s[authStart:authEnd], '@'); at > 0 {
		hostStart = authStart + at
		if s[authStart:hostStart] != mark {
			sc.replace(authStart, hostStart, mark)
		}
	}
	if sp.triggered {
		// Separately, so that nothing redacted in the host takes the "/"
		// that ends it.
		sc.region(hostStart, authEnd, false)
		sc.region(authEnd, pathEnd, false)
	}
	if pathEnd+1 < end {
		cut := queryCut
		if s[pathEnd] == '#' {
			cut = fragmentCut
		}
		if s[pathEnd:end] != cut {
			sc.replace(pathEnd, end, cut)
			sc.cutEnd = end
		}
	}
	return end
}

// quote is how a URL was opened: close is its closing character (0 for a
// URL not in quotes), escaped that it was opened by \".
type quote struct {
	close   byte
	escaped bool
}

// ends reports whether a quoted URL ends at k.
func (q quote) ends(s string, k, to int) bool {
	c := s[k]
	switch {
	case q.close == 0:
		return false // the tables decide
	case c < 0x20 || c == 0x7f:
		return true
	case q.escaped:
		return c == '\\' && k+1 < to && s[k+1] == '"'
	}
	return c == q.close && !(c == '"' && s[k-1] == '\\')
}

// jwt handles a JWT that may start at i-2 ("eyJ" with the "J" at i).
func (sc *scrubber) jwt(i, lo, to int) int {
	s := sc.s
	start := i - 2
	if start < lo || s[start] != 'e' || s[start+1] != 'y' || (start > lo && b64url[s[start-1]]) {
		return -1
	}
	run := func(k int) int {
		for k < to && b64url[s[k]] {
			k++
		}
		return k
	}
	first := run(i + 1)
	if first-start < 4 {
		return first
	}
	// A JWS has three segments, a JWE five (the second may be empty); an
	// empty last segment is a full stop after the token, and stays.
	end, k := first, first
	for k < to && s[k] == '.' {
		next := run(k + 1)
		if next > k+1 {
			end = next
		}
		k = next
	}
	if end == first {
		return first
	}
	sc.replace(start, end, jwtMark)
	return end
}

// authScheme handles a credential after an authorization scheme that may
// end just before the space at i.
func (sc *scrubber) authScheme(i, lo, to int) int {
	s := sc.s
	start := i
	for start > lo && i-start < len("bearer") && isLetter(s[start-1]) {
		start--
	}
	if start > lo && (keyChar[s[start-1]] || s[start-1] == '-') {
		return -1
	}
	if !isAuthScheme(s[start:i]) {
		return -1
	}
	t := i + 1
	for t < to && s[t] == ' ' {
		t++
	}
	runEnd := t
	for runEnd < to && token68[s[runEnd]] {
		runEnd++
	}
	if runEnd == t {
		return -1
	}
	end := runEnd
	for end < to && s[end] == '=' {
		end++
	}
	// "Basic alice:hunter2": unencoded user and password, one credential
	// that goes on to the end of the password (a later ":" is another
	// rule's: "x:https://…", "x:Cookie:[…]"); "Bearer https://h/p?q" is a
	// URL, whose query the URL rule cuts.
	if end == runEnd && end+1 < to && s[end] == ':' && token68[s[end+1]] &&
		!(end+2 < to && s[end+1] == '/' && s[end+2] == '/') {
		end++
	} else if !afterAuthorization(s, start, lo) {
		name := s[t:runEnd]
		// An auth-param (error="use_dpop_nonce", realm=x), also once its
		// value has been redacted (realm=[redacted-jwt]).
		if end-runEnd == 1 && end < to && (s[end] == '"' && isLowerName(name) || (token68[s[end]] || s[end] == '[') && isName(name)) {
			return -1
		}
		if end == runEnd && isProseWord(strings.TrimRight(name, ".")) {
			return -1
		}
	}
	// Not token68 if more follows the padding, but still not prose:
	// redact all of it rather than leave a tail.
	for end < to && (token68[s[end]] || s[end] == '=') {
		end++
	}
	sc.replace(t, end, mark)
	return end
}

// isAuthScheme reports whether w names an authorization scheme whose
// credential follows it.
func isAuthScheme(w string) bool {
	return strings.EqualFold(w, "dpop") || strings.EqualFold(w, "bearer") || strings.EqualFold(w, "basic")
}

// afterAuthorization reports whether the scheme at start follows an
// Authorization header name, where whatever follows is a credential.
func afterAuthorization(s string, start, lo int) bool {
	const name = "authorization"
	k := start
	for n := 0; n < 4 && k > lo && strings.IndexByte(" \"':=[\\", s[k-1]) >= 0; n++ {
		k--
	}
	return k-len(name) >= lo && strings.EqualFold(s[k-len(name):k], name)
}

// formParam handles key=value with the "=" at i.
func (sc *scrubber) formParam(i, lo, to int) int {
	s := sc.s
	key, ok := keyBefore(s, i, lo)
	if !ok {
		return -1
	}
	v := i + 1
	if v < to && (s[v] == '"' || s[v] == '\\' && v+1 < to && s[v+1] == '"') {
		return sc.quotedValue(v, to)
	}
	return sc.plainValue(key, v, to, &valueEnd)
}

// colonParam handles Key:value with the ":" at i, as Go prints fields
// ({AccessToken:abc}, %+v) and map entries (map[Cookie:[a=b]], %v). The
// name is read back past the last replacement, as another rule may have
// taken it for part of a credential ("Bearer x+Cookie:[…]") and nothing
// before i is replaced here, but not into a URL's cut query: the URL left
// out the ":" as trailing punctuation, and would take it, and the value
// redacted here, on the next pass.
func (sc *scrubber) colonParam(i, from, to int) int {
	s := sc.s
	if i+1 < to && s[i+1] == ' ' {
		return -1 // a header line, see headerLine
	}
	key, ok := keyBefore(s, i, max(from, sc.cutEnd))
	if !ok {
		return -1
	}
	return sc.colonValue(key, i+1, to)
}

// headerLine handles "Name: value" with the space at i, after a header
// name whose values are all credentials (Cookie: a=b; c=d). It starts at
// the space rather than at the ":" because the name may have ended a
// region or a value of its own ("https://Proxy-Session: x", "code=Cookie:
// x"); the name is read back in s as it is, as nothing before i is
// replaced.
func (sc *scrubber) headerLine(i, from, to int) int {
	s := sc.s
	// Every credential header name ends in "e" or "n"; most prose before
	// ": " does not ("connect: connection refused").
	if !nameBefore(s, i-1, from) {
		return -1
	}
	if last := s[i-2] | 0x20; last != 'e' && last != 'n' {
		return -1
	}
	key, ok := keyBefore(s, i-1, from)
	if !ok || !isCredentialHeader(key) {
		return -1
	}
	v := i
	for v < to && s[v] == ' ' {
		v++
	}
	return sc.colonValue(key, v, to)
}

// colonValue redacts the value of the secret parameter key that starts at
// v, after Key: or Name: , and returns its end.
func (sc *scrubber) colonValue(key string, v, to int) int {
	s := sc.s
	switch {
	case v >= to:
		return v
	case redactedAt(s, v) > 0:
		return min(v+redactedAt(s, v), to) // a mark's brackets are not a value's
	case s[v] == '[' || s[v] == '{':
		return sc.bracketValue(v, to)
	case s[v] == '"' || s[v] == '\\' && v+1 < to && s[v+1] == '"':
		return sc.quotedValue(v, to)
	case isCookieHeader(key):
		return sc.plainValue(key, v, to, &cookieEnd)
	}
	return sc.plainValue(key, v, to, &valueEnd)
}

// plainValue redacts the unquoted value of the secret parameter key that
// starts at v and ends at one of ends, and returns its end.
func (sc *scrubber) plainValue(key string, v, to int, ends *[256]bool) int {
	s := sc.s
	// Already redacted; not bounded by to, as an unquoted URL leaves out a
	// trailing "]", the mark's own.
	if n := redactedAt(s, v); n > 0 {
		return min(v+n, to)
	}
	end := v
	for end < to && !ends[s[end]] {
		end++
	}
	if end == v || strings.EqualFold(key, "code") && isStatusCode(s[v:end]) {
		return end
	}
	// A scheme as the value ("authorization=Bearer abc") is followed by the
	// credential: that goes, the scheme stays.
	if end < to && s[end] == ' ' && isAuthScheme(s[v:end]) {
		t := end
		for t < to && s[t] == ' ' {
			t++
		}
		if strings.HasPrefix(s[t:], mark) {
			return min(t+len(mark), to)
		}
		e := t
		for e < to && (token68[s[e]] || s[e] == '=') {
			e++
		}
		if e > t {
			sc.replace(t, e, mark)
			return e
		}
	}
	// A URL as the value ("state=https://h/p?a=1&b=2") goes on past the
	// characters that end a value, and all of it goes.
	if j := strings.Index(s[v:end], "://"); j >= 0 {
		end = max(end, urlSpan(s, v+j, v, to).end)
	}
	sc.replace(v, end, mark)
	return end
}

// bracketValue redacts the inside of the "[…]" or "{…}" that opens at v,
// a slice, map or struct as %v prints it, and returns the end of its
// closing bracket. The brackets stay, and so does an authorization scheme
// at the start ("[Bearer [redacted]]", as in a header).
func (sc *scrubber) bracketValue(v, to int) int {
	s := sc.s
	from := v + 1
	if w := schemeWord(s[from:to]); w > 0 {
		from += w
	}
	// Already redacted; not bounded by to, as an unquoted URL leaves out a
	// trailing "]", the mark's own.
	if n := redactedAt(s, from); n > 0 {
		return min(from+n, to)
	}
	end := bracketEnd(s, v, to)
	if end > from {
		sc.replace(from, end, mark)
	}
	if end < to {
		return end + 1
	}
	return end
}

// bracketEnd returns the index of the bracket that closes the one at v,
// or to when none does. Nested pairs are skipped, and a closing bracket
// counts only when a delimiter follows it, so that a "]" inside a value
// ("[a]b]") does not end it early.
func bracketEnd(s string, v, to int) int {
	open, closing := s[v], byte(']')
	if open == '{' {
		closing = '}'
	}
	depth := 0
	for k := v; k < to; k++ {
		switch s[k] {
		case open:
			depth++
		case closing:
			if depth > 1 {
				depth--
			} else if k+1 == to || closeAfter[s[k+1]] {
				return k
			}
		}
	}
	return to
}

// schemeWord returns the length of the authorization scheme and the
// spaces after it at the start of s, or 0.
func schemeWord(s string) int {
	k := 0
	for k < len(s) && k <= len("bearer") && isLetter(s[k]) {
		k++
	}
	if k == len(s) || s[k] != ' ' || !isAuthScheme(s[:k]) {
		return 0
	}
	for k < len(s) && s[k] == ' ' {
		k++
	}
	return k
}

// jsonParam handles "key":"value" with the ":" at i, also when the JSON
// is itself inside a quoted string (\"key\":\"value\").
func (sc *scrubber) jsonParam(i, lo, to int) int {
	s := sc.s
	if i-1 < lo || s[i-1] != '"' {
		return -1
	}
	keyEnd := i - 1
	escaped := keyEnd-1 >= lo && s[keyEnd-1] == '\\'
	if escaped {
		keyEnd--
	}
	key, ok := keyBefore(s, keyEnd, lo)
	if !ok {
		return -1
	}
	keyStart := keyEnd - len(key)
	if keyStart-1 < lo || s[keyStart-1] != '"' || escaped && (keyStart-2 < lo || s[keyStart-2] != '\\') {
		return -1
	}
	v := i + 1
	for v < to && s[v] == ' ' {
		v++
	}
	if v < to && (s[v] == '"' && !escaped || escaped && s[v] == '\\' && v+1 < to && s[v+1] == '"') {
		return sc.quotedValue(v, to)
	}
	if v < to && (s[v] == '[' || s[v] == '{') && redactedAt(s, v) == 0 {
		return sc.jsonComposite(v, to, escaped)
	}
	return -1
}

// redactedAt returns the length of the mark that starts at v, or 0; what
// it stands for was redacted, and the brackets of a mark are not a
// value's.
func redactedAt(s string, v int) int {
	switch {
	case strings.HasPrefix(s[v:], mark):
		return len(mark)
	case strings.HasPrefix(s[v:], jwtMark):
		return len(jwtMark)
	}
	return 0
}

// jsonComposite replaces the JSON array or object that opens at v (a
// header's values, a private JWK) with ["[redacted]"], and returns its
// end. That keeps the JSON valid, is what the handler makes of a header's
// values, and ends in a character that cannot open a URL (a quote would,
// on the next pass, and scrubbing would not be idempotent).
func (sc *scrubber) jsonComposite(v, to int, escaped bool) int {
	s := sc.s
	with := `["` + mark + `"]`
	if escaped {
		with = `[\"` + mark + `\"]`
	}
	end := jsonEnd(s, v, to, escaped)
	if s[v:end] != with {
		sc.replace(v, end, with)
	}
	return end
}

// jsonEnd returns the end of the JSON array or object that opens at v,
// or to when it does not close before to. Brackets inside strings do not
// count. In escaped JSON (JSON inside a JSON string) a quote is \" and a
// backslash \\.
func jsonEnd(s string, v, to int, escaped bool) int {
	depth, inString := 0, false
	for k := v; k < to; k++ {
		c := s[k]
		if escaped && (c == '"' || c < 0x20 || c == 0x7f) {
			return k // the end of the string that holds the JSON
		}
		if c == '\\' && k+1 < to {
			k++
			switch {
			case !escaped:
				continue // an escape inside a string
			case s[k] == '"':
				c = '"'
			case s[k] == '\\' && inString:
				// The inner string's own escape: skip the character it
				// escapes, itself written \X or X.
				if k+1 < to && s[k+1] == '\\' {
					k++
				}
				k++
				continue
			default:
				continue // \n, \t, \uXXXX of the outer string
			}
		}
		switch {
		case c == '"':
			inString = !inString
		case inString:
		case c == '[' || c == '{':
			depth++
		case c == ']' || c == '}':
			depth--
			if depth == 0 {
				return k + 1
			}
		}
	}
	return to
}

// quotedValue redacts the inside of the quoted value that opens at v with
// `"` or `\"`, and returns the end of its closing quote.
func (sc *scrubber) quotedValue(v, to int) int {
	s := sc.s
	escaped := s[v] == '\\'
	open := v + 1
	if escaped {
		open++
	}
	k := open
	for k < to {
		c := s[k]
		if c < 0x20 || c == 0x7f {
			break
		}
		if escaped && c == '\\' && k+1 < to && s[k+1] == '"' {
			break
		}
		if !escaped && c == '"' && s[k-1] != '\\' {
			break
		}
		k++
	}
	if k > open && s[open:k] != mark {
		sc.replace(open, k, mark)
	}
	switch {
	case k < to && escaped && s[k] == '\\':
		return k + 2
	case k < to && s[k] == '"':
		return k + 1
	}
	return k
}

// nameBefore reports whether the four characters before i, and after lo,
// could end a secret name, none of which is shorter: a quick reject for
// the ":" of "did:plc:…" and "host:443", and the "=" of "x=1", as the
// look-back of keyBefore costs more.
func nameBefore(s string, i, lo int) bool {
	if i-4 < lo {
		return false
	}
	for _, c := range []byte(s[i-4 : i]) {
		if !keyChar[c] && c != '-' {
			return false
		}
	}
	return true
}

// keyBefore returns the parameter name that ends at end if it is a secret
// one and does not continue a longer word. A name may hold hyphens, as
// header names do ("Set-Cookie"); the part after a hyphen is a name of its
// own too (x-access_token, auth-code), see [isSecretKey].
func keyBefore(s string, end, lo int) (string, bool) {
	start := end
	for start > lo && end-start <= maxKeyLen && (keyChar[s[start-1]] || s[start-1] == '-') {
		start--
	}
	if end-start > maxKeyLen {
		// The run goes on before the look-back: only a name after a hyphen
		// inside it does not continue a longer word.
		h := strings.IndexByte(s[start+1:end], '-')
		if h < 0 {
			return "", false
		}
		start += h + 2
	}
	if start == end {
		return "", false
	}
	key := s[start:end]
	// After a percent-escape ("%26token=…", an encoded "&") the name may
	// start after the escape's two hex digits; "%access_token=" could be
	// either, and is taken for the secret one.
	if start > lo && s[start-1] == '%' && len(key) > 2 && isHex(key[0]) && isHex(key[1]) && !isSecretKey(key) {
		key = key[2:]
	}
	return key, isSecretKey(key)
}

// isSecretKey reports whether a parameter, attribute, field or header
// named key holds a credential or a one-time secret of the OAuth flow. A
// hyphenated name is secret when it or a part of it after a hyphen is
// ("X-Api-Key", "x-access_token").
func isSecretKey(key string) bool {
	for len(key) >= len("code") {
		if isSecretName(key) {
			return true
		}
		// A loop, not strings.IndexByte: names are short, and this runs for
		// every attribute and at every ":" and "=".
		h := 0
		for h < len(key) && key[h] != '-' {
			h++
		}
		if h == len(key) {
			return false
		}
		key = key[h+1:]
	}
	return false
}

// isSecretName is isSecretKey for one name. Case, "_" and "-" do not
// matter (access_token, accessToken, AccessToken and ACCESS-TOKEN are one
// name), as Go fields, JSON members, form parameters and headers spell
// the same names differently.
func isSecretName(key string) bool {
	n := len(key)
	if n < len("code") || n > maxKeyLen {
		return false
	}
	switch key[n-1] | 0x20 {
	case 'n', 't', 'd': // the last letters of token, secret, password
		if hasSuffixFold(key, "_token") || hasSuffixFold(key, "_secret") || hasSuffixFold(key, "_password") ||
			hasCamelSuffix(key, "Token") || hasCamelSuffix(key, "Secret") || hasCamelSuffix(key, "Password") {
			return true
		}
	}
	// A quick reject by the first letter, as this runs for every attribute
	// of every record.
	if c := key[0]; c != '_' && c != '-' {
		switch c | 0x20 {
		case 'a', 'c', 'd', 'i', 'p', 'r', 's', 't':
		default:
			return false
		}
	}
	var buf [maxKeyLen]byte
	k := 0
	for i := 0; i < n; i++ {
		c := key[i]
		switch {
		case c == '_' || c == '-':
			continue
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		buf[k] = c
		k++
	}
	switch string(buf[:k]) {
	case "accesstoken", "refreshtoken", "idtoken", "token", "code", "codeverifier", "pkceverifier",
		"clientassertion", "clientsecret", "assertion", "password", "passwd", "secret",
		"state", "requesturi", "dpop", "dpopkey", "proxykey", "proxysession", "sessionid",
		"authorization", "cookie", "setcookie", "apikey":
		return true
	}
	return false
}

// isCredentialHeader reports whether key names a header every value of
// which is a credential, so that "Name: value" (with a space, as in a
// header line) is one too; after other names ("state: expired",
// "token: invalid_grant") the text is prose.
func isCredentialHeader(key string) bool {
	return isCookieHeader(key) || headerNamed(key, strings.ToLower(contract.ProxySession)) || headerNamed(key, "authorization")
}

// isCookieHeader reports whether key names a cookie header (Cookie,
// Set-Cookie), whose value holds spaces and ";" ("a=1; b=2") and so runs
// to the end of the line.
func isCookieHeader(key string) bool {
	return headerNamed(key, "cookie")
}

// headerNamed reports whether key is name, in any case, or ends in
// "-" and name (X-Proxy-Session), as [isSecretKey] takes the part after a
// hyphen for a name.
func headerNamed(key, name string) bool {
	n := len(key) - len(name)
	return n >= 0 && strings.EqualFold(key[n:], name) && (n == 0 || key[n-1] == '-')
}

// hasCamelSuffix reports whether s ends in suffix, a capitalised word,
// after a letter or digit: "csrfToken", "IDToken", but not "Token" alone
// (the list has the names that are secret on their own).
func hasCamelSuffix(s, suffix string) bool {
	n := len(s) - len(suffix)
	return n > 0 && s[n:] == suffix && (isLetter(s[n-1]) || '0' <= s[n-1] && s[n-1] <= '9')
}

// hasSuffixFold reports whether s ends in suffix, a lower-case "_word",
// in any case.
func hasSuffixFold(s, suffix string) bool {
	n := len(s) - len(suffix)
	return n > 0 && s[n] == '_' && strings.EqualFold(s[n:], suffix)
}

// isStatusCode reports whether v is one to three digits.
func isStatusCode(v string) bool {
	if len(v) == 0 || len(v) > 3 {
		return false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return false
		}
	}
	return true
}

func isHex(c byte) bool    { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isLower(c byte) bool  { return 'a' <= c && c <= 'z' }
func isUpper(c byte) bool  { return 'A' <= c && c <= 'Z' }

// isProseWord reports whether w reads as an English word or acronym after
// an authorization scheme ("proof", "Token", "JWK") rather than as a
// credential, which random tokens never are.
func isProseWord(w string) bool {
	if w == "" || !isLetter(w[0]) {
		return false
	}
	lower, upper := true, len(w) <= 5
	for i := 1; i < len(w); i++ {
		lower = lower && isLower(w[i])
		upper = upper && isUpper(w[i])
	}
	return lower || upper && isUpper(w[0])
}

// isName reports whether n is an auth-param name.
func isName(n string) bool {
	if n == "" || !isLetter(n[0]) {
		return false
	}
	for i := 1; i < len(n); i++ {
		if !keyChar[n[i]] && n[i] != '-' {
			return false
		}
	}
	return true
}

// isLowerName reports whether n is a lower-case auth-param name; a quoted
// value after a single "=" could also end a base64 credential, and those
// are never all lower case.
func isLowerName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		if !isLower(n[i]) && n[i] != '_' {
			return false
		}
	}
	return true
}
