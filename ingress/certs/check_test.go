package certs

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/ioproxy/ioproxy/config"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "check CA")
	goodCert, goodKey := ca.writePair(t, dir, "good", "good.example")
	wrongCert, wrongKey := ca.writePair(t, dir, "wrong", "other.example")
	_, strayKey := ca.writePair(t, dir, "stray", "good.example")
	expCertPEM, expKeyPEM := ca.issue(t, []string{"good.example"}, leafOpts{notBefore: time.Now().Add(-48 * time.Hour), notAfter: time.Now().Add(-time.Hour)})
	expCert, expKey := filepath.Join(dir, "expired.pem"), filepath.Join(dir, "expired-key.pem")
	writeFile(t, expCert, expCertPEM)
	writeFile(t, expKey, expKeyPEM)
	soonCertPEM, soonKeyPEM := ca.issue(t, []string{"good.example"}, leafOpts{notAfter: time.Now().Add(3 * 24 * time.Hour)})
	soonCert, soonKey := filepath.Join(dir, "soon.pem"), filepath.Join(dir, "soon-key.pem")
	writeFile(t, soonCert, soonCertPEM)
	writeFile(t, soonKey, soonKeyPEM)
	garbage := filepath.Join(dir, "garbage.pem")
	writeFile(t, garbage, []byte("hello\n"))
	caFile := filepath.Join(dir, "ca.pem")
	writeFile(t, caFile, ca.pem)

	for _, tc := range []struct {
		name string
		hcl  string
		// want lists "line:summary" per diagnostic, in order.
		want []string
	}{
		{
			name: "good files",
			hcl:  hostWithFiles(goodCert, goodKey),
		},
		{
			name: "certificate for another host",
			hcl:  hostWithFiles(wrongCert, wrongKey),
			want: []string{"4:Certificate does not cover host"},
		},
		{
			name: "key of another certificate",
			hcl:  hostWithFiles(goodCert, strayKey),
			want: []string{"5:Key does not match certificate"},
		},
		{
			name: "key in the place of the certificate",
			hcl:  hostWithFiles(goodKey, goodKey),
			want: []string{"4:Invalid certificate file"},
		},
		{
			name: "garbage key",
			hcl:  hostWithFiles(goodCert, garbage),
			want: []string{"5:Invalid key file"},
		},
		{
			name: "expired and expiring",
			hcl: fmt.Sprintf(`host "good.example" {
  backend = "localhost:3000"
  tls {
    cert_file = %q
    key_file  = %q
  }
}
host "other.example" {
  backend = "localhost:3000"
  tls {
    cert_file = %q
    key_file  = %q
  }
}`, expCert, expKey, soonCert, soonKey),
			want: []string{"4:Certificate has expired", "11:Certificate expires soon", "11:Certificate does not cover host"},
		},
		{
			name: "global pair, checked per host",
			hcl: fmt.Sprintf(`tls {
  cert_file = %q
  key_file  = %q
}
host "good.example" {
  backend = "localhost:3000"
  tls { mode = "files" }
}
host "b.example" {
  backend = "localhost:3000"
  tls { mode = "files" }
}`, goodCert, goodKey),
			want: []string{"2:Certificate does not cover host"},
		},
		{
			name: "unused global pair still parsed",
			hcl: fmt.Sprintf(`tls {
  cert_file = %q
  key_file  = %q
}
host "localhost" { backend = "localhost:3000" }`, garbage, goodKey),
			want: []string{"2:Invalid certificate file"},
		},
		{
			name: "ACME ca_file",
			hcl: fmt.Sprintf(`tls {
  acme {
    email     = "ops@example.com"
    directory = "https://ca.internal/dir"
    ca_file   = %q
  }
}
host "a.example" { backend = "localhost:3000" }`, garbage),
			want: []string{"5:Invalid ca_file"},
		},
		{
			name: "good ACME ca_file",
			hcl: fmt.Sprintf(`tls {
  acme {
    ca_file = %q
  }
}
host "a.example" { backend = "localhost:3000" }`, caFile),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := config.Parse([]byte(tc.hcl), "test.hcl", config.Options{})
			if diags.HasErrors() {
				t.Fatalf("config: %v", diags)
			}
			got := check(cfg, time.Now())
			var lines []string
			for _, d := range got {
				line := 0
				if d.Subject != nil {
					line = d.Subject.Start.Line
					if d.Subject.Filename != "test.hcl" {
						t.Errorf("diagnostic in file %q", d.Subject.Filename)
					}
				}
				lines = append(lines, fmt.Sprintf("%d:%s", line, d.Summary))
				if d.Detail == "" {
					t.Errorf("%s: no detail", d.Summary)
				}
				t.Log(config.FormatDiagnostic(d))
			}
			if strings.Join(lines, "|") != strings.Join(tc.want, "|") {
				t.Errorf("diagnostics:\n  %s\nwant:\n  %s", strings.Join(lines, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

func TestCheckNamesHostOnGlobalPair(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "CA")
	c, k := ca.writePair(t, dir, "g", "a.example")
	cfg, diags := config.Parse([]byte(fmt.Sprintf(`tls {
  cert_file = %q
  key_file  = %q
}
host "b.example" {
  backend = "localhost:3000"
  tls { mode = "files" }
}`, c, k)), "io.hcl", config.Options{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	got := Check(cfg)
	if len(got) != 1 || got[0].Severity != hcl.DiagError {
		t.Fatalf("Check = %v", got)
	}
	msg := config.FormatDiagnostic(got[0])
	for _, want := range []string{"io.hcl:2:", `"b.example"`, `"a.example"`, "cert_file"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%s\nlacks %s", msg, want)
		}
	}
}

// hostWithFiles is a configuration whose one host names a certificate
// and key file; the file's lines 4 and 5 are cert_file and key_file.
func hostWithFiles(cert, key string) string {
	return fmt.Sprintf(`host "good.example" {
  backend = "localhost:3000"
  tls {
    cert_file = %q
    key_file  = %q
  }
}`, cert, key)
}
