package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/ioproxy/ioproxy/config"
)

// acmeHTTPTimeout bounds each request to the ACME server; autocert's own
// deadline (five minutes per issuance) bounds the whole exchange.
const acmeHTTPTimeout = 30 * time.Second

// newAutocert prepares an autocert.Manager for exactly the given names. It
// talks to the ACME server only later, when a certificate is needed.
func newAutocert(cfg Config, names []string) (*autocert.Manager, error) {
	dir := cfg.TLS.ACME.Directory
	if dir == "" {
		dir = config.LetsEncryptDirectory
	}
	hc := cfg.ACMEHTTPClient
	if hc == nil {
		var err error
		if hc, err = acmeHTTPClient(cfg.TLS.ACME.CAFile); err != nil {
			return nil, err
		}
	}
	cacheDir, err := acmeCacheDir(cfg.DataDir, dir)
	if err != nil {
		return nil, err
	}
	var cache autocert.Cache = autocert.DirCache(cacheDir)
	if cfg.Store != nil {
		now := cfg.Now
		if now == nil {
			now = time.Now
		}
		log := cfg.Logger
		if log == nil {
			log = slog.Default()
		}
		cache = newStoreCache(cfg.Store, dir, now, log)
	}
	return &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      cache,
		HostPolicy: autocert.HostWhitelist(names...),
		Email:      cfg.TLS.ACME.Email,
		Client: &acme.Client{
			DirectoryURL: dir,
			HTTPClient:   hc,
			UserAgent:    "ioproxy",
		},
	}, nil
}

// acmeCacheDir keeps each ACME directory's account and certificates apart:
// autocert's cache is keyed by host name only, so moving from a staging
// directory to production must not keep serving the staging certificate.
func acmeCacheDir(dataDir, directory string) (string, error) {
	u, err := url.Parse(directory)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("ACME directory %q is not a URL", directory)
	}
	sum := sha256.Sum256([]byte(directory))
	host := strings.NewReplacer(":", "_", "[", "", "]", "").Replace(u.Host)
	return filepath.Join(dataDir, "certs", "acme", host+"-"+hex.EncodeToString(sum[:4])), nil
}

// acmeHTTPClient trusts the system roots plus, when caFile is set, the
// certificates in it (a private ACME server, or Pebble in tests).
func acmeHTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		pemData, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read ACME ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, fmt.Errorf("ACME ca_file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{Transport: tr, Timeout: acmeHTTPTimeout}, nil
}

// acmeLogEvery limits the logging of a name's ACME failures. After a
// failed issuance autocert refuses that name for a minute without asking
// the CA again (so browsers and bots that retry do not use up the CA's
// limit on failed validations); each of those handshakes fails with the
// same cause, which need not fill the log.
const acmeLogEvery = time.Minute

// acmeLogThrottle remembers when a name's failure was last logged.
type acmeLogThrottle struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// acmeCertificate returns the name's certificate from autocert: from
// memory, from the cache in the data dir, or newly issued.
func (m *Manager) acmeCertificate(name string, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, err := m.acme.GetCertificate(hello)
	if errors.Is(err, errIssuingElsewhere) {
		cert, err = m.awaitOrder(name, hello)
	}
	if err == nil {
		return cert, nil
	}
	now := m.now()
	m.acmeLog.mu.Lock()
	logIt := now.Sub(m.acmeLog.last[name]) >= acmeLogEvery
	if logIt {
		m.acmeLog.last[name] = now
	}
	m.acmeLog.mu.Unlock()
	if logIt {
		m.log.Error("ACME certificate failed; the next handshake after a minute tries again", "host", name, "err", err)
	}
	return nil, fmt.Errorf("certificate for %q: %w", name, err)
}

// Waiting for another replica's order: how long, and how often autocert
// is asked again meanwhile (each ask reads the store once).
const (
	orderWaitMax  = 2 * time.Minute
	orderWaitPoll = 500 * time.Millisecond
)

// awaitOrder waits, outside autocert, while another replica orders the
// certificate of name, asking autocert again until it has the
// certificate (stored by the other replica), orders it here (the other
// gave up), or fails otherwise. The handshakes that wait for one name
// share one waiter; each gives up when its own handshake does.
func (m *Manager) awaitOrder(name string, hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ctx := hello.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ch := m.acmeWaits.DoChan(name, func() (any, error) {
		deadline := time.Now().Add(orderWaitMax)
		for time.Now().Before(deadline) {
			time.Sleep(orderWaitPoll)
			cert, err := m.acme.GetCertificate(hello)
			if !errors.Is(err, errIssuingElsewhere) {
				return cert, err
			}
		}
		return nil, fmt.Errorf("%w: still after %v", errIssuingElsewhere, orderWaitMax)
	})
	select {
	case res := <-ch:
		cert, _ := res.Val.(*tls.Certificate)
		if res.Err == nil && hello.SupportsCertificate(cert) != nil {
			// The waiter asked for another kind (ECDSA, RSA) than this
			// client takes; the wait is over, so ask for this one.
			return m.acme.GetCertificate(hello)
		}
		return cert, res.Err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Prefetch obtains the certificates of the ACME hosts (from the cache, or
// newly issued) one after another, so that the first visitor does not wait
// for issuance. Call it once the listeners accept connections: the CA
// validates through them. It returns when done or when ctx ends.
func (m *Manager) Prefetch(ctx context.Context) {
	if m.acme == nil {
		return
	}
	names := make([]string, 0, len(m.modes))
	for name, mode := range m.modes {
		if mode == config.TLSACME {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		if ctx.Err() != nil {
			return
		}
		// Describe a modern client so that autocert obtains the ECDSA
		// certificate browsers will ask for.
		hello := &tls.ClientHelloInfo{
			ServerName:        name,
			SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
			SupportedCurves:   []tls.CurveID{tls.CurveP256},
			CipherSuites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
		}
		if _, err := m.acmeCertificate(name, hello); err == nil {
			m.log.Info("ACME certificate ready", "host", name)
		}
	}
}
