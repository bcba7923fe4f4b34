package access

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/ioproxy/ioproxy/internal/textutil"
)

// HashKind is how an API key entry stores its secret.
type HashKind int

// The hash kinds an apikey_auth entry may use.
const (
	// HashBcrypt is htpasswd -B: slow by design, so a leaked file does
	// not give the keys away.
	HashBcrypt HashKind = iota + 1
	// HashSHA1 is htpasswd -s ("{SHA}" and base64 of the SHA-1): accepted
	// because existing configurations use it, but a leaked file can be
	// brute-forced, so validation warns about it.
	HashSHA1
)

// KeyEntry is one "name:hash" line of an apikey_auth block.
type KeyEntry struct {
	Name string
	Kind HashKind
	Hash string
}

// ParseKeyEntry parses one htpasswd-style line.
func ParseKeyEntry(line string) (KeyEntry, error) {
	name, hash, ok := strings.Cut(line, ":")
	if !ok || name == "" || hash == "" {
		return KeyEntry{}, fmt.Errorf("%q is not a \"name:hash\" entry; make one with `htpasswd -nbB name secret` (bcrypt)", textutil.Clip(line, 40))
	}
	if !validKeyName(name) {
		return KeyEntry{}, fmt.Errorf("the name %q may hold only letters, digits and . _ @ -, up to 64 characters (it is passed to the backend in a header)", textutil.Clip(name, 40))
	}
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return KeyEntry{}, fmt.Errorf("the bcrypt hash of %q is damaged (%v); make it again with `htpasswd -nbB %s secret`", name, err, name)
		}
		if len(hash) != 60 {
			return KeyEntry{}, fmt.Errorf("the bcrypt hash of %q is %d characters, not 60 (two entries on one line? put each on its own line); make it again with `htpasswd -nbB %s secret` if it is damaged", name, len(hash), name)
		}
		return KeyEntry{Name: name, Kind: HashBcrypt, Hash: hash}, nil
	case strings.HasPrefix(hash, "{SHA}"):
		sum, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(hash, "{SHA}"))
		if err != nil || len(sum) != sha1.Size {
			return KeyEntry{}, fmt.Errorf("the {SHA} hash of %q is not base64 of a 20-byte SHA-1; make a bcrypt one instead with `htpasswd -nbB %s secret`", name, name)
		}
		return KeyEntry{Name: name, Kind: HashSHA1, Hash: hash}, nil
	case strings.HasPrefix(hash, "$apr1$"), strings.HasPrefix(hash, "$1$"), strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return KeyEntry{}, fmt.Errorf("the hash of %q is in a crypt format ioproxy does not read; use bcrypt: `htpasswd -nbB %s secret`", name, name)
	default:
		return KeyEntry{}, fmt.Errorf("the entry of %q holds no known hash (a plain-text secret?); write a bcrypt hash made with `htpasswd -nbB %s secret`", name, name)
	}
}

func validKeyName(s string) bool {
	if len(s) > 64 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '@', r == '-':
		default:
			return false
		}
	}
	return true
}

// Keys checks machine credentials against the entries of an apikey_auth
// block.
//
// bcrypt costs tens of milliseconds per check by design, and a script may
// call many times a second, so a key that checked out once is remembered
// (as a keyed hash, never the key itself) and later checks of the same key
// are one HMAC. Only the last good key per name is kept, so the memory is
// bounded by the number of entries; wrong keys are never remembered, and
// pay full price every time. Parallel checks of the same name and key
// share one comparison.
type Keys struct {
	entries map[string]KeyEntry
	// decoy is checked for unknown names, so that a wrong name costs as
	// much as a wrong key and names cannot be found by timing.
	decoy KeyEntry

	mac  []byte
	mu   sync.Mutex
	good map[string][]byte // name -> HMAC of the last key that checked out
	// flights are the comparisons in progress, by HMAC of name and key.
	flights map[string]*flight
	// slots bound the bcrypt comparisons running at once to the CPUs:
	// wrong keys from many addresses must not take every core, and keys
	// already remembered as good never wait for a slot.
	slots chan struct{}
	// waiting counts the bcrypt comparisons running or waiting for a
	// slot (under mu), at most maxWaiting.
	waiting, maxWaiting int
}

// NewKeys returns a checker for the entries; names must be unique (config
// validation makes sure of it).
func NewKeys(entries []KeyEntry) *Keys {
	slots := max(1, runtime.GOMAXPROCS(0)-1)
	k := &Keys{entries: map[string]KeyEntry{}, good: map[string][]byte{}, flights: map[string]*flight{}, mac: make([]byte, 32),
		// A queue of 8 per slot is under half a second of waiting at
		// bcrypt cost 10.
		slots: make(chan struct{}, slots), maxWaiting: 8 * slots}
	_, _ = rand.Read(k.mac)
	cost, anyBcrypt := bcrypt.DefaultCost, false
	for _, e := range entries {
		k.entries[e.Name] = e
		if e.Kind == HashBcrypt {
			anyBcrypt = true
			if c, err := bcrypt.Cost([]byte(e.Hash)); err == nil {
				cost = c
			}
		}
	}
	if anyBcrypt {
		decoy, _ := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
		k.decoy = KeyEntry{Kind: HashBcrypt, Hash: string(decoy)}
	} else {
		// With {SHA} entries only, a wrong key costs one SHA-1, and so
		// must an unknown name.
		sum := sha1.Sum([]byte(rand.Text()))
		k.decoy = KeyEntry{Kind: HashSHA1, Hash: "{SHA}" + base64.StdEncoding.EncodeToString(sum[:])}
	}
	return k
}

