package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/redis/go-redis/v9"
	"github.com/zclconf/go-cty/cty"

	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// Defaults of the sessions block.
const (
	DefaultMaxSessions   = 100000
	DefaultMaxPerAccount = 10
	DefaultKeyPrefix     = "ioproxy:"
)

// The session stores.
const (
	StoreBolt  = "bbolt"
	StoreRedis = "redis"
)

// redisSchemes are the URL schemes go-redis dials.
var redisSchemes = []string{"redis", "rediss", "unix"}

// sessions builds the sessions block: the store, its sealing, its limits.
func (b *builder) sessions(raw *sessionsSchema) Sessions {
	s := Sessions{Store: StoreBolt, KeyPrefix: DefaultKeyPrefix, MaxSessions: DefaultMaxSessions, MaxPerAccount: DefaultMaxPerAccount}
	if raw == nil {
		return s
	}
	b.sessionStore(raw, &s)
	s.EncryptionKey = b.encryptionKey(raw, s.Store)
	b.sessionLimits(raw, &s)
	return s
}

// sessionStore reads store, url and key_prefix.
func (b *builder) sessionStore(raw *sessionsSchema, s *Sessions) {
	if raw.Store != nil {
		switch st := strings.TrimSpace(*raw.Store); st {
		case StoreBolt, StoreRedis:
			s.Store = st
		default:
			b.errorf(raw.StoreRange, "Unknown session store", "%q is not a session store; write store = %q (one file in data_dir, the default) or store = %q (shared by several replicas).", st, StoreBolt, StoreRedis)
			return
		}
	}
	if s.Store != StoreRedis {
		for _, a := range []struct {
			set  bool
			rng  hcl.Range
			name string
		}{{raw.URL != nil, raw.URLRange, "url"}, {raw.KeyPrefix != nil, raw.KeyPrefixRange, "key_prefix"}} {
			if a.set {
				b.errorf(a.rng, a.name+" without store = \"redis\"", "%s is a setting of the Redis store; write store = %q in this block too, or remove %s.", a.name, StoreRedis, a.name)
			}
		}
		return
	}
	if raw.URL == nil {
		b.errorf(raw.DefRange, "Redis store without url", `store = "redis" needs the server: write url = env("IOPROXY_REDIS_URL") with a value such as redis://redis.service.consul:6379/0 (rediss:// for TLS).`)
	} else {
		s.URL = strings.TrimSpace(*raw.URL)
		if problem := redisURLProblem(s.URL); problem != "" {
			b.errorf(raw.URLRange, "Invalid Redis url", "%s; write a url such as redis://redis.service.consul:6379/0, redis://:PASSWORD@host:6379/0 or rediss://host:6380/0 (TLS).", problem)
		} else if host, plain := plainRedisHost(s.URL); plain {
			// A warning, not an error: plain redis:// inside a private
			// network (redis.service.consul in Nomad) is common and may be
			// what was meant.
			b.warnf(raw.URLRange, "Redis url without TLS", "redis:// to %q is not encrypted: the AUTH password and the sealed records cross the network in plain text, for anyone on the way to read. Write rediss:// in its place (TLS) if the server offers it; keep redis:// only on a network you trust.", host)
		}
	}
	if raw.KeyPrefix != nil {
		s.KeyPrefix = *raw.KeyPrefix
		if s.KeyPrefix == "" || strings.ContainsAny(s.KeyPrefix, " \t\r\n") {
			b.errorf(raw.KeyPrefixRange, "Invalid key_prefix", "key_prefix starts every Redis key of this deployment; write a word without spaces, such as key_prefix = %q, or leave it out for that default.", DefaultKeyPrefix)
		}
	}
}

// redisURLProblem says what is wrong with a Redis URL, or "". It never
// quotes the URL, which may hold a password.
func redisURLProblem(raw string) string {
	if raw == "" {
		return "the url is empty (an env() that is not set?)"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "the url does not parse"
	}
	ok := false
	for _, s := range redisSchemes {
		ok = ok || u.Scheme == s
	}
	switch {
	case !ok:
		return fmt.Sprintf("the url's scheme is %q, not redis, rediss or unix", u.Scheme)
	case u.Scheme == "unix" && u.Path == "":
		return "a unix url names a socket, as in unix:///run/redis/redis.sock"
	case u.Scheme != "unix" && u.Host == "":
		return "the url names no host"
	}
	// What serve refuses, validate must refuse too, so go-redis reads the
	// url here as well. Its errors quote parts of the url: given none of
	// the user and password, they cannot quote the password.
	bare := *u
	bare.User = nil
	opts, err := redis.ParseURL(bare.String())
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return "the url does not parse"
		}
		msg := strings.TrimPrefix(err.Error(), "redis: ")
		if pw, _ := u.User.Password(); pw != "" && strings.Contains(msg, pw) {
			msg = "its path or its options"
		}
		if u.Scheme == "unix" {
			return fmt.Sprintf("go-redis refuses the url (%s): the query holds only go-redis's options, such as ?db=0&dial_timeout=2s", msg)
		}
		return fmt.Sprintf("go-redis refuses the url (%s): the path is a database number such as /0, and the query holds only go-redis's options, such as ?dial_timeout=2s", msg)
	}
	if opts.DB < 0 {
		return "the database number is negative; Redis numbers its databases from 0"
	}
	return ""
}

// plainRedisHost reports whether a valid Redis url reaches its server over
// the network without TLS, and the host it reaches. Loopback addresses and
// unix sockets never leave the machine.
func plainRedisHost(raw string) (string, bool) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "redis" {
		return "", false
	}
	host := u.Hostname()
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return "", false
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return "", false
	}
	return host, true
}

