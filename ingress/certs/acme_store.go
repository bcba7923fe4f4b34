package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme/autocert"

	"github.com/ioproxy/ioproxy/sessions"
)

// Store is where replicas keep their ACME state together: the account
// key, the certificates with their keys, and the answers to challenges,
// which the CA may ask of any replica. Its Lock lets one replica order a
// certificate while the others wait and then read it. sessions.Store is
// one.
type Store interface {
	// LoadSecret returns the value called name, or an error wrapping
	// sessions.ErrNotFound.
	LoadSecret(ctx context.Context, name string) ([]byte, error)
	// StoreSecret saves value under name, replacing any.
	StoreSecret(ctx context.Context, name string, value []byte) error
	// DeleteSecret removes name; a missing one is not an error.
	DeleteSecret(ctx context.Context, name string) error
	// Lock takes the lock called name for at most lease, waiting until
	// ctx ends; see sessions.Store.
	Lock(ctx context.Context, name string, lease time.Duration) (release func(), err error)
}

var _ Store = sessions.Store(nil)

const (
	// issueLease bounds how long a replica that orders a certificate
	// holds the others off, should it die mid-order: more than autocert
	// gives an issuance (five minutes), less than it gives a renewal
	// (ten), so that a renewal waiting for a dead holder still gets the
	// lock before it gives up.
	issueLease = 6 * time.Minute
	// tryLockWait is how long a handshake's read of the cache tries for
	// the issuance lock. autocert reads the cache holding a lock of its
	// own that every handshake needs, so the read must not wait for
	// another replica's order.
	tryLockWait = 200 * time.Millisecond
)

// errIssuingElsewhere: another replica holds the issuance lock of the
// certificate asked for; the handshake waits for it outside autocert
// (Manager.acmeCertificate) and asks again.
var errIssuingElsewhere = errors.New("another replica is ordering this certificate")

// errCacheUnavailable is what autocert gets when the store fails: autocert
// shows its errors to clients (in HTTP-01 answers), so the cause is
// logged here instead.
var errCacheUnavailable = errors.New("ACME cache unavailable")

// storeCache is autocert's cache in a Store shared by replicas.
//
// When a read means that autocert will order something (no certificate,
// one due for renewal or not valid now, no account key), the read takes
// the issuance lock and reads again under it, so that a replica that
// waited finds what the other stored instead of ordering again. The lock
// is held until Put stores the new value, or until the autocert call
// that read ends (its context), whichever comes first.
//
// Reads wait for the lock only where autocert holds none of its own
// locks: for the account key, and for a renewal (a certificate this
// replica already serves). A first read of a certificate, under
// autocert's state lock, only tries; when another replica orders, it
// returns errIssuingElsewhere.
type storeCache struct {
	store  Store
	prefix string // keeps each ACME directory's state apart
	now    func() time.Time
	log    *slog.Logger

	mu       sync.Mutex
	held     map[string]heldLock
	seq      uint64
	inMemory map[string]bool // certificates autocert serves from memory
}

var _ autocert.Cache = (*storeCache)(nil)

type heldLock struct {
	release func()
	seq     uint64
	until   time.Time
}

// newStoreCache keeps the state of one ACME directory in store.
func newStoreCache(store Store, directory string, now func() time.Time, log *slog.Logger) *storeCache {
	sum := sha256.Sum256([]byte(directory))
	return &storeCache{
		store:    store,
		prefix:   "acme:" + hex.EncodeToString(sum[:4]) + ":",
		now:      now,
		log:      log,
		held:     map[string]heldLock{},
		inMemory: map[string]bool{},
	}
}

// Get returns the value autocert stored under key, or autocert.ErrCacheMiss.
func (c *storeCache) Get(ctx context.Context, key string) ([]byte, error) {
	if !validKey(key) {
		return nil, autocert.ErrCacheMiss // not a name autocert makes: ask nobody
	}
	data, err := c.load(ctx, key)
	if err != nil && !errors.Is(err, autocert.ErrCacheMiss) {
		return nil, err
	}
	if err == nil && !c.due(key, data) {
		c.noteServed(key)
		return data, nil
	}
	if !ordersOnMiss(key) || c.holds(key) {
		return data, err
	}
	lockCtx, cancel := c.lockContext(ctx, key)
	defer cancel()
	release, lerr := c.store.Lock(lockCtx, c.prefix+key, issueLease)
	if lerr != nil {
		return c.lockBusy(ctx, key, data, err, lerr)
	}
	data, err = c.load(ctx, key)
	if err == nil && !c.due(key, data) {
		release() // stored by the replica that held the lock
		c.noteServed(key)
		return data, nil
	}
	if err != nil && !errors.Is(err, autocert.ErrCacheMiss) {
		release()
		return nil, err
	}
	c.hold(ctx, key, release)
	return data, err
}

// lockContext bounds the wait for key's issuance lock: a first read of a
// certificate only tries (autocert holds its state lock around it).
func (c *storeCache) lockContext(ctx context.Context, key string) (context.Context, context.CancelFunc) {
	c.mu.Lock()
	renewal := c.inMemory[key]
	c.mu.Unlock()
	if key == accountKey || renewal {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, tryLockWait)
}

// lockBusy answers a read whose issuance lock another replica holds (or
// that the store could not give).
func (c *storeCache) lockBusy(ctx context.Context, key string, data []byte, readErr, lockErr error) ([]byte, error) {
	if ctx.Err() == nil && !errors.Is(lockErr, context.DeadlineExceeded) {
		c.log.Warn("ACME issuance lock not taken", "key", key, "err", lockErr)
		return nil, errCacheUnavailable
	}
	if readErr == nil && c.validNow(data) {
		return data, nil // being renewed elsewhere; still valid
	}
	return nil, errIssuingElsewhere
}

