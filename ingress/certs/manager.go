// Package certs gives the ingress its TLS certificates: from an ACME CA
// (through golang.org/x/crypto/acme/autocert), from static PEM files that
// are reloaded when they change, or from a local CA that ioproxy creates in
// its data dir for development hosts.
//
// Layout under the data dir:
//
//	certs/local-ca.pem            the local CA certificate (give it to browsers)
//	certs/local-ca-key.pem        its key (0600)
//	certs/local/<host>.pem        a self-signed host's certificate chain
//	certs/local/<host>-key.pem    its key (0600)
//	certs/acme/<directory>/       autocert's cache: account key and certificates,
//	                              one folder per ACME directory URL (unless
//	                              Config.Store keeps them for replicas)
package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
	"golang.org/x/sync/singleflight"

	"github.com/ioproxy/ioproxy/config"
)

// DefaultPollInterval is how often Watch looks at the static files.
const DefaultPollInterval = 5 * time.Second

// Config is what a Manager needs. Hosts in mode "off" are ignored.
type Config struct {
	// DataDir holds the local CA, self-signed certificates and the ACME cache.
	DataDir string
	TLS     config.TLS
	Hosts   []config.Host
	// Logger receives reloads, issuance and errors; slog.Default() when nil.
	Logger *slog.Logger

	// PollInterval is how often Watch stats the static files;
	// DefaultPollInterval when zero.
	PollInterval time.Duration
	// Now returns the current time, for the self-signed certificates'
	// expiry and for when a shared ACME certificate is due for renewal;
	// time.Now when nil. (autocert keeps its own clock.)
	Now func() time.Time
	// ACMEHTTPClient, when set, is used to talk to the ACME server instead
	// of the client built from TLS.ACME.CAFile.
	ACMEHTTPClient *http.Client
	// Store, when set, keeps the ACME account, certificates and challenge
	// answers for every replica that shares it, and lets one replica at a
	// time order a certificate. When nil they are files under DataDir,
	// for the one process that owns it.
	Store Store
}

// Manager hands out certificates by server name. Its methods are safe for
// concurrent use.
type Manager struct {
	log  *slog.Logger
	now  func() time.Time
	poll time.Duration

	// modes holds every host that is served over HTTPS, by name.
	modes map[string]config.TLSMode
	// files maps a files-mode host to its pair; hosts that use the global
	// pair share one.
	files map[string]*staticPair
	pairs []*staticPair

	local *localIssuer // nil when no host is self-signed

	acme      *autocert.Manager  // nil when no host uses ACME
	acmeStore *storeCache        // nil unless Config.Store is set
	acmeWaits singleflight.Group // handshakes waiting for another replica's order, by name
	acmeHTTP  http.Handler       // autocert's HTTP-01 responder
	acmeLog   acmeLogThrottle
}

// New loads the static certificates, creates or loads the local CA and the
// self-signed certificates, and prepares ACME for the hosts in mode "acme".
// ACME certificates are obtained (or read from the cache) on the first
// handshake for each name, and renewed by autocert before they expire.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("certs: DataDir is empty")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	m := &Manager{
		log:   cfg.Logger,
		now:   cfg.Now,
		poll:  cfg.PollInterval,
		modes: map[string]config.TLSMode{},
		files: map[string]*staticPair{},
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.poll <= 0 {
		m.poll = DefaultPollInterval
	}

	selfSigned, acmeHosts, err := m.sortHosts(cfg)
	if err != nil {
		return nil, err
	}
	for _, p := range m.pairs {
		if _, err := p.load(m.log, m.now()); err != nil {
			return nil, fmt.Errorf("certs: %w", err)
		}
	}
	if len(selfSigned) > 0 {
		li, err := newLocalIssuer(cfg.DataDir, m.log, m.now)
		if err != nil {
			return nil, fmt.Errorf("certs: %w", err)
		}
		for _, name := range selfSigned {
			if err := li.ensure(name); err != nil {
				return nil, fmt.Errorf("certs: %w", err)
			}
		}
		m.local = li
	}
	if len(acmeHosts) > 0 {
		am, err := newAutocert(cfg, acmeHosts)
		if err != nil {
			return nil, fmt.Errorf("certs: %w", err)
		}
		m.acme = am
		m.acmeStore, _ = am.Cache.(*storeCache)
		m.acmeLog.last = map[string]time.Time{}
		// Calling autocert's HTTPHandler is what enables http-01 as a
		// fallback after tls-alpn-01.
		m.acmeHTTP = am.HTTPHandler(http.NotFoundHandler())
		m.log.Info("ACME enabled", "directory", am.Client.DirectoryURL, "hosts", acmeHosts)
	}
	return m, nil
}