// Names lists the entries' names.
func (k *Keys) Names() []string {
	names := make([]string, 0, len(k.entries))
	for n := range k.entries {
		names = append(names, n)
	}
	return names
}

// ErrWrongKey means the name is unknown or the key does not match it.
var ErrWrongKey = errors.New("unknown name or wrong key")

// ErrTooMany means CheckLimited did not compare the key: its caller's
// limit refused the attempt.
var ErrTooMany = errors.New("too many attempts")

// ErrBusy means CheckLimited did not compare the key: as many comparisons
// as may wait are waiting already. It is a passing overload (wrong keys
// from many addresses at once); the client should try again shortly.
var ErrBusy = errors.New("too many key checks at once")

// Check verifies a name and key, waiting as long as it takes (for tools
// and tests; requests use CheckLimited).
func (k *Keys) Check(name, key string) error {
	return k.CheckLimited(context.Background(), name, key, nil)
}

// CheckLimited is Check for a caller that limits attempts: unless the key
// is the remembered good key of the name (no hashing to speak of), it
// calls spend before comparing, and refuses with ErrTooMany, without
// comparing, when spend returns false. Counting an attempt before its
// slow comparison rather than after is what keeps parallel guesses from
// all passing a limit that none of them has yet been counted against.
//
// Slow comparisons run a few at a time, and only so many may wait for
// their turn: beyond that CheckLimited refuses with ErrBusy at once (after
// spend, so a caller that counts attempts may take this one back), so
// that a flood of wrong keys cannot build an unbounded queue that a good
// key would wait behind. Waiting ends with ctx.
func (k *Keys) CheckLimited(ctx context.Context, name, key string, spend func() bool) error {
	e, known := k.entries[name]
	if !known {
		e = k.decoy
	}
	sum := k.sum(name, key)
	if k.remembered(name, sum, known) {
		return nil
	}
	lead, twin := k.join(string(sum))
	if twin != nil {
		// The same name and key are being checked: a client that sends
		// its first requests in parallel costs one comparison, and one
		// attempt against its limit.
		select {
		case <-twin.done:
		case <-ctx.Done():
			return fmt.Errorf("check key of %q: %w", textutil.Clip(name, 40), ctx.Err())
		}
		if twin.ok {
			return nil
		}
		if twin.wrong {
			// The same key was just compared and is wrong: this attempt
			// counts, but needs no comparison of its own.
			if spend != nil && !spend() {
				return ErrTooMany
			}
			return ErrWrongKey
		}
	} else {
		defer k.land(string(sum), lead)
	}
	if spend != nil && !spend() {
		return ErrTooMany
	}
	ok, err := k.compare(ctx, e, key)
	if errors.Is(err, ErrBusy) {
		return ErrBusy
	} else if err != nil {
		return fmt.Errorf("check key of %q: %w", textutil.Clip(name, 40), err)
	}
	if !ok || !known {
		if lead != nil {
			lead.wrong = true
		}
		return ErrWrongKey
	}
	k.mu.Lock()
	k.good[name] = sum
	k.mu.Unlock()
	if lead != nil {
		lead.ok = true
	}
	return nil
}

// remembered reports whether sum is the last good key of a known name.
func (k *Keys) remembered(name string, sum []byte, known bool) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	prev := k.good[name]
	return known && prev != nil && hmac.Equal(prev, sum)
}

// join returns the flight of the comparison of id under way (twin), or
// starts one that the caller leads and must land.
func (k *Keys) join(id string) (lead, twin *flight) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if f := k.flights[id]; f != nil {
		return nil, f
	}
	lead = &flight{done: make(chan struct{})}
	k.flights[id] = lead
	return lead, nil
}

// land ends a flight the caller led: its twins learn the outcome.
func (k *Keys) land(id string, f *flight) {
	k.mu.Lock()
	delete(k.flights, id)
	k.mu.Unlock()
	close(f.done)
}

// compare checks key against the entry. A bcrypt comparison waits for a
// slot, in a queue of bounded length (ErrBusy past it), for as long as
// ctx lasts.
func (k *Keys) compare(ctx context.Context, e KeyEntry, key string) (bool, error) {
	if e.Kind != HashBcrypt {
		return e.matches(key), nil
	}
	k.mu.Lock()
	if k.waiting >= k.maxWaiting {
		k.mu.Unlock()
		return false, ErrBusy
	}
	k.waiting++
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.waiting--
		k.mu.Unlock()
	}()
	select {
	case k.slots <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-k.slots }()
	return e.matches(key), nil
}

// flight is a comparison in progress, for others checking the same name
// and key to wait for.
type flight struct {
	done chan struct{}
	// ok and wrong are set before done is closed: the key matched, or it
	// was compared and did not. Neither: the lead did not compare it (its
	// request ended, or it was refused before).
	ok, wrong bool
}

func (k *Keys) sum(name, key string) []byte {
	m := hmac.New(sha256.New, k.mac)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(key))
	return m.Sum(nil)
}

func (e KeyEntry) matches(key string) bool {
	switch e.Kind {
	case HashBcrypt:
		return bcrypt.CompareHashAndPassword([]byte(e.Hash), []byte(key)) == nil
	case HashSHA1:
		sum := sha1.Sum([]byte(key))
		want := "{SHA}" + base64.StdEncoding.EncodeToString(sum[:])
		return subtle.ConstantTimeCompare([]byte(want), []byte(e.Hash)) == 1
	}
	return false
}

// Cost is the bcrypt cost of a bcrypt entry, 0 for other kinds.
func (e KeyEntry) Cost() int {
	if e.Kind != HashBcrypt {
		return 0
	}
	c, _ := bcrypt.Cost([]byte(e.Hash))
	return c
}
