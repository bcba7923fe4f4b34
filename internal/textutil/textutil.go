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
