package redact

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
)

// handler scrubs records on their way to next.
type handler struct {
	next slog.Handler
}

// NewHandler returns a handler that passes every record to next with
// [String] applied to its message, to every string attribute, inside groups
// and to attributes added with WithAttrs. A string or other value under a
// key that names a secret (as for key=value text: "access_token",
// "RefreshToken", "Cookie", …) becomes "[redacted]" whole. Other values
// (structs, maps, error, fmt.Stringer, …) are first masked: a copy in which
// the fields and map entries that hold credentials are masked, so that a
// session struct or an http.Header keeps its shape and its ordinary fields
// (see [maskValue]). Then the copy is formatted as the text handler prints
// it and, for values the JSON handler encodes on its own, as JSON; when
// either text still has something to scrub, the attribute becomes a
// scrubbed text, under the same key (see [scrubAny]). LogValuers are
// resolved first. Keys and group names are kept, and a record with nothing
// to scrub is passed on as it is, without allocating.
func NewHandler(next slog.Handler) slog.Handler {
	if h, ok := next.(*handler); ok {
		return h
	}
	return &handler{next: next}
}

func (h *handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	msg, dirty := scrub(r.Message)
	// Attributes are only copied from the first one that changes (first);
	// the ones before it are taken from r again below.
	first, n := -1, 0
	var tail []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		v, changed := scrubValue(a.Key, a.Value)
		if changed && first < 0 {
			first = n
			tail = make([]slog.Attr, 0, r.NumAttrs()-n)
		}
		if first >= 0 {
			tail = append(tail, slog.Attr{Key: a.Key, Value: v})
		}
		n++
		return true
	})
	if !dirty && first < 0 {
		return h.next.Handle(ctx, r)
	}
	if first < 0 {
		first = n
	}
	out := slog.NewRecord(r.Time, r.Level, msg, r.PC)
	k := 0
	r.Attrs(func(a slog.Attr) bool {
		if k == first {
			return false
		}
		out.AddAttrs(a)
		k++
		return true
	})
	out.AddAttrs(tail...)
	// Errors are the next handler's own (a failed write), passed on as they
	// are on both paths: a decorator that only rewrites text adds no step
	// worth naming.
	return h.next.Handle(ctx, out)
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	scrubbed := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		v, _ := scrubValue(a.Key, a.Value)
		scrubbed[i] = slog.Attr{Key: a.Key, Value: v}
	}
	return &handler{next: h.next.WithAttrs(scrubbed)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name)}
}

// scrubValue returns the value of the attribute named key, scrubbed, and
// whether that changed it.
func scrubValue(key string, v slog.Value) (slog.Value, bool) {
	resolved := false
	if v.Kind() == slog.KindLogValuer {
		// Resolved here and passed on resolved: a LogValue that returned
		// something else the second time would escape the scrubbing.
		v = v.Resolve()
		resolved = true
	}
	switch v.Kind() {
	case slog.KindString:
		if isSecretKey(key) {
			return slog.StringValue(mark), true
		}
		if s, changed := scrub(v.String()); changed {
			return slog.StringValue(s), true
		}
	case slog.KindAny:
		if isSecretKey(key) {
			return slog.StringValue(mark), true
		}
		if out, changed := scrubAny(v.Any()); changed {
			return out, true
		}
	case slog.KindGroup:
		group := v.Group()
		var out []slog.Attr
		for i, a := range group {
			gv, changed := scrubValue(a.Key, a.Value)
			if changed && out == nil {
				out = make([]slog.Attr, len(group))
				copy(out, group[:i])
			}
			if out != nil {
				out[i] = slog.Attr{Key: a.Key, Value: gv}
			}
		}
		if out != nil {
			return slog.GroupValue(out...), true
		}
	}
	return v, resolved
}

