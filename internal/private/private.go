// Package private checks that a directory or file is this process's
// user's alone: the data dir holds the session store (every session's
// tokens and DPoP keys, the OAuth client key), the certificates' private
// keys and the control socket, and whoever else can write there could put
// a file or a socket of theirs in the place of ours.
package private

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Mode bits that other users may not have.
const (
	// NoWrite: others may read, but not write (nothing of theirs can take
	// the place of what is in it).
	NoWrite fs.FileMode = 0o022
	// NoAccess: others may neither read nor write (it holds secrets).
	NoAccess fs.FileMode = 0o077
)

// Dir makes dir (0700, with its parents) when it is missing, and refuses
// one that is not a directory, that another user owns, or whose mode
// gives other users one of the deny bits. A dir that is a symbolic link
// is judged by what it points to.
func Dir(dir string, deny fs.FileMode) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create the data dir %s: %w", dir, err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("check the data dir %s: %w", dir, err)
	}
	if !info.IsDir() {
		return fmt.Errorf("the data dir %s is not a directory: point data_dir at a directory", dir)
	}
	return judge(dir, "data dir", "chmod 700", info, deny)
}

// File refuses a file that is a symbolic link (which would be followed
// anywhere), that another user owns, or that other users may read or
// write; what names it in the error. A missing file passes: it is made,
// private, when first written.
func File(path, what string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check the %s %s: %w", what, path, err)
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("the %s %s is a symbolic link; point data_dir at the directory that holds it instead", what, path)
	}
	return judge(path, what, "chmod 600", info, NoAccess)
}

// judge applies the mode and owner rules to what was found at path.
func judge(path, what, fix string, info fs.FileInfo, deny fs.FileMode) error {
	if perm := info.Mode().Perm(); perm&deny != 0 {
		why := "and it holds users' tokens and ioproxy's keys"
		if deny&0o044 == 0 {
			why = "who could put files of theirs in the place of ioproxy's"
		}
		return fmt.Errorf("the %s %s is open to other users (mode %04o), %s; make it private with `%s %s` (and make sure ioproxy's user owns it)", what, path, perm, why, fix, path)
	}
	if owner, ok := ownerOf(info); ok && owner != os.Geteuid() {
		return fmt.Errorf("the %s %s belongs to user %d, not to ioproxy's user %d, and its owner can read and replace users' tokens and ioproxy's keys; `chown %d %s`, or use a data dir of ioproxy's own", what, path, owner, os.Geteuid(), os.Geteuid(), path)
	}
	return nil
}
