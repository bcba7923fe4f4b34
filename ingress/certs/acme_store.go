package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
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
	// holds the others off: autocert gives an issuance five minutes and
	// a renewal ten. A replica that dies mid-order costs the others that
	// wait at most this.
	issueLease = 10 * time.Minute
	// renewWait is how long a replica that reads a certificate due for
	// renewal waits for the lock before serving the certificate as it
	// is: another replica is renewing it, and it is still valid.
	renewWait = time.Second
)

// storeCache is autocert's cache in a Store shared by replicas. Its Get
// takes the issuance lock when what it read means that autocert will
// order (no certificate, or one due for renewal, or no account key), and
// reads again under it, so that a replica that waited finds what the
// other one stored instead of ordering again. The lock is held until Put
// stores the new value, or abandon gives it up when the order failed.
type storeCache struct {
	store  Store
	prefix string // keeps each ACME directory's state apart
	now    func() time.Time

	mu   sync.Mutex
	held map[string]heldLock
}

var _ autocert.Cache = (*storeCache)(nil)

type heldLock struct {
	release func()
	until   time.Time
}

// newStoreCache keeps the state of one ACME directory in store.
func newStoreCache(store Store, directory string, now func() time.Time) *storeCache {
	sum := sha256.Sum256([]byte(directory))
	return &storeCache{
		store:  store,
		prefix: "acme:" + hex.EncodeToString(sum[:4]) + ":",
		now:    now,
		held:   map[string]heldLock{},
	}
}

// Get returns the value autocert stored under key, or autocert.ErrCacheMiss.
func (c *storeCache) Get(ctx context.Context, key string) ([]byte, error) {
	data, err := c.load(ctx, key)
	if err != nil && !errors.Is(err, autocert.ErrCacheMiss) {
		return nil, err
	}
	if !ordersOnMiss(key) || (err == nil && !c.due(key, data)) || c.holds(key) {
		return data, err
	}
	lockCtx := ctx
	if err == nil {
		var cancel context.CancelFunc
		lockCtx, cancel = context.WithTimeout(ctx, renewWait)
		defer cancel()
	}
	release, lerr := c.store.Lock(lockCtx, c.prefix+key, issueLease)
	if lerr != nil {
		if err == nil {
			return data, nil // being renewed elsewhere; still valid
		}
		return nil, fmt.Errorf("ACME issuance lock for %q: %w", key, lerr)
	}
	data, err = c.load(ctx, key)
	if err == nil && !c.due(key, data) {
		release() // stored by the replica that held the lock
		return data, nil
	}
	if err != nil && !errors.Is(err, autocert.ErrCacheMiss) {
		release()
		return nil, err
	}
	c.mu.Lock()
	c.held[key] = heldLock{release: release, until: c.now().Add(issueLease)}
	c.mu.Unlock()
	return data, err
}

// Put stores data under key, and gives up the issuance lock of key.
func (c *storeCache) Put(ctx context.Context, key string, data []byte) error {
	err := c.store.StoreSecret(ctx, c.prefix+key, data)
	c.abandon(key)
	if err != nil {
		return fmt.Errorf("ACME cache: %w", err)
	}
	return nil
}

// Delete removes key.
func (c *storeCache) Delete(ctx context.Context, key string) error {
	if err := c.store.DeleteSecret(ctx, c.prefix+key); err != nil {
		return fmt.Errorf("ACME cache: %w", err)
	}
	return nil
}

// abandon gives up the issuance lock of key, if this replica holds it:
// the order failed, and another replica may try.
func (c *storeCache) abandon(key string) {
	c.mu.Lock()
	h, ok := c.held[key]
	delete(c.held, key)
	c.mu.Unlock()
	if ok {
		h.release()
	}
}

// holds says whether this replica holds the issuance lock of key:
// autocert reads the cache again before it orders (a renewal does), and
// must not wait for itself.
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

func (c *storeCache) load(ctx context.Context, key string) ([]byte, error) {
	data, err := c.store.LoadSecret(ctx, c.prefix+key)
	if errors.Is(err, sessions.ErrNotFound) {
		return nil, autocert.ErrCacheMiss
	} else if err != nil {
		return nil, fmt.Errorf("ACME cache: %w", err)
	}
	return data, nil
}

// due says whether the certificate stored under key is one that autocert
// renews now: its last third of life (at most 30 days) has begun, as
// autocert reckons without RenewBefore. A value that does not parse is
// due: autocert treats it as missing and orders anew.
func (c *storeCache) due(key string, data []byte) bool {
	if !isCertKey(key) {
		return false
	}
	leaf, err := leafOf(data)
	if err != nil {
		return true
	}
	threshold := min(leaf.NotAfter.Sub(leaf.NotBefore)/3, 30*24*time.Hour)
	return !c.now().Before(leaf.NotAfter.Add(-threshold))
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

// accountKey is autocert's name of the ACME account key.
const accountKey = "acme_account+key"

// ordersOnMiss says whether autocert, finding nothing under key, makes
// something the CA learns of: a certificate (key "host" or "host+rsa")
// or an account. Challenge answers ("+token", "+http-01") are per order.
func ordersOnMiss(key string) bool { return key == accountKey || isCertKey(key) }

func isCertKey(key string) bool {
	name, suffix, found := strings.Cut(key, "+")
	return name != "" && (!found || suffix == "rsa")
}
