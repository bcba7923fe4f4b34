package sessions

import (
	"strings"
	"testing"
)

func TestWellFormedToken(t *testing.T) {
	for range 100 {
		if tok := NewToken(); !WellFormedToken(tok) {
			t.Fatalf("NewToken %q is not well formed", tok)
		}
	}
	for _, s := range []string{"", "short", strings.Repeat("a", 42), strings.Repeat("a", 44), strings.Repeat("a", 42) + "=", strings.Repeat("a", 42) + "+", strings.Repeat("a", 42) + "/", strings.Repeat("é", 21) + "a"} {
		if WellFormedToken(s) {
			t.Errorf("WellFormedToken(%q)", s)
		}
	}
}
