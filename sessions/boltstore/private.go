package boltstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// checkPrivate refuses a data dir or store file that users other than
// ioproxy's own can read or write: the store holds every session's tokens
// and DPoP keys and the OAuth client key, and the dir the certificates'
// private keys. A dir made by ioproxy is private already; one made by
// hand, by an image or an orchestrator often is not, and one made in
// advance by another local user (./data in a shared checkout) is theirs
// to read and replace whatever its mode.
func checkPrivate(dir, file string) error {
	for _, p := range []struct {
		path, what, fix string
		// lstat: the path itself must not be a symlink (the store file,
		// which bbolt would follow anywhere); the data dir may be one, and
		// is judged by what it points to.
		lstat bool
	}{
		{dir, "data dir", "chmod 700", false},
		{file, "session store", "chmod 600", true},
	} {
		stat := os.Stat
		if p.lstat {
			stat = os.Lstat
		}
		info, err := stat(p.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the store file is made, private, at first start
		}
		if err != nil {
			return fmt.Errorf("check the %s %s: %w", p.what, p.path, err)
		}
		if info.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("the %s %s is a symbolic link; point data_dir at the directory that holds it instead", p.what, p.path)
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			return fmt.Errorf("the %s %s is open to other users (mode %04o), and it holds users' tokens and ioproxy's keys; make it private with `%s %s` (and make sure ioproxy's user owns it)", p.what, p.path, perm, p.fix, p.path)
		}
		if owner, ok := ownerOf(info); ok && owner != os.Geteuid() {
			return fmt.Errorf("the %s %s belongs to user %d, not to ioproxy's user %d, and its owner can read and replace users' tokens and ioproxy's keys; `chown %d %s`, or use a data dir of ioproxy's own", p.what, p.path, owner, os.Geteuid(), os.Geteuid(), p.path)
		}
	}
	return nil
}
