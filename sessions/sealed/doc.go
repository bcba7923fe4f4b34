// Package sealed encrypts the credentials that ioproxy's session stores keep
// at rest (OAuth tokens, DPoP private keys, the OAuth client key), so that a
// copied database file or Redis dump gives away nothing an attacker can sign
// in or call a PDS with.
//
// # Keys
//
// The keyring comes from configuration (encryption_key): one or more 32-byte
// AES-256 keys in base64. The first key seals; every key opens. To rotate,
// put a new key first and keep the old one after it until every record has
// been rewritten (NeedsReseal says which records still need it).
//
// # Format (version 1)
//
// A sealed value is self-describing, so that a store can tell it from the
// plaintext JSON an older ioproxy wrote and can tell which key sealed it:
//
//	offset  size  field
//	0       1     format byte, 0x81 (version 1)
//	1       4     key identifier: SHA-256("ioproxy sealed key id\x00" || key)[:4]
//	5       12    nonce, fresh from crypto/rand for every value
//	17      n     AES-256-GCM ciphertext of the n-byte plaintext
//	17+n    16    GCM tag
//
// A value is 33 bytes longer than its plaintext. The additional data that
// GCM authenticates is the format byte followed by the record's id (such as
// "session:<id>" or "secret:oauth-client-es256"), so a value copied into
// another record, or reinterpreted under another format version, does not
// open. The key identifier is a hint for finding the key, not a secret and
// not authenticated by GCM itself; Open refuses a value whose identifier is
// not that of the key that authenticated it.
//
// The format byte is chosen so that no JSON text can begin with it, nor with
// any byte one bit flip away from it: a value that begins the way a JSON
// text may (whitespace, '{', '[', '"', '-', a digit, 't', 'f', 'n') is
// ErrNotSealed, and any other damage to a sealed value, even in its first
// byte, is ErrTampered rather than being mistaken for plaintext.
//
// Random 96-bit nonces bound each key to 2^32 seals; ioproxy writes a record
// per sign-in and token refresh, far below that over a key's lifetime.
package sealed
