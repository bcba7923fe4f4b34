// Package redisstore is the session store that several ioproxy replicas
// share: sessions, pending sign-ins, locks and secrets live in one Redis
// (or Valkey) server, sealed with the deployment's encryption keys.
//
// Every ingress request looks a session up, so each replica keeps the
// sessions it has seen in memory and answers lookups from there. A write
// (sign-in, refresh, sign-out) publishes the session's ref on a channel
// in the same atomic step, and every replica drops what it had cached
// for that id. While a replica's subscription is down (Redis out of
// reach, most likely) it serves what it has cached as it is and caches
// nothing new; it empties its cache when the subscription comes back, as
// it may have missed messages meanwhile.
//
// Session ids (the cookies), proxy keys and states are credentials, so
// Redis never holds them: it holds their refs, 128 bits of their SHA-256
// (see ref), in key names, set members and invalidations, so that a dump
// of Redis does not sign anyone in. The keys, under Config.Prefix (P):
//
//	P s:<ref>       hash: v (the sealed session), p (its proxy key's ref), a (its account's digest)
//	P p:<ref>       the session's ref, under the ref of its proxy key
//	P a:<digest>    sorted set: the session refs of one account on one host, by creation; it expires with the last
//	P all           sorted set: every session ref, by expiry
//	P q:<ref>       hash: v (the sealed pending sign-in), c, i (its client's and issuer's digests)
//	P qall          sorted set: every pending state's ref, by expiry
//	P qc:<digest>   sorted set: the pending refs of one client, by expiry
//	P qi:<digest>   sorted set: the pending refs of one issuer group, by expiry
//	P l:<digest>    a lock: the holder's random token, with the lease as its TTL
//	P k:<name>      a sealed secret
//	P invalidate    the channel of cache invalidations (session refs)
//
// Writes that touch several keys run as Lua scripts or WATCH/MULTI
// transactions, so that caps and counts hold across replicas. The scripts
// name keys they derive from the prefix, which Redis Cluster does not
// allow: use one Redis server, not a cluster. The store dials the one
// address of its URL; for failover that address must follow the primary.
package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/sealed"
)

// Config configures a Store.
type Config struct {
	// URL is the Redis server: redis://[user:password@]host:port/db, or
	// rediss:// for TLS, or unix:///path/to/socket.
	URL string
	// Prefix starts every key and the invalidation channel
	// (DefaultPrefix when empty). Replicas of one deployment share it;
	// deployments that share a Redis server need distinct ones.
	Prefix string
	// Keys seal every record (required): a shared store keeps the users'
	// tokens on another machine, and its dumps and replicas too.
	Keys *sealed.Keys
	// Options are the limits and the clock.
	Options sessions.Options
	// Logger receives the subscription's troubles (slog.Default when nil).
	Logger *slog.Logger
	// CacheMaxAge bounds how long a replica trusts a cached session
	// without asking Redis again (DefaultCacheMaxAge when 0): a bound on
	// staleness should an invalidation be lost, not the way they arrive.
	CacheMaxAge time.Duration
}

// DefaultPrefix is the key prefix when Config.Prefix is empty.
const DefaultPrefix = "ioproxy:"

// DefaultCacheMaxAge is Config.CacheMaxAge's default.
const DefaultCacheMaxAge = time.Minute

// Store is the Redis session store.
type Store struct {
	rdb      *redis.Client
	keys     keyspace
	seal     *sealed.Keys
	opts     sessions.Options
	log      *slog.Logger
	cache    *cache
	instance string // this Store's name in invalidations, to skip its own

	sub  *redis.PubSub
	stop context.CancelFunc
	done chan struct{}
}

var (
	_ sessions.Store   = (*Store)(nil)
	_ sessions.Checker = (*Store)(nil)
)

// Open connects to the Redis server of cfg.URL, checks that it answers,
// and starts listening for invalidations. Close releases it.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Keys == nil || cfg.Keys.Len() == 0 {
		return nil, errors.New("redis session store: no encryption keys; a shared store seals every record")
	}
	ropts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis session store: the url: %w", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CacheMaxAge <= 0 {
		cfg.CacheMaxAge = DefaultCacheMaxAge
	}
	// go-redis waits 5 s to connect and 3 s to read by default; a lookup
	// that misses the cache waits that long per request while Redis is
	// out of reach. The url may say otherwise (dial_timeout=…).
	if ropts.DialTimeout == 0 {
		ropts.DialTimeout = time.Second
	}
	if ropts.ReadTimeout == 0 {
		ropts.ReadTimeout = time.Second
	}
	if ropts.WriteTimeout == 0 {
		ropts.WriteTimeout = time.Second
	}
	opts := cfg.Options.WithDefaults()
	rdb := redis.NewClient(ropts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis session store: %s does not answer: %w", ropts.Addr, err)
	}
	if err := checkVersion(ctx, rdb); err != nil {
		_ = rdb.Close()
		return nil, err
	}
	listenCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s := &Store{
		rdb: rdb, keys: keyspace(cfg.Prefix), seal: cfg.Keys, opts: opts, log: cfg.Logger,
		cache:    newCache(opts.MaxSessions, cfg.CacheMaxAge),
		instance: sessions.NewToken(),
		stop:     stop, done: make(chan struct{}),
	}
	s.sub = rdb.Subscribe(listenCtx, s.keys.channel())
	go s.listen(listenCtx, s.sub)
	return s, nil
}