// Put stores data under key, and gives up the issuance lock of key.
func (c *storeCache) Put(ctx context.Context, key string, data []byte) error {
	err := c.store.StoreSecret(ctx, c.prefix+key, data)
	c.unhold(key, 0)
	if err != nil {
		c.log.Warn("ACME cache write failed", "key", key, "err", err)
		return errCacheUnavailable
	}
	c.noteServed(key)
	return nil
}

// Delete removes key.
func (c *storeCache) Delete(ctx context.Context, key string) error {
	if err := c.store.DeleteSecret(ctx, c.prefix+key); err != nil {
		c.log.Warn("ACME cache delete failed", "key", key, "err", err)
		return errCacheUnavailable
	}
	return nil
}

// hold keeps key's issuance lock until Put, or until ctx (autocert's
// call that read) ends: an order that failed, or a renewal that did not
// order after all, frees it at once.
func (c *storeCache) hold(ctx context.Context, key string, release func()) {
	c.mu.Lock()
	c.seq++
	seq := c.seq
	c.held[key] = heldLock{release: release, seq: seq, until: c.now().Add(issueLease)}
	c.mu.Unlock()
	context.AfterFunc(ctx, func() { c.unhold(key, seq) })
}

// unhold releases key's issuance lock if this replica holds it (seq 0:
// whichever hold; else only that one).
func (c *storeCache) unhold(key string, seq uint64) {
	c.mu.Lock()
	h, ok := c.held[key]
	if ok && (seq == 0 || h.seq == seq) {
		delete(c.held, key)
	} else {
		ok = false
	}
	c.mu.Unlock()
	if ok {
		h.release()
	}
}

// holds says whether this replica holds the issuance lock of key: a
// second handshake for the same name while this replica orders must not
// wait for itself.
func (c *storeCache) holds(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.held[key]
	if ok && c.now().After(h.until) {
		delete(c.held, key) // lapsed: another replica may hold it now
		return false
	}
	return ok
}

// noteServed remembers a certificate that autocert now serves from
// memory: its next read is a renewal's.
func (c *storeCache) noteServed(key string) {
	if isCertKey(key) {
		c.mu.Lock()
		c.inMemory[key] = true
		c.mu.Unlock()
	}
}

func (c *storeCache) load(ctx context.Context, key string) ([]byte, error) {
	data, err := c.store.LoadSecret(ctx, c.prefix+key)
	if errors.Is(err, sessions.ErrNotFound) {
		return nil, autocert.ErrCacheMiss
	} else if err != nil {
		c.log.Warn("ACME cache read failed", "key", key, "err", err)
		return nil, errCacheUnavailable
	}
	return data, nil
}

// due says whether the certificate stored under key is one that autocert
// orders anew now: its last third of life (at most 30 days) has begun, as
// autocert reckons without RenewBefore, or it is not valid on this
// replica's clock, or it does not parse (autocert treats both as
// missing).
func (c *storeCache) due(key string, data []byte) bool {
	if !isCertKey(key) {
		return false
	}
	leaf, err := leafOf(data)
	if err != nil {
		return true
	}
	now := c.now()
	threshold := min(leaf.NotAfter.Sub(leaf.NotBefore)/3, 30*24*time.Hour)
	return now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter.Add(-threshold))
}

// validNow says whether a stored certificate may be served at this time.
func (c *storeCache) validNow(data []byte) bool {
	leaf, err := leafOf(data)
	now := c.now()
	return err == nil && !now.Before(leaf.NotBefore) && now.Before(leaf.NotAfter)
}

// leafOf parses the first certificate in autocert's format: the private
// key, then the chain, in PEM.
func leafOf(data []byte) (*x509.Certificate, error) {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil, errors.New("no certificate")
		}
		if b.Type == "CERTIFICATE" {
			return x509.ParseCertificate(b.Bytes)
		}
	}
}

const (
	// accountKey is autocert's name of the ACME account key.
	accountKey = "acme_account+key"
	// legacyAccountKey is the name older autocerts used, which it still
	// reads: never written by us, so never locked.
	legacyAccountKey = "acme_account.key"
	// maxKeyLen bounds a cache key: a host name (253) and a suffix, or
	// an HTTP-01 token, which the CA makes (43 characters at Let's
	// Encrypt) but anyone can send us in a challenge URL.
	maxKeyLen = 300
)

// ordersOnMiss says whether autocert, finding nothing under key, makes
// something the CA learns of: a certificate (key "host" or "host+rsa")
// or an account. Challenge answers ("+token", "+http-01") are per order.
func ordersOnMiss(key string) bool { return key == accountKey || isCertKey(key) }

func isCertKey(key string) bool {
	if key == legacyAccountKey {
		return false
	}
	name, suffix, found := strings.Cut(key, "+")
	return name != "" && (!found || suffix == "rsa")
}

// validKey says whether key is one autocert could have made: printable
// ASCII without the characters autocert's contract excludes, and short.
// An HTTP-01 token comes from the request path; a store is not asked for
// what no order wrote.
func validKey(key string) bool {
	if key == "" || len(key) > maxKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c <= ' ' || c >= 0x7f || strings.IndexByte(`\/:*?"<>|`, c) >= 0 {
			return false
		}
	}
	if tok, ok := strings.CutSuffix(key, "+http-01"); ok {
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false // not base64url, as ACME tokens are
			}
		}
	}
	return true
}
