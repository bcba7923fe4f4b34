package boltstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// compact rewrites the file at path into a new one without free pages,
// and opens that in place of s.db. bbolt does not clear the pages it
// frees: without this, the plaintext (or the old key's ciphertext) of the
// records Open just rewrote, and of every record deleted before
// encryption was turned on, would stay in the file for anyone who copies
// it. The resealing committed first, so a failure here loses nothing;
// keySealedBy is set only in the compacted file, so until one is in
// place every Open compacts again.
func (s *Store) compact(path string) error {
	tmp := path + ".compact"
	// Left by a compaction that failed: a copy of sealed records only.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("compact: remove %s: %w", tmp, err)
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		return fmt.Errorf("compact: create %s: %w", tmp, err)
	}
	err = bolt.Compact(dst, s.db, 0)
	if err == nil {
		err = dst.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keySealedBy, s.keys.Seal(nil, sealedByRecord))
		})
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("compact: %w", err)
	}
	// Closed before the rename, which some systems refuse over an open
	// file. On failure Open closes s.db again, which bbolt allows.
	_ = s.db.Close()
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("compact: %w", err)
	}
	db, err := openDB(path)
	if err != nil {
		return fmt.Errorf("compact: reopen: %w", err)
	}
	s.db = db
	return nil
}

// sealedByRecord is the record id keySealedBy's value is sealed for.
const sealedByRecord = "meta:sealed-by"

// compactedUnderFirstKey reports whether v, keySealedBy's value, says the
// file was last compacted under the first key.
func (s *Store) compactedUnderFirstKey(v []byte) bool {
	if v == nil || s.keys.NeedsReseal(v) {
		return false
	}
	_, err := s.keys.Open(v, sealedByRecord)
	return err == nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
