package textutil

import "testing"

func TestClip(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"a bit longer", 5, "a bit…"},
		{"héllo", 2, "h…"}, // é is two bytes: not split
		{"日本語", 4, "日…"},
		{"", 0, ""},
		{"x", 0, "…"},
	} {
		if got := Clip(tc.in, tc.n); got != tc.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestFoldHeader(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"User-Did", "user-did"}, {"USER_DID", "user-did"}, {"x-Forwarded_For", "x-forwarded-for"}, {"", ""}, {"Ä-X", "Ä-x"},
	} {
		var b [8]byte
		if got := string(FoldHeader(b[:0], tc.in)); got != tc.want {
			t.Errorf("FoldHeader(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	m := map[string]bool{"user-did": true}
	var b [64]byte
	if n := testing.AllocsPerRun(100, func() { _ = m[string(FoldHeader(b[:0], "User-Did"))] }); n != 0 {
		t.Errorf("FoldHeader into a stack buffer and a map lookup allocate %v times, want 0", n)
	}
}
