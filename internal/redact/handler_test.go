package redact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"
)

const secretURL = "https://pds.example/xrpc/com.atproto.repo.listRecords?repo=did:plc:abc&cursor=SECRET"

// token is a Stringer that prints a URL with a query.
type token struct{ u string }

func (t token) String() string { return t.u }

// lazy is a LogValuer.
type lazy struct{ s string }

func (l lazy) LogValue() slog.Value { return slog.StringValue(l.s) }

type inner struct{ Next string }

type payload struct {
	Name  string
	Inner *inner // text prints its address, JSON its fields
}

func newLoggers(buf *bytes.Buffer) map[string]*slog.Logger {
	return map[string]*slog.Logger{
		"text": slog.New(NewHandler(slog.NewTextHandler(buf, nil))),
		"json": slog.New(NewHandler(slog.NewJSONHandler(buf, nil))),
	}
}

func TestHandler(t *testing.T) {
	u, err := url.Parse(secretURL)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		log  func(l *slog.Logger)
		want []string // in both formats
	}{
		{"message", func(l *slog.Logger) { l.Info("fetch " + secretURL + " failed") },
			[]string{"listRecords?…"}},
		{"string attr", func(l *slog.Logger) { l.Info("m", "url", secretURL) },
			[]string{"url", "listRecords?…"}},
		{"error attr", func(l *slog.Logger) {
			l.Warn("PDS call failed", "err", fmt.Errorf("list records: %w", &url.Error{Op: "Get", URL: secretURL, Err: errors.New("EOF")}))
		}, []string{"list records: Get", "listRecords?…", "EOF"}},
		{"stringer", func(l *slog.Logger) { l.Info("m", "t", token{secretURL}) },
			[]string{"listRecords?…"}},
		{"url value", func(l *slog.Logger) { l.Info("m", "u", u) },
			[]string{"listRecords?…"}},
		{"struct", func(l *slog.Logger) {
			l.Info("m", slog.Any("p", payload{Name: "alice.test", Inner: &inner{Next: secretURL}}))
		}, []string{"alice.test"}},
		{"bytes", func(l *slog.Logger) { l.Info("m", "body", []byte(`{"refresh_token":"SECRET"}`)) },
			[]string{"[redacted]"}},
		{"log valuer", func(l *slog.Logger) { l.Info("m", "v", lazy{"Bearer SECRETTOKEN"}) },
			[]string{"Bearer [redacted]"}},
		{"secret key", func(l *slog.Logger) { l.Info("m", "access_token", "SECRET", "code", 502) },
			[]string{"access_token", "[redacted]", "502"}},
		{"nested groups", func(l *slog.Logger) {
			l.Info("m", slog.Group("call", slog.String("did", "did:plc:abc"),
				slog.Group("upstream", slog.String("url", secretURL), slog.Int("status", 502))))
		}, []string{"did:plc:abc", "listRecords?…", "502"}},
		{"with attrs", func(l *slog.Logger) {
			l.With("url", secretURL, "err", errors.New("Authorization: DPoP SECRET")).Info("m", "status", 401)
		}, []string{"listRecords?…", "Authorization: DPoP [redacted]", "401"}},
		{"with group", func(l *slog.Logger) {
			l.WithGroup("g").With("url", secretURL).WithGroup("h").Info("m", "code", "SECRET")
		}, []string{"listRecords?…", "[redacted]"}},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		for format, l := range newLoggers(&buf) {
			t.Run(tt.name+"/"+format, func(t *testing.T) {
				buf.Reset()
				tt.log(l)
				out := buf.String()
				if strings.Contains(out, "SECRET") {
					t.Errorf("log holds a secret:\n%s", out)
				}
				for _, w := range tt.want {
					if !strings.Contains(out, w) {
						t.Errorf("log lacks %q:\n%s", w, out)
					}
				}
				if format == "json" && !json.Valid(bytes.TrimSpace(buf.Bytes())) {
					t.Errorf("invalid JSON:\n%s", out)
				}
			})
		}
	}
}

