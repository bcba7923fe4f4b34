package config

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/hashicorp/hcl/v2"
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
	return ""
}

// encryptionKey reads encryption_key: one key, or a list (the first
// seals, all open). Required with the Redis store.
func (b *builder) encryptionKey(raw *sessionsSchema, store string) *sealed.Keys {
	const how = "openssl rand -base64 32"
	if raw.EncryptionKey != nil {
		// A mistake in the expression (envv(…)) must not read as "no
		// key", which would leave the store unsealed without a word.
		if _, diags := raw.EncryptionKey.Value(evalContext(b.opts)); diags.HasErrors() {
			b.diags = append(b.diags, diags...)
			return nil
		}
	}
	if !b.written(raw.EncryptionKey) {
		if store == StoreRedis {
			b.errorf(raw.DefRange, "Redis store without encryption_key", "A shared store keeps the users' tokens on another machine, so ioproxy seals them: write encryption_key = env(\"IOPROXY_SESSION_KEY\") and set that variable to 32 random bytes in base64 (`%s`), the same on every replica.", how)
		}
		return nil
	}
	items := b.stringOrList(raw.EncryptionKey, "encryption_key")
	if items == nil {
		return nil
	}
	encoded := make([]string, len(items))
	for i, it := range items {
		encoded[i] = it.value
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
