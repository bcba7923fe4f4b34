package redact

import (
	"bytes"
	"context"
	"encoding"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
)

// handler scrubs records on their way to next.
type handler struct {
	next slog.Handler
}

// NewHandler returns a handler that passes every record to next with
// [String] applied to its message, to every string attribute, inside groups
// and to attributes added with WithAttrs. Other values (error, fmt.Stringer,
// structs, …) are formatted first, as the text handler prints them, and for
// values the JSON handler encodes on its own also as JSON; when either
// text has something to scrub, the attribute becomes the scrubbed text,
// under the same key. A string or other value under a key that names a
// secret (as for key=value text: "access_token", "password", …) becomes
// "[redacted]" whole. LogValuers are resolved first. Keys and group names
// are kept, and a record with nothing to scrub is passed on as it is,
// without allocating.
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
		if s, changed := scrubAny(v.Any()); changed {
			return slog.StringValue(s), true
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

// scrubAny scrubs what the text and JSON handlers would print for v, and
// returns the scrubbed text when either printed something to scrub.
func scrubAny(v any) (string, bool) {
	_, jm := v.(json.Marshaler)
	_, tm := v.(encoding.TextMarshaler)
	_, fm := v.(fmt.Formatter)
	if err, ok := v.(error); ok && !jm && !tm && !fm {
		// Both handlers print just Error() for a plain error.
		return scrub(err.Error())
	}
	text := textOf(v)
	if s, changed := scrub(text); changed {
		return s, true
	}
	if _, isErr := v.(error); isErr && !jm {
		return text, false // the JSON handler prints Error() too
	}
	if !composite(v) && !jm {
		return text, false // JSON of a scalar shows nothing the text did not
	}
	// The JSON handler encodes v itself, which can show what the text did
	// not: fields behind pointers, fields a String method leaves out.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return text, false // the JSON handler fails the same way
	}
	if _, changed := scrub(buf.String()); changed {
		return String(text), true
	}
	return text, false
}

// textOf renders v as slog's text handler does.
func textOf(v any) string {
	if tm, ok := v.(encoding.TextMarshaler); ok {
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

// composite reports whether v is a value the JSON handler walks into.
func composite(v any) bool {
	switch reflect.ValueOf(v).Kind() {
	case reflect.Struct, reflect.Pointer, reflect.Map, reflect.Slice, reflect.Array, reflect.Interface:
		return true
	}
	return false
}
