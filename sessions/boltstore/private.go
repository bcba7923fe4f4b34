package boltstore

import "github.com/ioproxy/ioproxy/internal/private"

// checkPrivate makes the data dir when it is missing, and refuses it or
// the store file when users other than ioproxy's own can read or write
// them: the store holds every session's tokens and DPoP keys and the
// OAuth client key, and the dir the certificates' private keys. A dir
// made by ioproxy is private already; one made by hand, by an image or an
// orchestrator often is not, and one made in advance by another local
// user (./data in a shared checkout) is theirs to read and replace
// whatever its mode. The data dir may be a symbolic link, judged by what
// it points to; the store file may not be one, as bbolt would follow it
// anywhere.
func checkPrivate(dir, file string) error {
	if err := private.Dir(dir, private.NoAccess); err != nil {
		return err
	}
	return private.File(file, "session store")
}
