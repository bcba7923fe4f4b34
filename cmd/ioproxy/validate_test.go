package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateSeveralConfigs: -config repeats, and may name a directory.
func TestValidateSeveralConfigs(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.hcl")
	if err := os.WriteFile(a, []byte("ingress {\n  http = \"127.0.0.1:8080\"\n}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "hosts")
	_ = os.Mkdir(hosts, 0o755)
	for i, name := range []string{"a.example.com", "b.example.com"} {
		src := fmt.Sprintf("host %q {\n  backend = \"localhost:%d\"\n  tls { mode = \"off\" }\n}\n", name, i+1)
		if err := os.WriteFile(filepath.Join(hosts, name+".hcl"), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"validate", "-config", a, "-config", hosts}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "ok (2 hosts") {
		t.Errorf("validate of a file and a directory: %d\n%s%s", code, out.String(), errOut.String())
	}
}
