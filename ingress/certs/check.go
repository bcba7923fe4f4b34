package certs

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/ioproxy/ioproxy/config"
)

// expirySoon is when "ioproxy validate" starts warning about a static
// certificate's expiry.
const expirySoon = 14 * 24 * time.Hour

// Check looks into the files a configuration names, for "ioproxy
// validate": certificate and key files that do not parse, a key that does
// not belong to its certificate, a certificate that does not cover a host
// or has expired, an ACME ca_file without certificates. (config.Load has
// already reported files that do not exist.) Each diagnostic points at the
// attribute that names the file.
func Check(cfg *config.Config) hcl.Diagnostics {
	return check(cfg, time.Now())
}

func check(cfg *config.Config, now time.Time) hcl.Diagnostics {
	c := &checker{now: now, pairs: map[[2]string]*checkedPair{}}
	if f := cfg.TLS.ACME.CAFile; f != "" {
		c.caFile(f, cfg.TLS.ACME.CAFileRange)
	}
	for _, h := range cfg.Hosts {
		if h.TLS.Mode != config.TLSFiles {
			continue
		}
		// config gives a host without files of its own the top-level
		// pair, with that pair's ranges.
		t := h.TLS
		if t.CertFile == "" || t.KeyFile == "" {
			continue // config reports this
		}
		p := c.pair(t)
		if p.leaf == nil {
			continue
		}
		if err := p.leaf.VerifyHostname(h.Hostname); err != nil {
			c.errorf(t.CertFileRange, "Certificate does not cover host",
				"%s is for %s, not %q. Name a certificate for %q in host %q's tls block (cert_file and key_file), or let ioproxy get one: tls { mode = %q } without cert_file and key_file.",
				t.CertFile, describeNames(p.leaf), h.Hostname, h.Hostname, h.Hostname, h.AutoTLSMode())
		}
	}
	if cfg.TLS.CertFile != "" && cfg.TLS.KeyFile != "" {
		// The top-level pair is checked even when no host uses it yet.
		c.pair(config.HostTLS{CertFile: cfg.TLS.CertFile, KeyFile: cfg.TLS.KeyFile,
			CertFileRange: cfg.TLS.CertFileRange, KeyFileRange: cfg.TLS.KeyFileRange})
	}
	return c.diags
}

type checker struct {
	now   time.Time
	diags hcl.Diagnostics
	pairs map[[2]string]*checkedPair
}

type checkedPair struct {
	leaf *x509.Certificate // nil when the pair is unusable
}

func (c *checker) diag(sev hcl.DiagnosticSeverity, rng hcl.Range, summary, format string, args ...any) {
	d := &hcl.Diagnostic{Severity: sev, Summary: summary, Detail: fmt.Sprintf(format, args...)}
	if rng.Filename != "" {
		r := rng
		d.Subject = &r
	}
	c.diags = append(c.diags, d)
}

func (c *checker) errorf(rng hcl.Range, summary, format string, args ...any) {
	c.diag(hcl.DiagError, rng, summary, format, args...)
}

func (c *checker) warnf(rng hcl.Range, summary, format string, args ...any) {
	c.diag(hcl.DiagWarning, rng, summary, format, args...)
}

