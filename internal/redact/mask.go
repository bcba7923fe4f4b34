package redact

import (
	"encoding"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strings"
)

// The walk through a logged value is bounded, so that a large or cyclic
// value costs a bounded time; what lies beyond is left to the text rules,
// applied to the printed value afterwards.
const (
	maxDepth = 8
	maxNodes = 4096
)

var (
	urlType       = reflect.TypeFor[url.URL]()
	errorType     = reflect.TypeFor[error]()
	stringerType  = reflect.TypeFor[fmt.Stringer]()
	formatterType = reflect.TypeFor[fmt.Formatter]()
	textType      = reflect.TypeFor[encoding.TextMarshaler]()
	jsonType      = reflect.TypeFor[json.Marshaler]()
)

// maskValue returns a copy of v in which what the field names, map keys
// and types say is a credential is masked, and strings are scrubbed by
// [String], and whether there was anything to mask; v itself when there
// was not. The handlers print the copy as they would have printed v (a
// struct stays a JSON object), which the text rules alone cannot ensure:
// the text handler prints Go field names (RefreshToken), the JSON handler
// JSON names (refresh_token), and neither says that a session's ID is its
// cookie.
//
// The rules:
//   - a struct field whose Go name or JSON name is a secret one (as for
//     key=value text: access_token, AccessToken, dpop_key, …), and the ID
//     field of a struct type whose name ends in "session" (any case;
//     sessions.Session's ID is the cookie value), is masked;
//   - so is the value of a map entry whose string key is a secret name
//     (http.Header's Cookie, Set-Cookie, Proxy-Session, Authorization);
//   - masked, a string becomes "[redacted]" and a slice of strings
//     ["[redacted]"]; numbers and booleans stay (code=404 is a status);
//     anything else (a JWK as json.RawMessage, a key) becomes its zero
//     value; an empty value stays;
//   - a url.URL inside the value loses its userinfo and fragment, and its
//     query becomes "…";
//   - values that print themselves (error, fmt.Stringer, fmt.Formatter,
//     encoding.TextMarshaler, json.Marshaler) are not walked into, nor
//     are unexported fields, which cannot be set: the text rules see them
//     when the value is printed.
func maskValue(v any) (any, bool) {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || printsItself(rv.Type()) {
		return v, false
	}
	w := walker{}
	out, changed := w.value(rv, 0)
	if !changed {
		return v, false
	}
	return out.Interface(), true
}

// walker holds what is left of a walk's budget.
type walker struct {
	nodes int
}

// value returns v masked and whether that changed it.
func (w *walker) value(v reflect.Value, depth int) (reflect.Value, bool) {
	if depth > maxDepth || w.nodes >= maxNodes {
		return v, false
	}
	w.nodes++
	t := v.Type()
	if t == urlType {
		return maskURL(v)
	}
	if k := v.Kind(); k != reflect.Pointer && k != reflect.Interface && printsItself(t) {
		return v, false
	}
	switch v.Kind() {
	case reflect.String:
		if s, changed := scrub(v.String()); changed {
			return reflect.ValueOf(s).Convert(t), true
		}
	case reflect.Pointer:
		if v.IsNil() {
			return v, false
		}
		if e := t.Elem(); e != urlType && printsItself(e) {
			return v, false
		}
		e, changed := w.value(v.Elem(), depth+1)
		if !changed {
			return v, false
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(e)
		return p, true
	case reflect.Interface:
		if v.IsNil() {
			return v, false
		}
		e, changed := w.value(v.Elem(), depth+1)
		if !changed {
			return v, false
		}
		out := reflect.New(t).Elem()
		out.Set(e)
		return out, true
	case reflect.Struct:
		return w.structValue(v, depth)
	case reflect.Map:
		return w.mapValue(v, depth)
	case reflect.Slice, reflect.Array:
		return w.elements(v, depth)
	}
	return v, false
}

func (w *walker) structValue(v reflect.Value, depth int) (reflect.Value, bool) {
	t := v.Type()
	session := hasSuffixFoldWord(t.Name(), "session")
	var out reflect.Value
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		var nv reflect.Value
		var changed bool
		if secretField(f, session) {
			nv, changed = mask(f.Name, v.Field(i))
		} else {
			nv, changed = w.value(v.Field(i), depth+1)
		}
		if !changed {
			continue
		}
		if !out.IsValid() {
			out = reflect.New(t).Elem()
			out.Set(v)
		}
		out.Field(i).Set(nv)
	}
	if !out.IsValid() {
		return v, false
	}
	return out, true
}