// encryptionKey reads encryption_key: one key, or a list (the first
// seals, all open). Required with the Redis store.
func (b *builder) encryptionKey(raw *sessionsSchema, store string) *sealed.Keys {
	const how = "openssl rand -base64 32"
	var v cty.Value
	if raw.EncryptionKey != nil {
		// A mistake in the expression (envv(…)) must not read as "no
		// key", which would leave the store unsealed without a word.
		var diags hcl.Diagnostics
		if v, diags = raw.EncryptionKey.Value(evalContext(b.opts)); diags.HasErrors() {
			b.diags = append(b.diags, diags...)
			return nil
		}
	}
	if r := raw.EncryptionKey.Range(); v.IsNull() && r.Start.Byte != r.End.Byte {
		// Written, yet null (a template's null, a conditional): read as
		// absent, it would leave the store unsealed without a word. (An
		// attribute not written at all has an empty range.)
		b.errorf(r, "Null encryption_key", "encryption_key is null; write the key, such as encryption_key = env(\"IOPROXY_SESSION_KEY\") with 32 random bytes in base64 (`%s`) in that variable, or remove encryption_key to keep the store unsealed.", how)
		return nil
	}
	if !b.written(raw.EncryptionKey) {
		if store == StoreRedis {
			b.errorf(raw.DefRange, "Redis store without encryption_key", "A shared store keeps the users' tokens on another machine, so ioproxy seals them: write encryption_key = env(\"IOPROXY_SESSION_KEY\") and set that variable to 32 random bytes in base64 (`%s`), the same on every replica.", how)
		}
		return nil
	}
	// Nor may an empty list (a template that rendered no keys).
	if t := v.Type(); (t.IsListType() || t.IsTupleType()) && v.IsKnown() && v.LengthInt() == 0 {
		if store == StoreRedis {
			b.errorf(raw.EncryptionKey.Range(), "Empty encryption_key", "encryption_key is empty (a template that rendered no keys?), and a shared store seals every record: write encryption_key = env(\"IOPROXY_SESSION_KEY\") and set that variable to 32 random bytes in base64 (`%s`), the same on every replica.", how)
		} else {
			b.errorf(raw.EncryptionKey.Range(), "Empty encryption_key", "encryption_key is empty (a template that rendered no keys?), which would leave the store unsealed: write encryption_key = env(\"IOPROXY_SESSION_KEY\") and set that variable to 32 random bytes in base64 (`%s`), or remove encryption_key to keep the store unsealed.", how)
		}
		return nil
	}
	items := b.stringOrList(raw.EncryptionKey, "encryption_key")
	if items == nil {
		return nil
	}
	encoded := make([]string, len(items))
	empty := false
	for i, it := range items {
		encoded[i] = it.value
		// An empty key in a list is reported at its element, the one to
		// fix; a single key that is empty gets sealed's error below.
		if it.value == "" && v.Type() != cty.String {
			empty = true
			b.errorf(it.rng, "Empty encryption_key", "A key in encryption_key is empty (an env() that is not set?); give it 32 random bytes in base64 (`%s`), or take it out of the list.", how)
		}
	}
	if empty {
		return nil
	}
	keys, err := sealed.ParseKeys(encoded)
	if err != nil {
		b.errorf(raw.EncryptionKey.Range(), "Invalid encryption_key", "%v. Each key is 32 random bytes in base64 (`%s`); to rotate, write the new key first and keep the old one after it: encryption_key = [env(\"NEW_KEY\"), env(\"OLD_KEY\")].", err, how)
		return nil
	}
	return keys
}

// stringOrList evaluates an attribute that is one string or a list of
// strings.
func (b *builder) stringOrList(expr hcl.Expression, attr string) []listItem {
	v, diags := expr.Value(evalContext(b.opts))
	if diags.HasErrors() {
		b.diags = append(b.diags, diags...)
		return nil
	}
	if v.Type() == cty.String {
		return []listItem{{value: strings.TrimSpace(v.AsString()), rng: expr.Range()}}
	}
	return b.stringList(expr, attr)
}

// sessionLimits reads max_sessions and max_per_account.
func (b *builder) sessionLimits(raw *sessionsSchema, s *Sessions) {
	if raw.MaxSessions != nil {
		s.MaxSessions = b.limit(raw.MaxSessionsRange, "max_sessions", *raw.MaxSessions, DefaultMaxSessions,
			"how many sessions ioproxy stores at once, across all accounts")
		if s.MaxSessions < 1 {
			return
		}
	}
	if raw.MaxPerAccount == nil {
		// The default per-account limit never exceeds a smaller total
		// that was written: asking for both would be a chore, not a fix.
		s.MaxPerAccount = min(s.MaxPerAccount, s.MaxSessions)
		return
	}
	s.MaxPerAccount = *raw.MaxPerAccount
	switch {
	case s.MaxPerAccount < 1:
		b.errorf(raw.MaxPerAccountRange, "Invalid max_per_account", "%d is not a limit: max_per_account is how many sessions one account may hold at once (each sign-in from another browser is one). Write a number of at least 1, such as max_per_account = %d.", s.MaxPerAccount, DefaultMaxPerAccount)
	case s.MaxPerAccount > s.MaxSessions:
		b.errorf(raw.MaxPerAccountRange, "max_per_account over max_sessions", "One account may not hold more sessions (%d) than all accounts together (max_sessions = %d); write max_per_account = %d or less, or raise max_sessions.", s.MaxPerAccount, s.MaxSessions, s.MaxSessions)
	}
}
