package server

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ioproxy/ioproxy/config"
)

// TestTLSSettingsReadTheCAFile: a reload keeps the certificate Manager
// only while what it is made of stays the same, and the ACME CA file
// counts by its contents: a new root under the same name makes a new
// Manager.
func TestTLSSettingsReadTheCAFile(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	write := func(s string) {
		if err := os.WriteFile(ca, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := &config.Config{DataDir: "/data"}
	cfg.TLS.ACME.CAFile = ca
	write("first root")
	first := tlsSettings(cfg)
	if again := tlsSettings(cfg); again != first {
		t.Fatal("the same files give other settings")
	}
	write("second root")
	if tlsSettings(cfg) == first {
		t.Error("a new CA file under the same name gives the same settings: the reload keeps the old Manager")
	}
	if err := os.Remove(ca); err != nil {
		t.Fatal(err)
	}
	if tlsSettings(cfg) == first {
		t.Error("a CA file that went away gives the same settings")
	}
}