// scrubAny returns what v is to be logged as, and whether that is not v
// itself. v is masked first (see [maskValue]); then what the text handler
// and what the JSON handler would print for it are scrubbed. When neither
// printed text has anything left to scrub, the masked copy goes on, and
// each handler prints it its own way. Otherwise one scrubbed text goes on,
// as a string, for both handlers: the text form when it needed scrubbing,
// else the JSON form. When both did, whatever the JSON form lost is also
// removed from the text form, as the two may name one secret differently
// (RefreshToken in one, refresh_token in the other) and the rules may know
// only one of the names.
func scrubAny(v any) (out slog.Value, changed bool) {
	_, jm := v.(json.Marshaler)
	_, tm := v.(encoding.TextMarshaler)
	_, fm := v.(fmt.Formatter)
	if err, ok := v.(error); ok && !jm && !tm && !fm {
		// Both handlers print just Error() for a plain error.
		s, changed := scrub(errorText(err))
		return slog.StringValue(s), changed
	}
	v, changed = maskValue(v)
	text, textChanged := scrub(textOf(v))
	js, jsonRemoved := jsonForm(v)
	jsChanged := jsonRemoved != nil
	switch {
	case textChanged && jsChanged:
		for _, r := range jsonRemoved {
			if len(r) >= minCrossRemoval {
				text = strings.ReplaceAll(text, r, mark)
			}
		}
		return slog.StringValue(text), true
	case textChanged:
		return slog.StringValue(text), true
	case jsChanged:
		return slog.StringValue(js), true
	case changed:
		return slog.AnyValue(v), true
	}
	return slog.Value{}, false
}

// minCrossRemoval is the shortest text that, removed from the JSON form
// of a value, is removed from its text form too: shorter ones would take
// ordinary words with them.
const minCrossRemoval = 6

// jsonForm returns what the JSON handler prints for v, scrubbed, and the
// texts scrubbing removed from it (nil when it removed none). For a
// scalar the JSON shows nothing the text did not, and is not made.
func jsonForm(v any) (string, []string) {
	_, jm := v.(json.Marshaler)
	if err, ok := v.(error); ok && !jm {
		// The JSON handler prints Error(), which the text handler may not
		// (an error that is also a TextMarshaler or Formatter).
		return scrubRemoved(errorText(err))
	}
	if !composite(v) && !jm {
		return "", nil
	}
	// The JSON handler encodes v itself, which can show what the text did
	// not: fields behind pointers, fields a String method leaves out.
	js, ok := encodeJSON(v)
	if !ok {
		return "", nil // the JSON handler fails the same way
	}
	return scrubRemoved(js)
}

// encodeJSON encodes v as the JSON handler does. A MarshalJSON that
// panics is an encoding that fails: the handler recovers from it, and so
// must the scrubbing that runs before it.
func encodeJSON(v any) (js string, ok bool) {
	defer func() {
		if recover() != nil {
			js, ok = "", false
		}
	}()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return "", false
	}
	return strings.TrimSuffix(buf.String(), "\n"), true
}

// textOf renders v as slog's text handler does.
func textOf(v any) (text string) {
	if tm, ok := v.(encoding.TextMarshaler); ok {
		defer func() {
			if r := recover(); r != nil {
				text = panicText(v, r)
			}
		}()
		data, err := tm.MarshalText()
		if err != nil {
			return fmt.Sprintf("!ERROR:%v", err)
		}
		return string(data)
	}
	// Like the text handler, byte slices (named ones too) print as text.
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
		return string(rv.Bytes())
	}
	return fmt.Sprintf("%+v", v)
}

// errorText returns err.Error(). The handlers recover from an Error that
// panics (most often on a nil pointer: a typed nil logged as an error),
// and so must the scrubbing that runs before them, or a log line would
// take the process down.
func errorText(err error) (text string) {
	defer func() {
		if r := recover(); r != nil {
			text = panicText(err, r)
		}
	}()
	return err.Error()
}

// panicText is what slog prints for a value whose method panicked with r.
func panicText(v, r any) string {
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && rv.IsNil() {
		return "<nil>"
	}
	return fmt.Sprintf("!PANIC: %v", r)
}

// composite reports whether v is a value the JSON handler walks into.
func composite(v any) bool {
	switch reflect.ValueOf(v).Kind() {
	case reflect.Struct, reflect.Pointer, reflect.Map, reflect.Slice, reflect.Array, reflect.Interface:
		return true
	}
	return false
}
