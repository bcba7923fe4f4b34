package dpop

import "sync"

// DefaultMaxNonces bounds a Nonces store: servers are chosen by users, so
// the number of origins is not ours to bound otherwise.
const DefaultMaxNonces = 10000

// MaxNonceLength is the longest nonce kept.
const MaxNonceLength = 512

// Nonces remembers the latest DPoP-Nonce of each server origin. Servers
// rotate nonces (the reference server every few minutes), so only the
// latest is kept. The zero value is ready to use; it is safe for concurrent
// use.
type Nonces struct {
	// Max bounds the number of origins kept (default DefaultMaxNonces).
	// Past it an arbitrary entry is dropped: a dropped nonce costs one
	// extra round trip, never a failure.
	Max int

	mu sync.Mutex
	m  map[string]string
}

// Get returns the latest nonce for the origin of rawURL, or "".
func (n *Nonces) Get(rawURL string) string {
	origin, err := Origin(rawURL)
	if err != nil {
		return ""
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[origin]
}

// Set records nonce for the origin of rawURL and reports whether the stored
// value changed.
//
// To decide whether to retry a use_dpop_nonce failure, compare the
// challenge's nonce with the nonce the failed request carried, not this
// result: when concurrent requests to one server all get the same new
// nonce, only the first Set reports a change, yet every one of them should
// retry once.
func (n *Nonces) Set(rawURL, nonce string) (changed bool) {
	// Servers are chosen by users; a nonce is a short token, so a huge one
	// is refused rather than kept (real ones are a few dozen bytes).
	if nonce == "" || len(nonce) > MaxNonceLength {
		return false
	}
	origin, err := Origin(rawURL)
	if err != nil {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		n.m = make(map[string]string)
	}
	if old, ok := n.m[origin]; ok {
		if old == nonce {
			return false
		}
	} else {
		max := n.Max
		if max <= 0 {
			max = DefaultMaxNonces
		}
		for k := range n.m {
			if len(n.m) < max {
				break
			}
			delete(n.m, k)
		}
	}
	n.m[origin] = nonce
	return true
}

// Len returns the number of origins remembered.
func (n *Nonces) Len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.m)
}
