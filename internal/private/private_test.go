package private

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A data dir is made private when missing; one that others may write to
// is always refused, one they may read only under NoAccess; a file in
// its place is not a dir.
func TestDir(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode os.FileMode // 0: made by Dir
		deny os.FileMode
		want string
	}{
		{"made", 0, NoAccess, ""},
		{"private", 0o700, NoAccess, ""},
		{"readable, secrets", 0o755, NoAccess, "chmod 700"},
		{"readable, no secrets", 0o755, NoWrite, ""},
		{"group-writable", 0o770, NoWrite, "open to other users (mode 0770)"},
		{"world-writable", 0o703, NoWrite, "chmod 700"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if tc.mode != 0 {
				if err := os.Mkdir(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, tc.mode); err != nil {
					t.Fatal(err)
				}
			}
			err := Dir(dir, tc.deny)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if info, err := os.Stat(dir); err != nil || (tc.mode == 0 && info.Mode().Perm() != 0o700) {
					t.Fatalf("made %v, %v", info.Mode(), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Dir(file, NoWrite); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("a file as the data dir: %v", err)
	}
}

// A missing file passes; a symbolic link or a file others may read does
// not, whatever it points to.
func TestFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ioproxy.db")
	if err := File(path, "session store"); err != nil {
		t.Fatalf("missing: %v", err)
	}
	if err := os.WriteFile(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := File(path, "session store"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := File(path, "session store"); err != nil {
		t.Fatalf("private: %v", err)
	}
	link := filepath.Join(dir, "link.db")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if err := File(link, "session store"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("a link: %v", err)
	}
}
