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
//   - Authorization schemes: the credential (a token68, padding included)
//     after "DPoP ", "Bearer " or "Basic " (any case, not inside a longer
//     word) becomes "[redacted]"; the scheme stays. After "Authorization"
//     (as in "Authorization: Bearer x", "authorization=Bearer x",
//     "map[Authorization:[Bearer x]]") it is always redacted. Elsewhere two
//     forms are prose, not credentials, and stay: a plain word ("DPoP
//     proof", "Bearer token", "DPoP JWK": letters only, lower case after
//     the first, or up to 5 upper-case letters) and an auth-param
//     (`DPoP error="use_dpop_nonce"`, `Basic realm="x"`, realm=x).
//   - Secret parameters: in key=value text and in JSON ("key":"value",
//     also escaped as \"key\":\"value\"), the value of access_token,
//     refresh_token, id_token, token, code, code_verifier,
//     client_assertion, client_secret, assertion, password, passwd, secret,
//     state, request_uri, dpop, authorization, api_key, apikey and of any
//     key ending in _token, _secret or _password (any case) becomes
//     "[redacted]". The key must not continue a longer word (auth_code is
//     not code), though it may follow a percent-escape ("%26code=…", an
//     encoded "&"). A key=value value ends at whitespace, a control
//     character, one of &;,"'`<>\)]} or the end, except that a URL as the
//     value goes to the URL's end; a quoted value (key="…", key=\"…\") is
//     redacted inside its quotes. A code of one to three digits (code=404)
//     is a status, not an OAuth code, and stays.
//
// Everything else (DIDs, handles, host names, paths without a query,
// durations, status codes, addresses) passes through unchanged, and a string
// with nothing to scrub is returned as is, without allocating.
package redact

import "strings"

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
	sc.region(0, len(s), true)
	if !sc.edited {
		return s, false
	}
	sc.b.WriteString(s[sc.last:])
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
			} else {
				end = sc.jsonParam(i, lo, to)
			}
		case '=':
			end = sc.formParam(i, lo, to)
		case ' ':
			end = sc.authScheme(i, lo, to)
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
	if !afterAuthorization(s, start, lo) {
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
	// Already redacted; not bounded by to, as an unquoted URL leaves out a
	// trailing "]", the mark's own.
	if strings.HasPrefix(s[v:], mark) {
		return min(v+len(mark), to)
	}
	end := v
	for end < to && !valueEnd[s[end]] {
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
	return -1
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

// keyBefore returns the parameter name that ends at end if it is a secret
// one and does not continue a longer word.
func keyBefore(s string, end, lo int) (string, bool) {
	start := end
	for start > lo && end-start <= maxKeyLen && keyChar[s[start-1]] {
		start--
	}
	if start == end || end-start > maxKeyLen {
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

// isSecretKey reports whether a parameter or attribute named key holds a
// credential or a one-time secret of the OAuth flow.
func isSecretKey(key string) bool {
	n := len(key)
	if n < len("code") || n > maxKeyLen {
		return false
	}
	if hasSuffixFold(key, "_token") || hasSuffixFold(key, "_secret") || hasSuffixFold(key, "_password") {
		return true
	}
	// A quick reject by the first letter, as this runs for every attribute
	// of every record.
	switch key[0] | 0x20 {
	case 'a', 'c', 'd', 'i', 'p', 'r', 's', 't':
	default:
		return false
	}
	var buf [maxKeyLen]byte
	for i := 0; i < n; i++ {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	switch string(buf[:n]) {
	case "access_token", "refresh_token", "id_token", "token", "code", "code_verifier",
		"client_assertion", "client_secret", "assertion", "password", "passwd", "secret",
		"state", "request_uri", "dpop", "authorization", "api_key", "apikey":
		return true
	}
	return false
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