// pair checks a certificate and key once, however many hosts share them.
func (c *checker) pair(t config.HostTLS) *checkedPair {
	k := [2]string{t.CertFile, t.KeyFile}
	if p, ok := c.pairs[k]; ok {
		return p
	}
	p := &checkedPair{}
	c.pairs[k] = p

	certPEM, err := os.ReadFile(t.CertFile)
	if err != nil {
		c.errorf(t.CertFileRange, "Cannot read cert_file", "%v. Write the path of a PEM certificate file readable by ioproxy.", err)
		return p
	}
	certs, err := parseCertificates(certPEM)
	if err != nil {
		c.errorf(t.CertFileRange, "Invalid certificate file", "%s: %v. cert_file must be a PEM file that starts with -----BEGIN CERTIFICATE----- (the certificate first, then any intermediates).", t.CertFile, err)
		return p
	}
	keyPEM, err := os.ReadFile(t.KeyFile)
	if err != nil {
		c.errorf(t.KeyFileRange, "Cannot read key_file", "%v. Write the path of a PEM private key file readable by ioproxy.", err)
		return p
	}
	if err := parsePrivateKey(keyPEM); err != nil {
		c.errorf(t.KeyFileRange, "Invalid key file", "%s: %v. key_file must be an unencrypted PEM private key (-----BEGIN PRIVATE KEY-----, EC PRIVATE KEY or RSA PRIVATE KEY).", t.KeyFile, err)
		return p
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		c.errorf(t.KeyFileRange, "Key does not match certificate", "%s is not the private key of the certificate in %s (%v). Write the key that was generated with this certificate, or the certificate issued for this key.", t.KeyFile, t.CertFile, err)
		return p
	}
	leaf := certs[0]
	switch {
	case c.now.After(leaf.NotAfter):
		c.errorf(t.CertFileRange, "Certificate has expired", "%s expired on %s. Renew it, or use mode = \"acme\" so that ioproxy renews certificates itself.", t.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
		return p
	case c.now.Before(leaf.NotBefore):
		c.warnf(t.CertFileRange, "Certificate not yet valid", "%s is valid from %s; clients will refuse it until then (check the clock of the machine that issued it).", t.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	case c.now.Add(expirySoon).After(leaf.NotAfter):
		c.warnf(t.CertFileRange, "Certificate expires soon", "%s expires on %s. Renew it and replace the file: ioproxy reloads it on change.", t.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	p.leaf = leaf
	return p
}

func (c *checker) caFile(path string, rng hcl.Range) {
	data, err := os.ReadFile(path)
	if err != nil {
		c.errorf(rng, "Cannot read ca_file", "%v. ca_file is the PEM root certificate of your ACME server (leave it out for Let's Encrypt).", err)
		return
	}
	certs, err := parseCertificates(data)
	if err != nil {
		c.errorf(rng, "Invalid ca_file", "%s: %v. ca_file must hold the PEM root certificate (-----BEGIN CERTIFICATE-----) that signed your ACME server's HTTPS certificate.", path, err)
		return
	}
	for _, cert := range certs {
		if c.now.After(cert.NotAfter) {
			c.warnf(rng, "CA certificate has expired", "%s holds a certificate (%s) that expired on %s.", path, cert.Subject, cert.NotAfter.UTC().Format(time.RFC3339))
		}
	}
}

// parseCertificates reads every CERTIFICATE block; there must be one.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	var other []string
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			other = append(other, b.Type)
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d does not parse: %w", len(certs)+1, err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		if len(other) > 0 {
			return nil, fmt.Errorf("no CERTIFICATE block, only %s (a key file in the place of the certificate?)", strings.Join(other, ", "))
		}
		return nil, fmt.Errorf("no PEM certificate found")
	}
	return certs, nil
}

func parsePrivateKey(data []byte) error {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return fmt.Errorf("no PEM private key found")
		}
		if b.Type == "CERTIFICATE" {
			continue
		}
		if strings.Contains(b.Type, "ENCRYPTED") || b.Headers["Proc-Type"] != "" {
			return fmt.Errorf("the key is encrypted; ioproxy cannot ask for a passphrase (decrypt it with openssl pkey)")
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			switch k.(type) {
			case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
				return nil
			}
			return fmt.Errorf("unsupported key type %T", k)
		}
		if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return nil
		}
		if _, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return nil
		}
		return fmt.Errorf("the %s block does not parse as a PKCS#8, PKCS#1 or EC key", b.Type)
	}
}

func describeNames(c *x509.Certificate) string {
	var names []string
	for _, n := range c.DNSNames {
		names = append(names, fmt.Sprintf("%q", n))
	}
	for _, ip := range c.IPAddresses {
		names = append(names, fmt.Sprintf("%q", ip.String()))
	}
	if len(names) == 0 {
		if c.Subject.CommonName != "" {
			return fmt.Sprintf("common name %q only (clients need subject alternative names)", c.Subject.CommonName)
		}
		return "no names"
	}
	return strings.Join(names, ", ")
}
