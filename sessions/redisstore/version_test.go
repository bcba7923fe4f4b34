package redisstore

import (
	"strings"
	"testing"
)

func TestInfoField(t *testing.T) {
	info := "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n"
	for _, tc := range []struct{ name, want string }{
		{"redis_version", "7.0.15"},
		{"redis_git_sha1", "00000000"},
		{"redis_mode", ""},
	} {
		if got := infoField(info, tc.name); got != tc.want {
			t.Errorf("infoField(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestVersionError(t *testing.T) {
	for _, tc := range []struct{ v, want string }{
		{"7.0.15", ""},
		{"7.2.4", ""},
		{"8.0.0", ""},
		{"6.2.14", "needs Redis 7.0 or newer"},
		{"", "not a Redis version"},
		{"x.y", "not a Redis version"},
	} {
		err := versionError(tc.v)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("versionError(%q) = %v, want %q", tc.v, err, tc.want)
		}
	}
}