// sortHosts records each HTTPS host's mode, as config decided it, and
// sorts the hosts by where their certificates come from: files-mode hosts
// get their pairs (one per pair of files), and the names of the
// self-signed and ACME hosts are returned.
func (m *Manager) sortHosts(cfg Config) (selfSigned, acmeHosts []string, err error) {
	pairByFiles := map[[2]string]*staticPair{}
	for _, h := range cfg.Hosts {
		name := config.NormalizeHost(h.Hostname)
		mode := h.TLS.Mode
		if mode == config.TLSOff {
			continue
		}
		if _, dup := m.modes[name]; dup {
			return nil, nil, fmt.Errorf("certs: host %q is listed twice", name)
		}
		m.modes[name] = mode
		switch mode {
		case config.TLSFiles:
			certFile, keyFile := h.TLS.CertFile, h.TLS.KeyFile
			if certFile == "" {
				certFile, keyFile = cfg.TLS.CertFile, cfg.TLS.KeyFile
			}
			if certFile == "" || keyFile == "" {
				return nil, nil, fmt.Errorf("certs: host %q uses mode \"files\" but names no cert_file and key_file", name)
			}
			key := [2]string{certFile, keyFile}
			p := pairByFiles[key]
			if p == nil {
				p = &staticPair{certFile: certFile, keyFile: keyFile}
				pairByFiles[key] = p
				m.pairs = append(m.pairs, p)
			}
			p.hosts = append(p.hosts, name)
			m.files[name] = p
		case config.TLSSelfSigned:
			selfSigned = append(selfSigned, name)
		case config.TLSACME:
			acmeHosts = append(acmeHosts, name)
		case config.TLSAuto:
			// config resolves "auto"; deciding here again would be a
			// second place that chooses a host's certificate.
			return nil, nil, fmt.Errorf("certs: host %q has no TLS mode; give hosts as config.Parse builds them, with HostTLS.Mode set", name)
		default:
			return nil, nil, fmt.Errorf("certs: host %q has unknown TLS mode %q", name, mode)
		}
	}
	return selfSigned, acmeHosts, nil
}

// TLSConfig returns a server configuration for the HTTPS listener: a
// certificate by SNI for the configured hosts only, HTTP/2, and the
// acme-tls/1 protocol for TLS-ALPN-01 challenges.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.getCertificate,
		NextProtos:     []string{"h2", "http/1.1", acme.ALPNProto},
	}
}

// GetCertificate is the tls.Config hook of TLSConfig, for a listener
// whose Manager a reload replaces: it picks the certificate of a
// handshake, as TLSConfig's own does.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return m.getCertificate(hello)
}

// getCertificate picks the certificate for a handshake. A name that is not
// a configured HTTPS host fails the handshake: serving another host's
// certificate would only produce a confusing name-mismatch error.
func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name, mode, ok := m.lookup(hello)
	if !ok {
		if hello.ServerName == "" {
			return nil, fmt.Errorf("no server name (SNI) in the handshake and no host for address %s", localAddr(hello))
		}
		return nil, fmt.Errorf("no certificate for server name %q: not a configured host", hello.ServerName)
	}
	if wantsChallengeCert(hello) && mode != config.TLSACME {
		return nil, fmt.Errorf("acme-tls/1 handshake for %q, whose TLS mode is %q", name, mode)
	}
	switch mode {
	case config.TLSACME:
		if wantsChallengeCert(hello) {
			return m.acme.GetCertificate(hello)
		}
		return m.acmeCertificate(name, hello)
	case config.TLSFiles:
		return m.files[name].current(), nil
	case config.TLSSelfSigned:
		cert, err := m.local.leaf(name)
		if err != nil {
			m.log.Error("self-signed certificate", "host", name, "err", err)
			return nil, fmt.Errorf("certificate for %q: %w", name, err)
		}
		return cert, nil
	}
	return nil, fmt.Errorf("no certificate for %q", name)
}

// lookup finds the host a handshake is for. Clients send no SNI when they
// connect to an IP address, so then the address the connection reached
// names the host, and a loopback address falls back to "localhost" (whose
// self-signed certificate covers 127.0.0.1 and ::1).
func (m *Manager) lookup(hello *tls.ClientHelloInfo) (string, config.TLSMode, bool) {
	if hello.ServerName != "" {
		name := config.NormalizeHost(hello.ServerName)
		mode, ok := m.modes[name]
		return name, mode, ok
	}
	ip := localIP(hello)
	if !ip.IsValid() {
		return "", "", false
	}
	if mode, ok := m.modes[ip.String()]; ok {
		return ip.String(), mode, true
	}
	if ip.IsLoopback() && m.modes["localhost"] == config.TLSSelfSigned {
		return "localhost", config.TLSSelfSigned, true
	}
	return "", "", false
}

func localIP(hello *tls.ClientHelloInfo) netip.Addr {
	if hello.Conn == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(hello.Conn.LocalAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func localAddr(hello *tls.ClientHelloInfo) string {
	if hello.Conn == nil {
		return "unknown"
	}
	return hello.Conn.LocalAddr().String()
}

// wantsChallengeCert mirrors autocert: a TLS-ALPN-01 validation offers
// acme-tls/1 and nothing else.
func wantsChallengeCert(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto
}

// HTTPHandler answers ACME HTTP-01 challenges for the hosts in mode
// "acme" and passes every other request to fallback (404 when nil). The
// ingress decides about redirects in fallback.
func (m *Manager) HTTPHandler(fallback http.Handler) http.Handler {
	if fallback == nil {
		fallback = http.NotFoundHandler()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.acmeHTTP == nil || !strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			fallback.ServeHTTP(w, r)
			return
		}
		name := config.NormalizeHost(r.Host)
		if m.modes[name] != config.TLSACME {
			fallback.ServeHTTP(w, r)
			return
		}
		// autocert checks its host policy against r.Host verbatim, which
		// carries a port when the validation comes to a port other than 80.
		r2 := r.WithContext(r.Context())
		r2.Host = name
		m.acmeHTTP.ServeHTTP(w, r2)
	})
}

// LocalCAPEM returns the local CA certificate in PEM form, or nil when no
// host is self-signed (use LocalCA to create it regardless).
func (m *Manager) LocalCAPEM() []byte {
	if m.local == nil {
		return nil
	}
	return append([]byte(nil), m.local.caPEM...)
}
