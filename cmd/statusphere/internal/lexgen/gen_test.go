package main

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// TestGeneratedCodeIsUpToDate fails when cmd/statusphere/internal/lex differs from what the
// Lexicons in cmd/statusphere/internal/lexicons generate: run
// go generate ./cmd/statusphere/internal/lex/... and commit the result.
func TestGeneratedCodeIsUpToDate(t *testing.T) {
	files, err := Generate(os.DirFS("../lexicons"), defaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := generatedFiles("../lex")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		delete(onDisk, name)
		got, err := os.ReadFile(filepath.Join("../lex", name))
		if err != nil {
			t.Errorf("%s: %v (run go generate ./cmd/statusphere/internal/lex/...)", name, err)
			continue
		}
		if !bytes.Equal(got, files[name]) {
			t.Errorf("cmd/statusphere/internal/lex/%s is out of date: run go generate ./cmd/statusphere/internal/lex/...", name)
		}
	}
	for name := range onDisk {
		t.Errorf("cmd/statusphere/internal/lex/%s was generated from a Lexicon that is gone: run go generate ./cmd/statusphere/internal/lex/...", name)
	}
}

func TestGenerateRejectsWhatItDoesNotSupport(t *testing.T) {
	const statusProps = `"properties":{"status":{"type":"string"}}`
	tests := []struct {
		name, path, json, want string
	}{
		{"unknown field", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"object","frobnicate":true}}}`, `unknown field "frobnicate"`},
		{"union", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"object","properties":{"x":{"type":"union","refs":["#y"]}}}}}`, `unknown field "refs"`},
		{"blob field", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"object","properties":{"x":{"type":"blob"}}}}}`, `field type "blob" is not supported`},
		{"subscription", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"subscription"}}}`, `def type "subscription" is not supported`},
		{"missing ref", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"object","properties":{"x":{"type":"ref","ref":"#nope"}}}}}`, `has no def "nope"`},
		{"wrong version", "a/b/c.json", `{"lexicon":2,"id":"a.b.c","defs":{}}`, "lexicon version 2"},
		{"short nsid", "a/b.json", `{"lexicon":1,"id":"a.b","defs":{}}`, "fewer than 3 segments"},
		{"record not main", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"x":{"type":"record","key":"tid","record":{"type":"object",` + statusProps + `}}}}`, "must be the main def"},
		{"record without key", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"record","record":{"type":"object",` + statusProps + `}}}}`, "without a key type"},
		{"unchecked format", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"record","key":"tid","record":{"type":"object","properties":{"u":{"type":"string","format":"uri"}}}}}}`, `cannot check string format "uri"`},
		{"required not a property", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"object","required":["y"],` + statusProps + `}}}`, `required field "y" is not a property`},
		{"duplicate key", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"object"},"main":{"type":"object"}}}`, `duplicate key "main"`},
		{"binary input", "a/b/c.json", `{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"procedure","input":{"encoding":"*/*"}}}}`, "supports only application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{tt.path: {Data: []byte(tt.json)}}
			_, err := Generate(fsys, defaultOptions())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestGenerateRejectsCrossPackageRefs(t *testing.T) {
	fsys := fstest.MapFS{
		"a/b/c.json": {Data: []byte(`{"lexicon":1,"id":"a.b.c","defs":{"main":{"type":"object","properties":{"x":{"type":"ref","ref":"d.e.f#g"}}}}}`)},
		"d/e/f.json": {Data: []byte(`{"lexicon":1,"id":"d.e.f","defs":{"g":{"type":"object","properties":{}}}}`)},
	}
	if _, err := Generate(fsys, defaultOptions()); err == nil || !strings.Contains(err.Error(), "across Go packages") {
		t.Errorf("err = %v", err)
	}
}

func TestExported(t *testing.T) {
	for in, want := range map[string]string{
		"status": "Status", "createdAt": "CreatedAt", "did": "DID", "didDoc": "DIDDoc", "uri": "URI",
		"cid": "CID", "rkey": "Rkey", "handleIsCorrect": "HandleIsCorrect", "swapCommit": "SwapCommit",
	} {
		if got := exported(in); got != want {
			t.Errorf("exported(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteRemovesStaleGeneratedFilesOnly(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "x/y"), 0o755))
	must(os.MkdirAll(filepath.Join(dir, "lexutil"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "x/y/old.go"), []byte(header+" from old.json. DO NOT EDIT.\npackage y\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "lexutil/lexutil.go"), []byte("package lexutil\n"), 0o644))
	must(write(dir, map[string][]byte{"x/y/new.go": []byte(header + " from new.json. DO NOT EDIT.\npackage y\n")}))

	if _, err := os.Stat(filepath.Join(dir, "x/y/old.go")); !os.IsNotExist(err) {
		t.Errorf("stale generated file kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x/y/new.go")); err != nil {
		t.Errorf("new file: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "lexutil/lexutil.go")); err != nil {
		t.Errorf("hand-written file removed: %v", err)
	}
	err := write(dir, map[string][]byte{"lexutil/lexutil.go": []byte(header + "\npackage lexutil\n")})
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("overwrote a hand-written file: %v", err)
	}
}