// TestHandlerKeepsStructure checks that groups stay groups and that clean
// values keep their types (a struct stays a JSON object).
func TestHandlerKeepsStructure(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil)))
	l.WithGroup("req").With("host", "statusphere").Info("request",
		slog.Group("call", slog.String("url", secretURL), slog.Int("status", 200)),
		slog.Any("p", payload{Name: "alice.test"}),
		slog.Duration("duration", 15*time.Millisecond),
	)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	req, _ := got["req"].(map[string]any)
	call, _ := req["call"].(map[string]any)
	p, _ := req["p"].(map[string]any)
	switch {
	case req["host"] != "statusphere":
		t.Errorf("req.host = %v", req["host"])
	case call["url"] != "https://pds.example/xrpc/com.atproto.repo.listRecords?…" || call["status"] != float64(200):
		t.Errorf("req.call = %v", call)
	case p["Name"] != "alice.test":
		t.Errorf("req.p = %v, want the struct as an object", req["p"])
	case req["duration"] != float64(15*time.Millisecond):
		t.Errorf("req.duration = %v", req["duration"])
	}
}

// recorder keeps the records it is given.
type recorder struct {
	records []slog.Record
	level   slog.Level
}

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= r.level }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.records = append(r.records, rec)
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

func TestHandlerPassesCleanRecords(t *testing.T) {
	next := &recorder{level: slog.LevelInfo}
	h := NewHandler(next)
	if h.Enabled(context.Background(), slog.LevelDebug) || !h.Enabled(context.Background(), slog.LevelWarn) {
		t.Error("Enabled does not follow the next handler")
	}
	if NewHandler(h) != h {
		t.Error("NewHandler wraps a redacting handler twice")
	}
	rec := accessRecord("/xrpc/com.atproto.repo.getRecord")
	if err := h.Handle(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	got := next.records[0]
	if got.Message != rec.Message || got.NumAttrs() != rec.NumAttrs() || !got.Time.Equal(rec.Time) || got.PC != rec.PC {
		t.Errorf("clean record changed: %v", got)
	}
	if allocs := testing.AllocsPerRun(100, func() {
		_ = NewHandler(slog.DiscardHandler).Handle(context.Background(), rec)
	}); allocs != 0 {
		t.Errorf("a clean record costs %v allocations", allocs)
	}

	next.records = nil
	dirty := accessRecord("/xrpc/com.atproto.repo.listRecords")
	dirty.AddAttrs(slog.String("url", secretURL))
	if err := h.Handle(context.Background(), dirty); err != nil {
		t.Fatal(err)
	}
	got = next.records[0]
	var keys []string
	got.Attrs(func(a slog.Attr) bool {
		keys = append(keys, a.Key)
		if a.Key == "url" && a.Value.String() != String(secretURL) {
			t.Errorf("url = %q", a.Value.String())
		}
		return true
	})
	if want := "kind host operation method path status duration upstream did remote url"; strings.Join(keys, " ") != want {
		t.Errorf("keys = %v, want %s (in order)", keys, want)
	}
}

// accessRecord is a record like the access log's, with ten attributes.
func accessRecord(path string) slog.Record {
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.String("kind", "call"),
		slog.String("host", "statusphere"),
		slog.String("operation", "ListRecords"),
		slog.String("method", "GET"),
		slog.String("path", path),
		slog.Int("status", 200),
		slog.Duration("duration", 15*time.Millisecond),
		slog.String("upstream", "https://pds.example"+path),
		slog.String("did", "did:plc:ewvi7nxzyoun6zhxrhs64oiz"),
		slog.String("remote", "203.0.113.7:4711"),
	)
	return r
}

// BenchmarkHandler is the cost per access-log record: "bare" is the text
// handler alone, "clean" the same record through the redacting handler,
// "dirty" one whose upstream holds a query.
func BenchmarkHandler(b *testing.B) {
	clean := accessRecord("/xrpc/com.atproto.repo.getRecord")
	dirty := slog.NewRecord(clean.Time, clean.Level, clean.Message, 0)
	clean.Attrs(func(a slog.Attr) bool {
		if a.Key == "upstream" {
			a = slog.String("upstream", secretURL)
		}
		dirty.AddAttrs(a)
		return true
	})
	for _, format := range []string{"text", "json"} {
		var next slog.Handler = slog.NewTextHandler(io.Discard, nil)
		if format == "json" {
			next = slog.NewJSONHandler(io.Discard, nil)
		}
		tests := []struct {
			name string
			h    slog.Handler
			rec  slog.Record
		}{
			{"bare", next, clean},
			{"clean", NewHandler(next), clean},
			{"dirty", NewHandler(next), dirty},
		}
		for _, tt := range tests {
			b.Run(format+"/"+tt.name, func(b *testing.B) {
				b.ReportAllocs()
				ctx := context.Background()
				for b.Loop() {
					if err := tt.h.Handle(ctx, tt.rec); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
	b.Run("scrub only/clean", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = NewHandler(slog.DiscardHandler).Handle(context.Background(), clean)
		}
	})
}
