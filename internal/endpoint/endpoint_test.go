package endpoint

import "testing"

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want Problem
	}{
		{"https://accounts.google.com", None},
		{"https://example.com/o/oauth2/v2/auth?x=1", None},
		{"http://localhost:8080/token", None},
		{"http://LOCALHOST/token", None},
		{"http://127.0.0.5:9000", None},
		{"http://[::1]:9000/x", None},
		{"", NotURL},
		{"accounts.google.com", NotURL},
		{"/token", NotURL},
		{"https://", NotURL},
		{"https:opaque", NotURL},
		{"ftp://example.com", NotURL},
		{"ftp://user:pw@example.com", NotURL},
		{"https://exa mple.com", NotURL},
		{"https://user:pw@example.com/token", UserInfo},
		{"https://example.com/token#frag", Fragment},
		{"https://example.com/token#", Fragment},
		{"http://example.com/token", PlainHTTP},
		{"http://10.0.0.5/token", PlainHTTP},
		{"http://localhost.example.com/token", PlainHTTP},
	} {
		u, got := Check(tc.raw)
		if got != tc.want {
			t.Errorf("Check(%q) = %v, want %v", tc.raw, got, tc.want)
		}
		if got == None && u == nil {
			t.Errorf("Check(%q): no URL", tc.raw)
		}
	}
}
