package config

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/agext/levenshtein"
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
		names := schemaNames()
		if blocks := names[m[1]]; len(blocks) > 0 {
			// The name is right but the place is not.
			d.Detail += fmt.Sprintf(" %q belongs in %s.", m[1], strings.Join(blocks, " or "))
			continue
		}
		if s := nearest(m[1], names); s != "" {
			d.Detail += fmt.Sprintf(" Did you mean %q?", s)
		}
	}
}

var quotedName = regexp.MustCompile(`named "([^"]+)"`)

// schemaNames maps every attribute and block name of the schema structs
// to the blocks it may appear in ("the top level" for the file itself).
func schemaNames() map[string][]string {
	names := map[string][]string{}
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, in string)
	walk = func(t reflect.Type, in string) {
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
				names[name] = append(names[name], in)
			case "block":
				names[name] = append(names[name], in)
				article := "a "
				if strings.ContainsAny(name[:1], "aeiou") {
					article = "an "
				}
				walk(f.Type, article+name+" block")
			}
		}
	}
	walk(reflect.TypeOf(fileSchema{}), "the top level")
	return names
}

// nearest returns the candidate within edit distance 2 of s, if any.
func nearest(s string, candidates map[string][]string) string {
	best, bestDist := "", 3
	// In order, so that ties always suggest the same name.
	for _, c := range slices.Sorted(maps.Keys(candidates)) {
		if d := levenshtein.Distance(s, c, nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}
