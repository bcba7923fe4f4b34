package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

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

// TestReloadReadsANewCARoot: a reload makes a new certificate Manager
// when the ACME CA file's contents changed under the same name, and
// keeps the running one when nothing did (found in re-reading: both
// sides of the comparison read the file at the reload, so a new root
// was never seen).
func TestReloadReadsANewCARoot(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	caPEM := func() []byte {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	if err := os.WriteFile(ca, caPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	ps := freePorts(t, 2)
	src := fmt.Sprintf(`
data_dir = %q
ingress {
  http  = "127.0.0.1:%d"
  https = "127.0.0.1:%d"
}
admin { listen = "" }
tls {
  acme {
    email     = "ops@example.com"
    directory = "https://127.0.0.1:1/directory"
    ca_file   = %q
  }
}
host "app.example.com" { backend = "127.0.0.1:1" }
`, filepath.Join(dir, "data"), ps[0], ps[1], ca)
	rl := startReloadable(t, src)
	first := rl.srv.certs.Load()
	rl.reload(src)
	if rl.srv.certs.Load() != first {
		t.Fatal("a reload that changed nothing made a new certificate Manager")
	}
	if err := os.WriteFile(ca, caPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	rl.reload(src)
	if rl.srv.certs.Load() == first {
		t.Fatal("a reload after a new CA root under the same name kept the old Manager")
	}
}
