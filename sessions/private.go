package sessions

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
// hand, an image or an orchestrator often is not.
func checkPrivate(dir, file string) error {
	for _, p := range []struct {
		path, what, fix string
	}{
		{dir, "data dir", "chmod 700"},
		{file, "session store", "chmod 600"},
	} {
		info, err := os.Stat(p.path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the store file is made, private, at first start
		}
		if err != nil {
			return fmt.Errorf("check the %s %s: %w", p.what, p.path, err)
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			return fmt.Errorf("the %s %s is open to other users (mode %04o), and it holds users' tokens and ioproxy's keys; make it private with `%s %s` (and make sure ioproxy's user owns it)", p.what, p.path, perm, p.fix, p.path)
		}
	}
	return nil
}