// Close stops listening and closes the connections.
func (s *Store) Close() error {
	s.stop()
	_ = s.sub.Close()
	<-s.done
	if err := s.rdb.Close(); err != nil {
		return fmt.Errorf("redis session store: close: %w", err)
	}
	return nil
}

// Check says whether Redis answers; see sessions.Checker.
func (s *Store) Check(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return storeError("ping", err)
	}
	return nil
}

// now is the store's clock.
func (s *Store) now() time.Time { return s.opts.Now() }

// keyspace names the keys under one prefix.
type keyspace string

func (k keyspace) session(ref string) string  { return string(k) + "s:" + ref }
func (k keyspace) proxy(ref string) string    { return string(k) + "p:" + ref }
func (k keyspace) account(hash string) string { return string(k) + "a:" + hash }
func (k keyspace) all() string                { return string(k) + "all" }
func (k keyspace) pending(ref string) string  { return string(k) + "q:" + ref }
func (k keyspace) pendingAll() string         { return string(k) + "qall" }
func (k keyspace) client(hash string) string  { return string(k) + "qc:" + hash }
func (k keyspace) issuer(hash string) string  { return string(k) + "qi:" + hash }
func (k keyspace) lock(name string) string    { return string(k) + "l:" + digest(name) }
func (k keyspace) secret(name string) string  { return string(k) + "k:" + name }
func (k keyspace) channel() string            { return string(k) + "invalidate" }

// ref is what Redis holds in place of a credential (a session id, a
// proxy key, a state): 128 bits of its SHA-256, which names it without
// giving it away. The credentials are 256 random bits, so refs do not
// collide.
func ref(credential string) string { return digest(credential) }

// digest names a set by a value that may be long or hold any byte (a DID
// and a host, a client address, an issuer): 128 bits of its SHA-256.
func digest(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:16])
}

// micros is t as a sorted-set score: microseconds fit a float64 exactly.
func micros(t time.Time) string { return strconv.FormatInt(t.UnixMicro(), 10) }

// expiryScore is a session's score in the all set: its expiry, or +inf
// for a session that does not expire.
func expiryScore(t time.Time) string {
	if t.IsZero() {
		return "+inf"
	}
	return micros(t)
}

// expireAtMillis is when Redis may drop a record that expires at t (""
// for never): a millisecond after, so that Redis keeps it as long as it
// is live, and not longer.
func expireAtMillis(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMilli()+1, 10)
}

// Record ids that seal the records, by ref: a value copied into another
// record does not open.
func sessionRecord(r string) string   { return "session:" + r }
func pendingRecord(r string) string   { return "pending:" + r }
func secretRecord(name string) string { return "secret:" + name }

// open opens a sealed value of the record named id.
func (s *Store) open(v []byte, id string) ([]byte, error) {
	plain, err := s.seal.Open(v, id)
	if err != nil {
		return nil, fmt.Errorf("open sealed record: %w", err)
	}
	return plain, nil
}

// decodeSession opens and decodes the stored session of ref r.
func (s *Store) decodeSession(v []byte, r string) (sessions.Session, error) {
	plain, err := s.open(v, sessionRecord(r))
	if err != nil {
		return sessions.Session{}, err
	}
	return sessions.DecodeSession(plain)
}

// encodeSession encodes and seals a session.
func (s *Store) encodeSession(sess *sessions.Session) ([]byte, error) {
	v, err := sessions.EncodeSession(sess)
	if err != nil {
		return nil, err
	}
	return s.seal.Seal(v, sessionRecord(ref(sess.ID))), nil
}

// storeError wraps an error from Redis with what the store was doing,
// and with sessions.ErrUnavailable when Redis could not be reached.
func storeError(what string, err error) error {
	if unreachable(err) {
		return fmt.Errorf("redis session store: %s: %w: %w", what, sessions.ErrUnavailable, err)
	}
	return fmt.Errorf("redis session store: %s: %w", what, err)
}

// unreachable reports whether err says Redis was out of reach (refused,
// timed out, cut off), as opposed to an answer it gave.
func unreachable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}
