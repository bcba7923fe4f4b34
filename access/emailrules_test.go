package access

import (
	"strings"
	"testing"
)

func TestEmailRulesAdmits(t *testing.T) {
	named := &EmailRules{
		Emails:  []string{"alice@example.com", "bob+ops@partner.org"},
		Domains: []string{"example.net", "*.corp.example"},
	}
	tests := []struct {
		name     string
		rules    *EmailRules
		email    string
		verified bool
		want     bool
	}{
		{"named email", named, "alice@example.com", true, true},
		{"named email, other case", named, "Alice@EXAMPLE.com", true, true},
		{"named email, not verified", named, "alice@example.com", false, false},
		{"plus address is another address", named, "alice+x@example.com", true, false},
		{"named email with a plus", named, "bob+ops@partner.org", true, true},
		{"the same local part elsewhere", named, "alice@example.org", true, false},
		{"another address of a named email's domain", named, "carol@example.com", true, false},
		{"domain", named, "carol@example.net", true, true},
		{"domain, other case", named, "carol@Example.NET", true, true},
		{"domain, not verified", named, "carol@example.net", false, false},
		{"a subdomain of a plain domain", named, "carol@mail.example.net", true, false},
		{"a domain that ends like one", named, "carol@badexample.net", true, false},
		{"subdomain of a wildcard", named, "dave@eu.corp.example", true, true},
		{"deep subdomain of a wildcard", named, "dave@a.eu.corp.example", true, true},
		{"the wildcard's own domain", named, "dave@corp.example", true, false},
		{"a domain that ends like the wildcard", named, "dave@evilcorp.example", true, false},
		{"two @", named, "alice@evil.com@example.com", true, false},
		{"quoted local part", named, `"alice@evil"@example.net`, true, false},
		{"empty local part", named, "@example.net", true, false},
		{"empty domain", named, "alice@", true, false},
		{"empty", named, "", true, false},
		{"no @", named, "example.net", true, false},
		{"display name", named, "Alice <alice@example.com>", true, false},
		{"space around", named, " alice@example.com", true, false},
		{"space inside", named, "al ice@example.net", true, false},
		{"newline", named, "alice@example.com\n", true, false},
		{"NUL", named, "alice@example.com\x00", true, false},
		{"dot at the start", named, ".carol@example.net", true, false},
		{"two dots", named, "car..ol@example.net", true, false},
		{"domain with a trailing dot", named, "carol@example.net.", true, false},
		{"IP domain", &EmailRules{}, "carol@127.0.0.1", true, false},
		{"bracketed IP", &EmailRules{}, "carol@[127.0.0.1]", true, false},
		{"one-label domain", &EmailRules{}, "root@localhost", true, false},
		{"Kelvin sign folds to k", &EmailRules{Emails: []string{"kevin@example.com"}}, "\u212aevin@example.com", true, false},
		{"non-ASCII domain", &EmailRules{Domains: []string{"example.com"}}, "a@exämple.com", true, false},
		{"long local part", &EmailRules{}, strings.Repeat("a", 65) + "@example.com", true, false},
		{"open rules, verified", &EmailRules{}, "anyone@anywhere.example", true, true},
		{"open rules, not verified", &EmailRules{}, "anyone@anywhere.example", false, false},
		{"open rules, not an email", &EmailRules{}, "anyone", true, false},
		{"nil rules", nil, "alice@example.com", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rules.Admits(tt.email, tt.verified); got != tt.want {
				t.Errorf("Admits(%q, %v) = %v, want %v", tt.email, tt.verified, got, tt.want)
			}
		})
	}
}

func TestParseEmail(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "alice@example.com", want: "alice@example.com"},
		{in: "  Alice@Example.COM ", want: "alice@example.com"},
		{in: "o'brien+tag@mail.example.co.uk", want: "o'brien+tag@mail.example.co.uk"},
		{in: "example.com", err: "is a domain; put it in domains"},
		{in: "*.example.com", err: "is a domain; put it in domains"},
		{in: "alice", err: "is not an email"},
		{in: "*@example.com", err: "emails are matched exactly"},
		{in: "alice@example.com@evil.com", err: "is not an email"},
		{in: "@example.com", err: "is not an email"},
		{in: "alice@", err: "is not an email"},
		{in: "alice@localhost", err: "is not an email"},
		{in: "Alice <alice@example.com>", err: "is not an email"},
		{in: "alice@exämple.com", err: "other than ASCII"},
		{in: "", err: "is not an email"},
	}
	for _, tt := range tests {
		got, err := ParseEmail(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseEmail(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseEmail(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.err)
		}
	}
}

func TestParseEmailDomain(t *testing.T) {
	tests := []struct {
		in, want, err string
	}{
		{in: "example.com", want: "example.com"},
		{in: " Example.COM ", want: "example.com"},
		{in: "*.Example.com", want: "*.example.com"},
		{in: "xn--exmple-cua.com", want: "xn--exmple-cua.com"},
		{in: "alice@example.com", err: `is an email; put it in emails, or write its domain, "example.com"`},
		{in: "@example.com", err: `write the domain alone, "example.com"`},
		{in: "*.com", err: "is not a domain"},
		{in: "com", err: "is not a domain"},
		{in: "*", err: "in the wrong place"},
		{in: "a.*.example.com", err: "in the wrong place"},
		{in: "**.example.com", err: "in the wrong place"},
		{in: "-a.example.com", err: "is not a domain"},
		{in: "example.com.", err: "is not a domain"},
		{in: "127.0.0.1", err: "is not a domain"},
		{in: "exämple.com", err: "other than ASCII"},
		{in: "", err: "is not a domain"},
	}
	for _, tt := range tests {
		got, err := ParseEmailDomain(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseEmailDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseEmailDomain(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.err)
		}
	}
}

// Rules made by the parsers admit what they name.
func TestEmailRulesParsed(t *testing.T) {
	email, err := ParseEmail("Alice@Example.com")
	if err != nil {
		t.Fatal(err)
	}
	domain, err := ParseEmailDomain("*.Team.Example.com")
	if err != nil {
		t.Fatal(err)
	}
	r := &EmailRules{Emails: []string{email}, Domains: []string{domain}}
	for email, want := range map[string]bool{
		"ALICE@example.COM":       true,
		"bob@eu.team.example.com": true,
		"bob@team.example.com":    false,
		"bob@example.com":         false,
	} {
		if got := r.Admits(email, true); got != want {
			t.Errorf("Admits(%q) = %v, want %v", email, got, want)
		}
	}
	if r.OpenToAnyEmail() || !(&EmailRules{}).OpenToAnyEmail() {
		t.Error("OpenToAnyEmail is wrong")
	}
}
