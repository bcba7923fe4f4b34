package config

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

const testKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="

// redisBlock is a Redis sessions block with url on line 3 (its value at
// 3:9) and encryption_key on line 4 (its value at 4:20).
func redisBlock(url, key string) string {
	return fmt.Sprintf("sessions {\n  store = \"redis\"\n  url = %q\n  encryption_key = %s\n}", url, key)
}

// parseEnv parses src with env() reading env.
func parseEnv(t *testing.T, src string, env map[string]string) (*Config, hcl.Diagnostics) {
	t.Helper()
	return Parse([]byte(src), "test.hcl", Options{LookupEnv: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
}

func formatted(diags hcl.Diagnostics) string {
	var buf bytes.Buffer
	_ = WriteDiagnostics(&buf, diags)
	return buf.String()
}

// What serve would refuse, or what would leave a store unsealed without a
// word, is an error at the line to fix.
func TestSessionErrors(t *testing.T) {
	key := fmt.Sprintf("%q", testKey)
	tests := []struct {
		name, src string
		env       map[string]string
		pos, want string
	}{
		{name: "empty key list with redis", src: redisBlock("redis://127.0.0.1:6379/0", "[]"), pos: "4:20",
			want: "error: Empty encryption_key: encryption_key is empty (a template that rendered no keys?), and a shared store seals every record: write encryption_key = env(\"IOPROXY_SESSION_KEY\")"},
		{name: "empty key list with bbolt", src: "sessions {\n  encryption_key = []\n}", pos: "2:20",
			want: "error: Empty encryption_key: encryption_key is empty (a template that rendered no keys?), which would leave the store unsealed: write encryption_key = env(\"IOPROXY_SESSION_KEY\") and set that variable to 32 random bytes in base64 (`openssl rand -base64 32`), or remove encryption_key to keep the store unsealed."},
		{name: "empty key list on several lines", src: "sessions {\n  encryption_key = [\n  ]\n}", pos: "2:20",
			want: "encryption_key is empty (a template that rendered no keys?)"},
		{name: "null key", src: "sessions {\n  encryption_key = null\n}", pos: "2:20",
			want: "error: Null encryption_key: encryption_key is null; write the key"},
		{name: "null key from a conditional", src: redisBlock("redis://127.0.0.1:6379/0", "true ? null : \"x\""), pos: "4:20",
			want: "encryption_key is null"},
		{name: "empty string in a list", src: "sessions {\n  encryption_key = [\"\"]\n}", pos: "2:21",
			want: "error: Empty encryption_key: A key in encryption_key is empty (an env() that is not set?); give it 32 random bytes in base64 (`openssl rand -base64 32`), or take it out of the list."},
		{name: "blank string in a list", src: redisBlock("redis://127.0.0.1:6379/0", "[\" \"]"), pos: "4:21",
			want: "A key in encryption_key is empty"},
		{name: "unset env in a list", src: redisBlock("redis://127.0.0.1:6379/0", "[env(\"NEW\"), env(\"OLD\")]"), env: map[string]string{"NEW": testKey}, pos: "4:33",
			want: "A key in encryption_key is empty (an env() that is not set?)"},
		{name: "unset env as the one key", src: "sessions {\n  encryption_key = env(\"K\")\n}", pos: "2:20",
			want: "encryption key 1 is empty"},
		{name: "database not a number", src: redisBlock("redis://h:6379/x", key), pos: "3:9",
			want: "error: Invalid Redis url: go-redis refuses the url (invalid database number: \"x\"): the path is a database number such as /0, and the query holds only go-redis's options, such as ?dial_timeout=2s; write a url such as redis://redis.service.consul:6379/0"},
		{name: "unknown option", src: redisBlock("redis://h:6379/0?bogus=1", key), pos: "3:9",
			want: "go-redis refuses the url (unexpected option: bogus)"},
		{name: "db option not a number", src: redisBlock("rediss://h:6380/?db=one", key), pos: "3:9",
			want: "go-redis refuses the url (invalid database number: "},
		{name: "negative database", src: redisBlock("redis://h:6379/-1", key), pos: "3:9",
			want: "the database number is negative; Redis numbers its databases from 0"},
		{name: "two path segments", src: redisBlock("redis://h:6379/0/1", key), pos: "3:9",
			want: "go-redis refuses the url (invalid URL path: /0/1)"},
		{name: "bad duration", src: redisBlock("redis://h:6379/0?dial_timeout=soon", key), pos: "3:9",
			want: "go-redis refuses the url (invalid dial_timeout duration"},
		{name: "bad boolean", src: redisBlock("rediss://h:6380/0?skip_verify=maybe", key), pos: "3:9",
			want: "go-redis refuses the url (invalid skip_verify boolean"},
		{name: "unix socket with unknown option", src: redisBlock("unix:///run/redis/redis.sock?bogus=1", key), pos: "3:9",
			want: "go-redis refuses the url (unexpected option: bogus): the query holds only go-redis's options, such as ?db=0&dial_timeout=2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parseEnv(t, tt.src, tt.env)
			if !diags.HasErrors() || cfg != nil {
				t.Fatalf("config loaded; want an error containing %q; got:\n%s", tt.want, formatted(diags))
			}
			for _, d := range diags {
				if l := FormatDiagnostic(d); strings.HasPrefix(l, "test.hcl:"+tt.pos+": ") && strings.Contains(l, tt.want) {
					return
				}
			}
			t.Errorf("no diagnostic at test.hcl:%s containing %q; got:\n%s", tt.pos, tt.want, formatted(diags))
		})
	}
}

// redis:// beyond this machine loads, with a warning: inside a private
// network it is common and may be what was meant.
func TestSessionPlainRedisWarning(t *testing.T) {
	key := fmt.Sprintf("%q", testKey)
	for _, tt := range []struct{ url, host string }{
		{"redis://redis.service.consul:6379/0", "redis.service.consul"},
		{"redis://10.0.0.7:6379/0", "10.0.0.7"},
		{"redis://:pw@redis.internal/2", "redis.internal"},
		{"redis://[fd00::7]:6379/0", "fd00::7"},
		{"redis://localhost.example.com:6379/0", "localhost.example.com"},
		{"redis://128.0.0.1:6379/0", "128.0.0.1"},
	} {
		t.Run(tt.url, func(t *testing.T) {
			cfg, diags := parse(t, redisBlock(tt.url, key))
			if cfg == nil || diags.HasErrors() {
				t.Fatalf("does not load:\n%s", formatted(diags))
			}
			want := fmt.Sprintf("test.hcl:3:9: warning: Redis url without TLS: redis:// to %q is not encrypted: the AUTH password and the sealed records cross the network in plain text, for anyone on the way to read. Write rediss:// in its place (TLS) if the server offers it; keep redis:// only on a network you trust.\n", tt.host)
			if got := formatted(diags); got != want {
				t.Errorf("diagnostics:\n%s\nwant:\n%s", got, want)
			}
		})
	}
	// TLS, loopback and unix sockets load without a word.
	for _, url := range []string{
		"rediss://redis.service.consul:6380/0",
		"rediss://:pw@10.0.0.7:6380/0?skip_verify=false",
		"redis://127.0.0.1:6379/0",
		"redis://127.3.2.1:6379/15",
		"redis://[::1]:6379/0",
		"redis://localhost:6379/0",
		"redis://LocalHost./0",
		"redis://:pw@localhost/0?db=3&dial_timeout=2s&pool_size=20",
		"unix:///run/redis/redis.sock",
		"unix://:pw@/run/redis/redis.sock?db=2",
	} {
		if _, diags := parse(t, redisBlock(url, key)); len(diags) != 0 {
			t.Errorf("%s:\n%s", url, formatted(diags))
		}
	}
}

// No diagnostic of a Redis url quotes it or its password, whether the url
// is refused or warned about.
func TestSessionURLDiagnosticsHidePassword(t *testing.T) {
	const pw = "s3cretpw"
	key := fmt.Sprintf("%q", testKey)
	for _, url := range []string{
		"redis://:" + pw + "@h:6379/x",
		"redis://:" + pw + "@h:6379/0?bogus=1",
		"redis://user:" + pw + "@h:6379/0/1",
		"redis://:" + pw + "@h:6379/-1",
		"redis://:" + pw + "@h:6379/0?dial_timeout=" + pw,
		"redis://:" + pw + "@h:6379/" + pw,
		"redis://:" + pw + "@h:6379/0?" + pw + "=1",
		"rediss://:" + pw + "@h:6380/0?skip_verify=" + pw,
		"unix://:" + pw + "@/run/redis.sock?db=" + pw,
		"redis://:" + pw + "@redis.service.consul:6379/0",
		"redis://:" + pw + "@10.0.0.7:6379/0?pool_size=20",
	} {
		t.Run(url, func(t *testing.T) {
			_, diags := parse(t, redisBlock(url, key))
			if len(diags) == 0 {
				t.Fatal("no diagnostic")
			}
			out := formatted(diags)
			if strings.Contains(out, pw) || strings.Contains(out, url) {
				t.Errorf("a diagnostic quotes the url or its password:\n%s", out)
			}
		})
	}
}