func (w *walker) mapValue(v reflect.Value, depth int) (reflect.Value, bool) {
	if v.Len() == 0 {
		return v, false
	}
	stringKeys := v.Type().Key().Kind() == reflect.String
	type entry struct{ k, v reflect.Value }
	var changed []entry
	for it := v.MapRange(); it.Next(); {
		var nv reflect.Value
		var ok bool
		if stringKeys && isSecretKey(it.Key().String()) {
			nv, ok = mask(it.Key().String(), it.Value())
		} else {
			nv, ok = w.value(it.Value(), depth+1)
		}
		if ok {
			changed = append(changed, entry{it.Key(), nv})
		}
		if w.nodes >= maxNodes {
			break
		}
	}
	if changed == nil {
		return v, false
	}
	out := reflect.MakeMapWithSize(v.Type(), v.Len())
	for it := v.MapRange(); it.Next(); {
		out.SetMapIndex(it.Key(), it.Value())
	}
	for _, e := range changed {
		out.SetMapIndex(e.k, e.v)
	}
	return out, true
}

func (w *walker) elements(v reflect.Value, depth int) (reflect.Value, bool) {
	t := v.Type()
	if inert(t.Elem().Kind()) {
		return v, false // bytes and numbers: nothing to mask or scrub
	}
	var out reflect.Value
	for i := 0; i < v.Len() && w.nodes < maxNodes; i++ {
		e, changed := w.value(v.Index(i), depth+1)
		if !changed {
			continue
		}
		if !out.IsValid() {
			if v.Kind() == reflect.Slice {
				out = reflect.MakeSlice(t, v.Len(), v.Len())
				reflect.Copy(out, v)
			} else {
				out = reflect.New(t).Elem()
				out.Set(v)
			}
		}
		out.Index(i).Set(e)
	}
	if !out.IsValid() {
		return v, false
	}
	return out, true
}

// mask returns the masked form of v, held under the secret name key, and
// whether it differs from v.
func mask(key string, v reflect.Value) (reflect.Value, bool) {
	if v.IsZero() {
		return v, false
	}
	t := v.Type()
	switch k := v.Kind(); {
	case inert(k):
		return v, false
	case k == reflect.String:
		if s := v.String(); s == mark || strings.EqualFold(key, "code") && isStatusCode(s) {
			return v, false
		}
		return reflect.ValueOf(mark).Convert(t), true
	case k == reflect.Slice && t.Elem().Kind() == reflect.String:
		if v.Len() == 1 && v.Index(0).String() == mark {
			return v, false
		}
		out := reflect.MakeSlice(t, 1, 1)
		out.Index(0).Set(reflect.ValueOf(mark).Convert(t.Elem()))
		return out, true
	case k == reflect.Interface:
		e, changed := mask(key, v.Elem())
		if !changed {
			return v, false
		}
		out := reflect.New(t).Elem()
		out.Set(e)
		return out, true
	}
	return reflect.Zero(t), true
}

// maskURL masks a url.URL inside a logged value as [String] scrubs a URL
// in a text: no userinfo, no fragment, a query of "…".
func maskURL(v reflect.Value) (reflect.Value, bool) {
	u := v.Interface().(url.URL)
	changed := false
	if u.User != nil {
		u.User, changed = nil, true
	}
	if u.RawQuery != "" && u.RawQuery != "…" {
		u.RawQuery, changed = "…", true
	}
	if u.Fragment != "" || u.RawFragment != "" {
		u.Fragment, u.RawFragment, changed = "", "", true
	}
	// A JWT in the path, or a secret parameter in an opaque URL.
	for _, p := range []*string{&u.Opaque, &u.Host, &u.Path} {
		if s, ok := scrub(*p); ok {
			*p, u.RawPath, changed = s, "", true
		}
	}
	if !changed {
		return v, false
	}
	return reflect.ValueOf(u), true
}

// secretField reports whether the struct field f holds a credential; in
// a session type, ID does too.
func secretField(f reflect.StructField, session bool) bool {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if isSecretKey(f.Name) || name != "-" && isSecretKey(name) {
		return true
	}
	return session && (strings.EqualFold(f.Name, "id") || name == "id")
}

// printsItself reports whether values of t are printed by their own
// methods rather than field by field, by either handler; masking their
// fields would not change what those methods print in a known way.
func printsItself(t reflect.Type) bool {
	for _, m := range []reflect.Type{errorType, stringerType, formatterType, textType, jsonType} {
		if t.Implements(m) || t.Kind() != reflect.Interface && t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(m) {
			return true
		}
	}
	return false
}

// inert reports whether values of kind k hold no text to mask or scrub.
func inert(k reflect.Kind) bool {
	switch k {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128,
		reflect.Chan, reflect.Func, reflect.UnsafePointer:
		return true
	}
	return false
}

// hasSuffixFoldWord reports whether s ends in suffix, in any case.
func hasSuffixFoldWord(s, suffix string) bool {
	return len(s) >= len(suffix) && strings.EqualFold(s[len(s)-len(suffix):], suffix)
}
