package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// gohcl reports unknown names without suggestions; suggestNames adds
// "Did you mean …?" from the schema's own names, so a typo such as
// "backnd" points at the fix.
func suggestNames(diags hcl.Diagnostics) {
	for _, d := range diags {
		if d.Summary != "Unsupported argument" && d.Summary != "Unsupported block type" {
			continue
		}
		m := quotedName.FindStringSubmatch(d.Detail)
		if m == nil {
			continue
		}
		if s := nearest(m[1], schemaNames()); s != "" {
			d.Detail += fmt.Sprintf(" Did you mean %q?", s)
		}
	}
}

var quotedName = regexp.MustCompile(`named "([^"]+)"`)

// schemaNames lists every attribute and block name of the schema structs.
func schemaNames() []string {
	var names []string
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, kind, _ := strings.Cut(f.Tag.Get("hcl"), ",")
			switch kind {
			case "", "attr", "optional":
				names = append(names, name)
			case "block":
				names = append(names, name)
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeOf(fileSchema{}))
	return names
}

// nearest returns the candidate within edit distance 2 of s, if any.
func nearest(s string, candidates []string) string {
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
