package redact

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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

// session has the shape of sessions.Session: ID is the cookie value,
// ProxyKey the Proxy-Session key, DPoPKey a private JWK.
type session struct {
	ID           string          `json:"id"`
	ProxyKey     string          `json:"proxy_key"`
	Host         string          `json:"host"`
	DID          string          `json:"did"`
	ClientID     string          `json:"client_id"`
	AccessToken  string          `json:"access_token"`
	RefreshToken string          `json:"refresh_token"`
	TokenExpiry  time.Time       `json:"token_expiry"`
	DPoPKey      json.RawMessage `json:"dpop_key"`
}

// Every secret below holds "SECRET", which TestHandler looks for.
func newSession() session {
	return session{
		ID:           "c00kieVALUESECRETc00kieVALUEc00kieVALUEc00k",
		ProxyKey:     "pr0xyKEYSECRETpr0xyKEYpr0xyKEYpr0xyKEYpr0xy",
		Host:         "statusphere",
		DID:          "did:plc:abc",
		ClientID:     "https://statusphere.example/@/client-metadata.json",
		AccessToken:  "opaque-access-SECRET",
		RefreshToken: "ref-5ecret-SECRET",
		TokenExpiry:  time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		DPoPKey:      json.RawMessage(`{"kty":"EC","crv":"P-256","d":"SECRETd"}`),
	}
}

func newHeader() http.Header {
	return http.Header{
		"Accept":        {"*/*"},
		"User-Agent":    {"ioproxy-test"},
		"Cookie":        {"__Host-ioproxy=c00kieVALUESECRET; theme=dark"},
		"Set-Cookie":    {"__Host-ioproxy=c00kieVALUESECRET; Path=/; HttpOnly"},
		"Proxy-Session": {"pr0xyKEYSECRET"},
		"Authorization": {"DPoP SECRETTOKEN"},
	}
}

// grantJSON shows its refresh token only in its JSON form, under a name
// the text form does not use.
type grantJSON struct{ refresh string }

func (g grantJSON) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"refresh_token": g.refresh})
}

// grantBoth needs scrubbing in both forms, and names its token so that
// only the JSON form's name is known for a secret one.
type grantBoth struct {
	tok  string
	next string
}

func (g grantBoth) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{"refresh_token": g.tok})
}

// textErr is an error whose text form (MarshalText) is clean, while the
// JSON handler prints its Error().
type textErr struct{}

func (textErr) Error() string                { return "get " + secretURL }
func (textErr) MarshalText() ([]byte, error) { return []byte("textErr"), nil }

// panicky's methods panic, as the handlers allow.
type panicky struct{ Token string }

func (panicky) MarshalText() ([]byte, error) { panic("MarshalText") }
func (panicky) MarshalJSON() ([]byte, error) { panic("MarshalJSON") }

// anyValuer is a LogValuer that returns any value.
type anyValuer struct{ v any }

func (a anyValuer) LogValue() slog.Value { return slog.AnyValue(a.v) }

type upstream struct {
	Name string
	URL  *url.URL
	Next *upstream
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

		// Credentials in structs and headers; ordinary fields stay.
		{"session", func(l *slog.Logger) { l.Info("session", "sess", newSession()) },
			[]string{"statusphere", "did:plc:abc", "client-metadata.json", "2026-12-01", "[redacted]"}},
		{"session pointer", func(l *slog.Logger) { s := newSession(); l.Info("session", "sess", &s) },
			[]string{"statusphere", "did:plc:abc"}},
		{"sessions in a slice and a map", func(l *slog.Logger) {
			l.Info("m", "list", []session{newSession()}, "byHost", map[string]any{"statusphere": newSession(), "n": 2})
		}, []string{"statusphere", "did:plc:abc"}},
		{"header", func(l *slog.Logger) { l.Info("request", "headers", newHeader()) },
			[]string{"Accept", "*/*", "ioproxy-test", "Cookie", "Proxy-Session", "[redacted]"}},
		{"request", func(l *slog.Logger) {
			r := httptest.NewRequest(http.MethodGet, secretURL, nil)
			r.Header = newHeader()
			l.Info("request", "method", r.Method, "url", r.URL, "headers", r.Header)
		}, []string{"GET", "listRecords?…", "*/*"}},
		{"url in a struct", func(l *slog.Logger) {
			l.Info("m", "up", upstream{Name: "pds", Next: &upstream{Name: "next", URL: u}})
		}, []string{"pds"}},
		{"camel case and header keys", func(l *slog.Logger) {
			l.Info("m", "accessToken", "SECRET", "RefreshToken", "SECRET", "dpop_key", "SECRET", "Proxy-Session", "SECRET",
				"sessionId", "SECRET", "Cookie", "SECRET", "clientSecret", "SECRET", "codeVerifier", "SECRET", "did", "did:plc:abc")
		}, []string{"[redacted]", "did:plc:abc"}},
		{"go fields in message", func(l *slog.Logger) { l.Info("grant: RefreshToken:SECRET AccessToken:SECRET") },
			[]string{"RefreshToken:[redacted]"}},
		{"header map in message", func(l *slog.Logger) { l.Info(fmt.Sprint(newHeader())) },
			[]string{"Cookie:[[redacted]]", "Accept:[*/*]"}},
		{"secret only in json", func(l *slog.Logger) { l.Info("m", "grant", grantJSON{"ref-SECRET"}) },
			[]string{"refresh_token", "[redacted]"}},
		{"secret named differently in each form", func(l *slog.Logger) {
			l.Info("m", "grant", grantBoth{tok: "ref-5ecret-SECRET", next: secretURL})
		}, []string{"listRecords?…", "[redacted]"}},
		{"error with a clean text form", func(l *slog.Logger) { l.Info("m", "err", textErr{}) },
			[]string{"listRecords?…"}},
		{"nil error pointer", func(l *slog.Logger) { l.Info("m", "err", (*url.Error)(nil), "status", 502) },
			[]string{"<nil>", "502"}},
		{"panicking methods", func(l *slog.Logger) { l.Info("m", "t", panicky{}, "status", 502) },
			[]string{"PANIC", "502"}},
		{"log valuer of a session", func(l *slog.Logger) { l.Info("m", "sess", anyValuer{newSession()}) },
			[]string{"statusphere"}},
		{"with session and header", func(l *slog.Logger) {
			l.With("sess", newSession(), "headers", newHeader()).Info("m")
		}, []string{"statusphere", "*/*"}},
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
		slog.Any("sess", newSession()),
		slog.Any("headers", newHeader()),
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
	sess, _ := req["sess"].(map[string]any)
	if sess["id"] != mark || sess["proxy_key"] != mark || sess["refresh_token"] != mark || sess["dpop_key"] != nil ||
		sess["host"] != "statusphere" || sess["did"] != "did:plc:abc" || sess["token_expiry"] != "2026-12-01T10:00:00Z" {
		t.Errorf("req.sess = %v, want an object with the credentials masked", req["sess"])
	}
	headers, _ := req["headers"].(map[string]any)
	if fmt.Sprint(headers["Accept"]) != "[*/*]" || fmt.Sprint(headers["Cookie"]) != "["+mark+"]" || fmt.Sprint(headers["Authorization"]) != "["+mark+"]" {
		t.Errorf("req.headers = %v, want an object with the credentials masked", req["headers"])
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
