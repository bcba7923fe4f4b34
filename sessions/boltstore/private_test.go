package boltstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDataDirMustBePrivate: the store holds every session's tokens and the
// client key; a dir or file others can read is refused, with what to do.
func TestDataDirMustBePrivate(t *testing.T) {
	for _, tc := range []struct {
		name            string
		dirMode, dbMode os.FileMode // 0: leave as made
		want            string
	}{
		{"made by ioproxy", 0, 0, ""},
		{"private", 0o700, 0o600, ""},
		{"dir readable by others", 0o755, 0, "chmod 700"},
		{"dir writable by group", 0o770, 0, "chmod 700"},
		{"file readable by group", 0o700, 0o640, "chmod 600"},
		{"file writable by others", 0o700, 0o602, "chmod 600"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			path := filepath.Join(dir, "ioproxy.db")
			s, err := Open(Config{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Close()
			if tc.dirMode != 0 {
				if err := os.Chmod(dir, tc.dirMode); err != nil {
					t.Fatal(err)
				}
			}
			if tc.dbMode != 0 {
				if err := os.Chmod(path, tc.dbMode); err != nil {
					t.Fatal(err)
				}
			}
			s, err = Open(Config{Path: path})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				_ = s.Close()
				return
			}
			if err == nil {
				_ = s.Close()
				t.Fatal("Open accepted a store others can read")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "open to other users") {
				t.Errorf("error %q does not say what to do (%s)", err, tc.want)
			}
		})
	}
}

// TestDataDirOwnership: a data dir or store file that another user owns
// is theirs to read and replace whatever its mode; a symlinked store file
// could point anywhere.
func TestDataDirOwnership(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "ioproxy.db")
	s, err := Open(Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()

	// A symlinked data dir is judged by what it points to: ours, fine.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(Config{Path: filepath.Join(link, "ioproxy.db")}); err != nil {
		t.Errorf("a symlink to our own private data dir: %v", err)
	} else {
		_ = s.Close()
	}
	// A symlinked store file is refused.
	other := filepath.Join(t.TempDir(), "data2")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(path, filepath.Join(other, "ioproxy.db")); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Path: filepath.Join(other, "ioproxy.db")}); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("a symlinked store file: %v", err)
	}

	if os.Geteuid() != 0 {
		t.Log("not root: the other-owner cases need chown")
		return
	}
	const nobody = 65534
	for _, p := range []string{dir, path} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		_, err := Open(Config{Path: path})
		if err == nil || !strings.Contains(err.Error(), "belongs to user 65534") || !strings.Contains(err.Error(), "chown") {
			t.Errorf("%s owned by another user: %v", p, err)
		}
		if _, err := Open(Config{Path: filepath.Join(link, "ioproxy.db")}); err == nil {
			t.Errorf("a symlink to a data dir another user owns (%s): accepted", p)
		}
		if err := os.Chown(p, 0, 0); err != nil {
			t.Fatal(err)
		}
	}
}
