package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Lifetimes of the local certificates. Leaves stay within 398 days, the
// longest validity that macOS and iOS accept for a TLS server certificate,
// and are re-issued a month before they expire.
const (
	localCAValidity      = 10 * 365 * 24 * time.Hour
	localLeafValidity    = 397 * 24 * time.Hour
	localLeafRenewBefore = 30 * 24 * time.Hour
)

// LocalCAFile is where the local CA certificate of a data dir lives.
func LocalCAFile(dataDir string) string {
	return filepath.Join(dataDir, "certs", "local-ca.pem")
}

func localCAKeyFile(dataDir string) string {
	return filepath.Join(dataDir, "certs", "local-ca-key.pem")
}

// LocalCA returns the data dir's local CA certificate in PEM form, creating
// the CA if there is none yet. A developer adds it to the browser's or
// system's trust store once; every self-signed host's certificate is issued
// by it. Works without a running proxy (for "ioproxy cert").
func LocalCA(dataDir string) (certPEM []byte, err error) {
	ca, err := loadOrCreateCA(dataDir, time.Now(), slog.Default())
	if err != nil {
		return nil, err
	}
	return ca.certPEM, nil
}

// localCA is the CA that signs the self-signed hosts' certificates.
type localCA struct {
	cert    *x509.Certificate
	key     crypto.Signer
	certPEM []byte
}

// loadOrCreateCA reads the CA from the data dir, or creates it. Creation
// publishes the key with a hard link, which fails if the file exists, so
// that two processes starting together on a fresh data dir end up with one
// CA rather than a certificate from one and a key from the other.
func loadOrCreateCA(dataDir string, now time.Time, log *slog.Logger) (*localCA, error) {
	certFile, keyFile := LocalCAFile(dataDir), localCAKeyFile(dataDir)
	ca, err := readCA(certFile, keyFile)
	switch {
	case err == nil:
		if now.After(ca.cert.NotAfter) {
			return nil, fmt.Errorf("local CA %s expired on %s; delete it and %s to create a new one (and trust the new one)", certFile, ca.cert.NotAfter.Format(time.DateOnly), keyFile)
		}
		return ca, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if _, statErr := os.Stat(keyFile); statErr == nil {
		// The key is there but the certificate is not: another process is
		// creating the CA right now, or a crash interrupted it.
		for range 20 {
			time.Sleep(50 * time.Millisecond)
			if ca, err := readCA(certFile, keyFile); err == nil {
				return ca, nil
			}
		}
		return nil, fmt.Errorf("local CA key %s exists without its certificate %s; delete the key to create a new CA", keyFile, certFile)
	}

	if err := os.MkdirAll(filepath.Dir(certFile), 0o700); err != nil {
		return nil, fmt.Errorf("create local CA directory: %w", err)
	}
	ca, err = newCA(now)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(ca.key)
	if err != nil {
		return nil, err
	}
	tmpKey, err := writeTemp(filepath.Dir(keyFile), keyPEM, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write local CA key: %w", err)
	}
	defer os.Remove(tmpKey)
	if err := os.Link(tmpKey, keyFile); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadOrCreateCA(dataDir, now, log) // another process won
		}
		return nil, fmt.Errorf("write local CA key %s: %w", keyFile, err)
	}
	if err := writeFileAtomic(certFile, ca.certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write local CA certificate: %w", err)
	}
	log.Info("created local CA; trust it to use the self-signed hosts without warnings", "file", certFile)
	return ca, nil
}

func readCA(certFile, keyFile string) (*localCA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read local CA: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load local CA %s with key %s: %w", certFile, keyFile, err)
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("local CA %s is not a CA certificate; delete it and %s to create a new one", certFile, keyFile)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("local CA key %s cannot sign", keyFile)
	}
	return &localCA{cert: pair.Leaf, key: signer, certPEM: certPEM}, nil
}

