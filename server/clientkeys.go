package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ioproxy/ioproxy/atproto/oauth"
	"github.com/ioproxy/ioproxy/internal/every"
	"github.com/ioproxy/ioproxy/sessions"
)

const (
	// ClientKeySecret names the confidential OAuth client's first key
	// among the store's secrets: made at the first start, and the whole
	// key set until a rotation.
	ClientKeySecret = "oauth-client-es256"
	// ClientKeyRingSecret names the key ring that a rotation stores: the
	// keys with their times. Once there, it is the key set.
	ClientKeyRingSecret = "oauth-client-keyring"
	// clientKeysLock serializes rotations, which read, change and store
	// the ring.
	clientKeysLock = "oauth-client-keys"
	// DefaultKeyRefresh is how often a running server reads the key ring
	// again, to publish a rotation stored elsewhere.
	DefaultKeyRefresh = time.Minute
)

// Secrets are the names of every secret ioproxy keeps in its store: what
// a move to another store must take along.
var Secrets = []string{ClientKeySecret, ClientKeyRingSecret}

// LoadClientKeys returns the confidential client's key ring from store:
// the stored ring of a rotation, or else the one key, made at the first
// start (the key published at /@/jwks.json must survive restarts, or
// servers that cached it refuse every sign-in).
func LoadClientKeys(ctx context.Context, store sessions.Store) (*oauth.KeyRing, error) {
	ring, err := loadStoredKeys(ctx, store)
	if !errors.Is(err, errNoStoredKeys) {
		return ring, err
	}
	raw, err := store.Secret(ctx, ClientKeySecret, oauth.GenerateClientKey)
	if err != nil {
		return nil, fmt.Errorf("load the OAuth client key: %w", err)
	}
	key, err := oauth.ParseClientKey(raw)
	if err != nil {
		return nil, fmt.Errorf("the stored OAuth client key (secret %s): %w", ClientKeySecret, err)
	}
	return oauth.NewKeyRing(key), nil
}

// errNoStoredKeys: the store holds no client key at all.
var errNoStoredKeys = errors.New("the store holds no OAuth client key")

// loadStoredKeys reads the client keys the store holds, making none.
func loadStoredKeys(ctx context.Context, store sessions.Store) (*oauth.KeyRing, error) {
	raw, err := store.LoadSecret(ctx, ClientKeyRingSecret)
	if err == nil {
		ring, err := oauth.ParseKeyRing(raw)
		if err != nil {
			return nil, fmt.Errorf("the stored OAuth client key ring (secret %s) is damaged: %w; restore it from a backup, or delete it to go back to the first key (%s)",
				ClientKeyRingSecret, err, ClientKeySecret)
		}
		return ring, nil
	} else if !errors.Is(err, sessions.ErrNotFound) {
		return nil, fmt.Errorf("load the OAuth client key ring: %w", err)
	}
	raw, err = store.LoadSecret(ctx, ClientKeySecret)
	if errors.Is(err, sessions.ErrNotFound) {
		return nil, errNoStoredKeys
	} else if err != nil {
		return nil, fmt.Errorf("load the OAuth client key: %w", err)
	}
	key, err := oauth.ParseClientKey(raw)
	if err != nil {
		return nil, fmt.Errorf("the stored OAuth client key (secret %s): %w", ClientKeySecret, err)
	}
	return oauth.NewKeyRing(key), nil
}

// RotateClientKey stores a rotation of the client key ring (see
// oauth.KeyRing.Rotate): the next key is published as soon as servers
// read the ring, and signs from now+signAfter.
func RotateClientKey(ctx context.Context, store sessions.Store, now time.Time, signAfter, dropAfter time.Duration) (*oauth.KeyRing, error) {
	release, err := store.Lock(ctx, clientKeysLock, 30*time.Second)
	if err != nil {
		return nil, fmt.Errorf("rotate the OAuth client key: %w", err)
	}
	defer release()
	ring, err := LoadClientKeys(ctx, store)
	if err != nil {
		return nil, err
	}
	next, err := ring.Rotate(now, signAfter, dropAfter)
	if err != nil {
		return nil, err
	}
	raw, err := oauth.MarshalKeyRing(next)
	if err != nil {
		return nil, err
	}
	if err := store.StoreSecret(ctx, ClientKeyRingSecret, raw); err != nil {
		return nil, fmt.Errorf("store the OAuth client key ring: %w", err)
	}
	return next, nil
}

