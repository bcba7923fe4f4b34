package sessions

import "testing"

func TestIssuerGroup(t *testing.T) {
	for in, want := range map[string]string{
		"https://bsky.social":          "bsky.social",
		"https://auth.pds.example.com": "example.com",
		"https://pds.example.co.uk":    "example.co.uk",
		"https://EXAMPLE.com.:443":     "example.com",
		"http://localhost:2583":        "localhost",
		"http://127.0.0.1:2583":        "127.0.0.1",
		"https://[2001:db8::1]":        "2001:db8::1",
		"https://foo.github.io":        "foo.github.io",
		"not a url":                    "not a url",
		"":                             "",
	} {
		if got := IssuerGroup(in); got != want {
			t.Errorf("IssuerGroup(%q) = %q, want %q", in, got, want)
		}
	}
}
