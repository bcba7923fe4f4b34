package certs

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ioproxy/ioproxy/internal/every"
)

// staticPair is one certificate and key file pair, shared by the hosts
// that name it.
type staticPair struct {
	certFile, keyFile string
	hosts             []string

	cert atomic.Pointer[tls.Certificate]

	mu sync.Mutex // serialises loads; guards seen
	// seen is the files' state at the last load attempt, successful or
	// not, so that a broken file is reported once rather than every poll.
	seen [2]fileStamp
}

// fileStamp is what Watch compares to notice a changed file. It includes
// a hash of the content: a renewed certificate of the same size, written
// within the file system's timestamp resolution, has the same time and
// size. The files are small, so reading them each poll is cheap.
type fileStamp struct {
	mod  time.Time
	size int64
	sum  [sha256.Size]byte
	err  string
}

func stamp(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{err: err.Error()}
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if b, err := os.ReadFile(path); err == nil && len(b) < 1<<20 {
		st.sum = sha256.Sum256(b)
	}
	return st
}

func (p *staticPair) current() *tls.Certificate { return p.cert.Load() }

// load reads the pair. On failure the previous certificate stays in place.
// changed reports whether a new certificate was installed.
func (p *staticPair) load(log *slog.Logger, now time.Time) (changed bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seen = [2]fileStamp{stamp(p.certFile), stamp(p.keyFile)}
	cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		return false, fmt.Errorf("load certificate %s with key %s for %v: %w", p.certFile, p.keyFile, p.hosts, err)
	}
	for _, h := range p.hosts {
		if err := cert.Leaf.VerifyHostname(h); err != nil {
			log.Warn("certificate does not cover host", "file", p.certFile, "host", h, "names", cert.Leaf.DNSNames, "ips", cert.Leaf.IPAddresses)
		}
	}
	if now.After(cert.Leaf.NotAfter) {
		log.Warn("certificate has expired", "file", p.certFile, "not_after", cert.Leaf.NotAfter)
	}
	if old := p.cert.Load(); old != nil && sameChain(old, &cert) {
		return false, nil
	}
	p.cert.Store(&cert)
	return true, nil
}

// changedSince reports whether either file differs from the last attempt.
func (p *staticPair) changedSince() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen != [2]fileStamp{stamp(p.certFile), stamp(p.keyFile)}
}

func sameChain(a, b *tls.Certificate) bool {
	if len(a.Certificate) != len(b.Certificate) {
		return false
	}
	for i := range a.Certificate {
		if string(a.Certificate[i]) != string(b.Certificate[i]) {
			return false
		}
	}
	return true
}

// Reload reads every static certificate and key file again (the ingress
// calls it on SIGHUP). A pair that fails to load keeps serving its
// previous certificate; the returned error names each failure.
func (m *Manager) Reload() error {
	var errs []error
	for _, p := range m.pairs {
		if err := m.reloadPair(p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) reloadPair(p *staticPair) error {
	changed, err := p.load(m.log, m.now())
	if err != nil {
		m.log.Error("certificate reload failed; keeping the previous certificate", "hosts", p.hosts, "err", err)
		return err
	}
	if changed {
		leaf := p.current().Leaf
		m.log.Info("certificate reloaded", "hosts", p.hosts, "file", p.certFile, "serial", leaf.SerialNumber.Text(16), "not_after", leaf.NotAfter)
	}
	return nil
}

// Watch polls the static files' modification times and sizes every
// PollInterval and reloads a pair when either of its files changed. It
// returns when ctx is done (at once when no host uses files). Certificate files are often replaced in two
// steps (certificate, then key); a half-written pair fails to load, keeps
// the old certificate, and loads on the next poll once both are in place.
func (m *Manager) Watch(ctx context.Context) {
	if len(m.pairs) == 0 {
		return
	}
	every.Tick(ctx, m.poll, func(context.Context) {
		for _, p := range m.pairs {
			if p.changedSince() {
				_ = m.reloadPair(p) // logged by reloadPair
			}
		}
	})
}