func newCA(now time.Time) (*localCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate local CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	machine, _ := os.Hostname()
	name := "ioproxy local CA " + serial.Text(16)[:8]
	if machine != "" {
		name += " (" + machine + ")"
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"ioproxy local CA"}, CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(localCAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create local CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse local CA certificate: %w", err)
	}
	return &localCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// localIssuer keeps the self-signed hosts' certificates, issued by the
// local CA, on disk and in memory.
type localIssuer struct {
	dir   string // certs/local
	ca    *localCA
	caPEM []byte
	log   *slog.Logger
	now   func() time.Time

	mu     sync.RWMutex
	leaves map[string]*tls.Certificate
}

func newLocalIssuer(dataDir string, log *slog.Logger, now func() time.Time) (*localIssuer, error) {
	ca, err := loadOrCreateCA(dataDir, now(), log)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(dataDir, "certs", "local")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	return &localIssuer{dir: dir, ca: ca, caPEM: ca.certPEM, log: log, now: now, leaves: map[string]*tls.Certificate{}}, nil
}

// leaf returns the host's certificate, re-issuing it when it nears expiry.
func (li *localIssuer) leaf(name string) (*tls.Certificate, error) {
	li.mu.RLock()
	c := li.leaves[name]
	li.mu.RUnlock()
	if c != nil && li.fresh(c) {
		return c, nil
	}
	if err := li.ensure(name); err != nil {
		return nil, err
	}
	li.mu.RLock()
	defer li.mu.RUnlock()
	return li.leaves[name], nil
}

func (li *localIssuer) fresh(c *tls.Certificate) bool {
	return li.now().Add(localLeafRenewBefore).Before(c.Leaf.NotAfter)
}

// ensure loads the host's certificate from disk, or issues a new one if
// there is none, it no longer suits (other CA, other names, near expiry).
func (li *localIssuer) ensure(name string) error {
	li.mu.Lock()
	defer li.mu.Unlock()
	if c := li.leaves[name]; c != nil && li.fresh(c) {
		return nil
	}
	certFile, keyFile := li.files(name)
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	switch {
	case err == nil:
		reason := li.unsuitable(&c, name)
		if reason == "" {
			li.leaves[name] = &c
			return nil
		}
		li.log.Info("re-issuing self-signed certificate", "host", name, "reason", reason)
	case !errors.Is(err, fs.ErrNotExist):
		li.log.Warn("re-issuing unreadable self-signed certificate", "host", name, "err", err)
	}
	issued, certPEM, keyPEM, err := li.issue(name)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return fmt.Errorf("write self-signed key for %q: %w", name, err)
	}
	if err := writeFileAtomic(certFile, certPEM, 0o644); err != nil {
		return fmt.Errorf("write self-signed certificate for %q: %w", name, err)
	}
	li.leaves[name] = issued
	li.log.Info("issued self-signed certificate", "host", name, "file", certFile, "not_after", issued.Leaf.NotAfter)
	return nil
}

// files names a host's certificate files; host names are already limited
// to letters, digits, dots and dashes (or an IP), but the name is cleaned
// anyway so that it cannot leave the directory.
func (li *localIssuer) files(name string) (certFile, keyFile string) {
	safe := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		}
		return '_'
	}, name)
	return filepath.Join(li.dir, safe+".pem"), filepath.Join(li.dir, safe+"-key.pem")
}

func (li *localIssuer) unsuitable(c *tls.Certificate, name string) string {
	if !li.fresh(c) {
		return "expires soon"
	}
	if err := c.Leaf.CheckSignatureFrom(li.ca.cert); err != nil {
		return "not issued by the current local CA"
	}
	dns, ips := leafNames(name)
	if !sameStrings(c.Leaf.DNSNames, dns) || len(c.Leaf.IPAddresses) != len(ips) {
		return "names changed"
	}
	for i := range ips {
		if !c.Leaf.IPAddresses[i].Equal(ips[i]) {
			return "names changed"
		}
	}
	return ""
}

// leafNames are the subject alternative names of a host's certificate.
// "localhost" also covers the loopback addresses, which browsers and curl
// reach it by.
func leafNames(name string) (dns []string, ips []net.IP) {
	if ip := net.ParseIP(name); ip != nil {
		return nil, []net.IP{ip}
	}
	if name == "localhost" {
		return []string{name}, []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}
	}
	return []string{name}, nil
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (li *localIssuer) issue(name string) (*tls.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generate key for %q: %w", name, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	now := li.now()
	notAfter := now.Add(localLeafValidity)
	if notAfter.After(li.ca.cert.NotAfter) {
		notAfter = li.ca.cert.NotAfter
	}
	dns, ips := leafNames(name)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"ioproxy self-signed"}, CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, li.ca.cert, key.Public(), li.ca.key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("sign certificate for %q: %w", name, err)
	}
	var certPEM bytes.Buffer
	_ = pem.Encode(&certPEM, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&certPEM, &pem.Block{Type: "CERTIFICATE", Bytes: li.ca.cert.Raw})
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := tls.X509KeyPair(certPEM.Bytes(), keyPEM)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("certificate for %q: %w", name, err)
	}
	return &c, certPEM.Bytes(), keyPEM, nil
}

func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// writeTemp writes data to a new file in dir with the given mode.
func writeTemp(dir string, data []byte, mode os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	if err := f.Chmod(mode); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(name)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(name)
		return "", err
	}
	return name, nil
}

// writeFileAtomic replaces path in one step, so that a reader (or a crash)
// never sees half a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := writeTemp(filepath.Dir(path), data, mode)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
