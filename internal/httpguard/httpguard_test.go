package httpguard

import (
	"net/http"
	"testing"
)

func TestUpgradeAllowed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   bool
	}{
		{"none", nil, true},
		{"websocket", []string{"websocket"}, true},
		{"WebSocket any case", []string{"WebSocket"}, true},
		{"websocket with spaces", []string{" websocket "}, true},
		{"h2c", []string{"h2c"}, false},
		{"H2C", []string{"H2C"}, false},
		{"websocket then h2c", []string{"websocket, h2c"}, false},
		{"h2c then websocket", []string{"h2c, websocket"}, false},
		{"two headers", []string{"websocket", "h2c"}, false},
		{"two websocket headers", []string{"websocket", "websocket"}, false},
		{"empty", []string{""}, false},
		{"TLS/1.0", []string{"TLS/1.0"}, false},
		{"websocket/13", []string{"websocket/13"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.values != nil {
				h["Upgrade"] = tc.values
			}
			if got := UpgradeAllowed(h); got != tc.want {
				t.Errorf("UpgradeAllowed(%q) = %v, want %v", tc.values, got, tc.want)
			}
		})
	}
}

func TestStripOverrides(t *testing.T) {
	h := http.Header{
		"X-Http-Method-Override": {"DELETE"},
		"x-http-method":          {"PUT"},
		"X_Method_Override":      {"PATCH"},
		"X-Original-Method":      {"DELETE"},
		"X-Original-Url":         {"/admin"},
		"X-Rewrite-Url":          {"/admin"},
		"X-Override-Url":         {"/admin"},
		"X-SCHEME":               {"https"},
		"Http2-Settings":         {"AAMAAABkAAQCAAAAAAIAAAAA"},
		"Content-Type":           {"application/json"},
		"X-Method":               {"kept: not a known override"},
	}
	StripOverrides(h)
	if len(h) != 2 || h.Get("Content-Type") == "" || h.Get("X-Method") == "" {
		t.Errorf("after StripOverrides: %v", h)
	}
}

func TestIsOverrideHTTP2Settings(t *testing.T) {
	for _, name := range []string{"Http2-Settings", "http2_settings", "HTTP2-SETTINGS"} {
		if !IsOverride(name) {
			t.Errorf("IsOverride(%q) = false", name)
		}
	}
	if IsOverride("Accept") {
		t.Error(`IsOverride("Accept") = true`)
	}
}

func TestHostAllowed(t *testing.T) {
	names := map[string]bool{"ioproxy.service.consul": true}
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"127.0.0.1:9901", true},
		{"127.0.0.1", true},
		{"[::1]:7000", true},
		{"::1", true},
		{"10.0.0.5:4848", true},
		{"localhost:9901", true},
		{"LOCALHOST", true},
		{"localhost.", true},
		{"app.localhost:7000", true},
		{"ioproxy.service.consul:4848", true},
		{"IOPROXY.service.consul.", true},
		{"", true},
		{"evil.example:9901", false},
		{"127.0.0.1.nip.io:9901", false},
		{"localhost.evil.example", false},
		{"evillocalhost", false},
		{"service.consul", false},
		{"0x7f000001", false},
		{"2130706433", false},
	} {
		if got := HostAllowed(tc.host, names); got != tc.want {
			t.Errorf("HostAllowed(%q) = %v, want %v", tc.host, got, tc.want)
		}
	}
}
