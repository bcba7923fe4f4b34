// Package textutil holds small text helpers shared across ioproxy.
package textutil

import "unicode/utf8"

// Clip shortens s to at most n bytes, and marks the cut with "…", without
// splitting a UTF-8 sequence: for logs, pages and labels that must stay
// small whatever a client or a server sent.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// FoldHeader appends name to dst as servers that fold header names read
// it: ASCII lower case, "_" as "-". With dst a stack buffer (var b
// [64]byte; FoldHeader(b[:0], name)) and the result used as a map key
// (m[string(folded)]), it allocates nothing: the proxy folds every
// header name of every request several times.
func FoldHeader(dst []byte, name string) []byte {
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case c == '_':
			c = '-'
		}
		dst = append(dst, c)
	}
	return dst
}
