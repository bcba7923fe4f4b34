package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/config"
)

// closedPortURL returns a URL on 127.0.0.1 at a port nothing listens on.
func closedPortURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr
}

// TestNewLoggerRedacts logs the error of a real failed call, a *url.Error
// holding the full URL, and checks that no line carries its query or a
// token, in both formats.
func TestNewLoggerRedacts(t *testing.T) {
	base := closedPortURL(t)
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(base + "/xrpc/com.atproto.repo.listRecords?repo=did:plc:alice&cursor=SECRET&access_token=SECRET2")
	if err == nil {
		resp.Body.Close()
		t.Fatal("GET on a closed port succeeded")
	}
	var urlErr *url.Error
	if !errors.As(err, &urlErr) || !strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("err = %#v, want a *url.Error that shows the query", err)
	}

	tests := []struct {
		name string
		log  func(l *slog.Logger)
		want []string
	}{
		{"url error", func(l *slog.Logger) { l.Warn("PDS call failed", "call", "atproto", "err", err) },
			[]string{"PDS call failed", "/xrpc/com.atproto.repo.listRecords?…", "connection refused"}},
		{"wrapped", func(l *slog.Logger) { l.Warn("PDS call failed", "err", fmt.Errorf("list records: %w", err)) },
			[]string{"list records: Get"}},
		{"message", func(l *slog.Logger) { l.Error(err.Error()) },
			[]string{"listRecords?…"}},
		{"group and with", func(l *slog.Logger) {
			l.With("did", "did:plc:alice").WithGroup("oauth").Info("token refresh failed",
				slog.Group("token", slog.String("body", "grant_type=refresh_token&refresh_token=SECRET3")),
				"header", "Authorization: DPoP eyJhbGciOiJFUzI1NiJ9.eyJTRUNSRVQ0IjoxfQ.c2ln")
		}, []string{"did:plc:alice", "refresh_token=[redacted]", "DPoP [redacted]"}},
	}
	for _, format := range []string{"text", "json"} {
		for _, tt := range tests {
			t.Run(format+"/"+tt.name, func(t *testing.T) {
				var buf bytes.Buffer
				tt.log(NewLogger(&buf, config.Log{Level: slog.LevelInfo, Format: format}))
				out := buf.String()
				for _, secret := range []string{"SECRET", "eyJTRUNSRVQ0IjoxfQ"} {
					if strings.Contains(out, secret) {
						t.Errorf("log holds %q:\n%s", secret, out)
					}
				}
				for _, w := range tt.want {
					if !strings.Contains(out, w) {
						t.Errorf("log lacks %q:\n%s", w, out)
					}
				}
				if format == "json" && !json.Valid([]byte(out)) {
					t.Errorf("not JSON:\n%s", out)
				}
			})
		}
	}
}
