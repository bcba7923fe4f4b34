package redact

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"
)

// pending has the shape of sessions.Pending.
type pending struct {
	State        string          `json:"state"`
	Host         string          `json:"host"`
	PKCEVerifier string          `json:"pkce_verifier"`
	DPoPKey      json.RawMessage `json:"dpop_key"`
}

type tagged struct {
	Grant  string `json:"refresh_token"` // secret by its JSON name only
	Hidden string `json:"-"`
	Secret string `json:"-"` // secret by its Go name; the text handler shows it
}

type numbers struct {
	Code   int
	State  bool
	Token  string
	Secret float64
}

type unexported struct {
	token string
	Host  string
}

type anyField struct {
	V any
}

func TestMaskValue(t *testing.T) {
	sess := newSession()
	masked := sess
	masked.ID, masked.ProxyKey, masked.AccessToken, masked.RefreshToken, masked.DPoPKey = mark, mark, mark, mark, nil

	withQuery, err := url.Parse("https://user:pw@pds.example/xrpc/x?cursor=SECRET#frag")
	if err != nil {
		t.Fatal(err)
	}
	cut := *withQuery
	cut.User, cut.RawQuery, cut.Fragment = nil, "…", ""

	tests := []struct {
		name    string
		in      any
		want    any
		changed bool
	}{
		{"session", sess, masked, true},
		{"session pointer", &sess, &masked, true},
		{"masked session", masked, masked, false},
		{"pending", pending{State: "s", Host: "h", PKCEVerifier: "v", DPoPKey: json.RawMessage(`{}`)},
			pending{State: mark, Host: "h", PKCEVerifier: mark}, true},
		{"json and go names", tagged{Grant: "g", Hidden: "h", Secret: "s"}, tagged{Grant: mark, Hidden: "h", Secret: mark}, true},
		{"numbers stay", numbers{Code: 404, State: true, Token: "t", Secret: 1.5}, numbers{Code: 404, State: true, Token: mark, Secret: 1.5}, true},
		{"header", http.Header{"Accept": {"*/*"}, "Cookie": {"a=1", "b=2"}, "Authorization": {"Bearer x"}, "X-Api-Key": {"k"}},
			http.Header{"Accept": {"*/*"}, "Cookie": {mark}, "Authorization": {mark}, "X-Api-Key": {mark}}, true},
		{"form", url.Values{"code": {"c"}, "state": {"s"}, "iss": {"https://pds"}},
			url.Values{"code": {mark}, "state": {mark}, "iss": {"https://pds"}}, true},
		{"map of any", map[string]any{"token": "t", "n": 1, "inner": map[string]any{"password": "p", "user": "u"}},
			map[string]any{"token": mark, "n": 1, "inner": map[string]any{"password": mark, "user": "u"}}, true},
		{"slice", []session{sess, masked}, []session{masked, masked}, true},
		{"array", [2]tagged{{Grant: "g"}, {}}, [2]tagged{{Grant: mark}, {}}, true},
		{"string in a field", payload{Name: secretURL}, payload{Name: String(secretURL)}, true},
		{"interface field", anyField{V: sess}, anyField{V: masked}, true},
		{"url in a field", upstream{Name: "pds", URL: withQuery}, upstream{Name: "pds", URL: &cut}, true},
		{"code that is a status", map[string]string{"code": "404"}, map[string]string{"code": "404"}, false},
		{"empty secret", session{Host: "h"}, session{Host: "h"}, false},
		{"unexported field", unexported{token: "t", Host: "h"}, unexported{token: "t", Host: "h"}, false},
		{"prints itself", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), false},
		{"top-level url", withQuery, withQuery, false}, // its String is scrubbed as text
		{"clean", payload{Name: "alice.test"}, payload{Name: "alice.test"}, false},
		{"nil", nil, nil, false},
		{"nil map", http.Header(nil), http.Header(nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fmt.Sprintf("%#v", tt.in)
			got, changed := maskValue(tt.in)
			if changed != tt.changed || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("maskValue(%#v)\n got %#v, %v\nwant %#v, %v", tt.in, got, changed, tt.want, tt.changed)
			}
			if after := fmt.Sprintf("%#v", tt.in); after != before {
				t.Errorf("maskValue changed what was logged:\nbefore %s\n after %s", before, after)
			}
		})
	}
}

// TestMaskValueCycle checks that a value that points to itself costs a
// bounded walk.
func TestMaskValueCycle(t *testing.T) {
	type node struct {
		Token string
		Next  *node
	}
	n := &node{Token: "t"}
	n.Next = n
	got, changed := maskValue(n)
	m, _ := got.(*node)
	if !changed || m == nil || m.Token != mark || m.Next.Token != mark {
		t.Errorf("maskValue(cycle) = %+v, %v", got, changed)
	}
	if n.Token != "t" {
		t.Error("maskValue changed what was logged")
	}
}