// keyWatch keeps a server's ClientKeys true to the store, and says in
// the log when the key set or the signing key changes.
type keyWatch struct {
	store  sessions.Store
	keys   *oauth.ClientKeys
	log    *slog.Logger
	now    func() time.Time
	stored []byte // the ring as last read
	signer string // the kid that signed at the last look
}

func newKeyWatch(store sessions.Store, keys *oauth.ClientKeys, log *slog.Logger) *keyWatch {
	w := &keyWatch{store: store, keys: keys, log: log, now: time.Now}
	w.stored, _ = oauth.MarshalKeyRing(keys.Ring())
	w.signer = keys.Ring().Signer(w.now()).KeyID()
	return w
}

// run reads the ring every interval until ctx ends.
func (w *keyWatch) run(ctx context.Context, interval time.Duration) {
	every.Tick(ctx, interval, w.check)
}

// check reads the ring once. What the store holds is taken only when it
// follows from the ring held (it holds the newest key held): a store
// emptied (a Redis without persistence that restarted) gets the held
// ring back, and an older ring (a backup restored) is refused, rather
// than every replica signing with a key no server has seen. A store out
// of reach keeps the ring held.
func (w *keyWatch) check(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ring, err := loadStoredKeys(ctx, w.store)
	if errors.Is(err, errNoStoredKeys) {
		ring, err = w.writeBack(ctx)
	}
	if err != nil {
		w.log.Warn("OAuth client keys not read again; keeping those held", "err", err)
		return
	}
	raw, err := oauth.MarshalKeyRing(ring)
	if err == nil && !bytes.Equal(raw, w.stored) {
		if newest := newestKID(w.keys.Ring()); !hasKID(ring, newest) {
			w.log.Error("the stored OAuth client keys do not hold this replica's newest key; keeping those held (was an older key set restored?)",
				"held_newest", newest, "stored", describeRing(ring))
			return
		}
		w.stored = raw
		w.keys.Set(ring)
		w.log.Info("OAuth client key set changed", describeRing(ring)...)
	}
	if kid := w.keys.Ring().Signer(w.now()).KeyID(); kid != w.signer {
		w.log.Info("OAuth client assertions are signed with another key now", "from", w.signer, "to", kid)
		w.signer = kid
	}
}

// writeBack stores the held ring in a store that lost every client key,
// unless another replica did first (whose ring it returns).
func (w *keyWatch) writeBack(ctx context.Context) (*oauth.KeyRing, error) {
	raw, err := oauth.MarshalKeyRing(w.keys.Ring())
	if err != nil {
		return nil, err
	}
	stored, err := w.store.Secret(ctx, ClientKeyRingSecret, func() ([]byte, error) { return raw, nil })
	if err != nil {
		return nil, fmt.Errorf("write the OAuth client keys back: %w", err)
	}
	w.log.Warn("the store held no OAuth client key (emptied, or another store?); wrote back the keys this replica holds")
	return oauth.ParseKeyRing(stored)
}

// newestKID is the kid of the ring's newest key.
func newestKID(r *oauth.KeyRing) string {
	keys := r.Keys()
	return keys[len(keys)-1].Key.KeyID()
}

// hasKID says whether the ring holds the key kid.
func hasKID(r *oauth.KeyRing, kid string) bool {
	for _, k := range r.Keys() {
		if k.Key.KeyID() == kid {
			return true
		}
	}
	return false
}

// describeRing is a ring's keys as log attributes.
func describeRing(r *oauth.KeyRing) []any {
	var out []any
	for i, k := range r.Keys() {
		v := []any{"kid", k.Key.KeyID()}
		if !k.SignFrom.IsZero() {
			v = append(v, "signs_from", k.SignFrom.UTC().Format(time.RFC3339))
		}
		if !k.DropAt.IsZero() {
			v = append(v, "leaves_at", k.DropAt.UTC().Format(time.RFC3339))
		}
		out = append(out, slog.Group(fmt.Sprintf("key%d", i+1), v...))
	}
	return out
}
