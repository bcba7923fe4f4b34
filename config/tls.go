package config

import (
	"net/url"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// tls builds the top-level tls block: what hosts share, the ACME account
// and a default certificate pair.
func (b *builder) tls(raw *tlsSchema) TLS {
	t := TLS{ACME: ACME{Directory: LetsEncryptDirectory}}
	if raw == nil {
		return t
	}
	if (raw.CertFile == "") != (raw.KeyFile == "") {
		rng := raw.CertFileRange
		if raw.CertFile == "" {
			rng = raw.KeyFileRange
		}
		b.errorf(rng, "Incomplete certificate pair", "cert_file and key_file go together; write both or neither.")
	}
	t.CertFile, t.KeyFile = raw.CertFile, raw.KeyFile
	t.CertFileRange, t.KeyFileRange = raw.CertFileRange, raw.KeyFileRange
	b.checkFile(raw.CertFileRange, "cert_file", t.CertFile)
	b.checkFile(raw.KeyFileRange, "key_file", t.KeyFile)
	if raw.ACME != nil {
		t.ACME = b.acme(raw.ACME)
	}
	return t
}

// acme reads the acme block inside tls.
func (b *builder) acme(raw *acmeSchema) ACME {
	a := ACME{Directory: LetsEncryptDirectory, Email: raw.Email}
	if raw.Email != "" && !strings.Contains(raw.Email, "@") {
		b.errorf(raw.EmailRange, "Invalid ACME email", "%q is not an email address; write email = \"ops@example.com\".", raw.Email)
	}
	if raw.Directory != nil {
		a.Directory = *raw.Directory
		b.checkDirectoryURL(raw.DirectoryRange, a.Directory)
	}
	a.CAFile, a.CAFileRange = raw.CAFile, raw.CAFileRange
	b.checkFile(raw.CAFileRange, "ca_file", raw.CAFile)
	return a
}

// checkDirectoryURL requires an ACME directory to be an http(s) URL; unlike
// other service URLs it has a path.
func (b *builder) checkDirectoryURL(rng hcl.Range, s string) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		b.errorf(rng, "Invalid directory", "%q is not an http(s) URL; write, for example, directory = %q.", s, LetsEncryptDirectory)
	}
}

// hostTLS decides how a host gets its certificate. It is the one place
// where mode "auto" (no mode written) becomes a mode: "files" when the
// block names files, otherwise the host's AutoTLSMode. ingress/certs takes
// the mode it finds in HostTLS as given.
func (b *builder) hostTLS(raw *hostTLSSchema, h Host, global TLS) HostTLS {
	t := HostTLS{}
	if raw != nil {
		t = b.hostTLSBlock(raw)
	}
	if t.Mode == TLSAuto {
		t.Mode = h.AutoTLSMode()
	}
	if t.Mode == TLSFiles && t.CertFile == "" {
		if global.CertFile == "" {
			r := hcl.Range{}
			if raw != nil {
				r = raw.DefRange
			}
			b.errorf(r, "No certificate files", "Host %q uses mode = \"files\" but names no cert_file and key_file, here or in the top-level tls block.", h.Hostname)
		}
		t.CertFile, t.KeyFile = global.CertFile, global.KeyFile
		t.CertFileRange, t.KeyFileRange = global.CertFileRange, global.KeyFileRange
	}
	if t.Mode == TLSACME && h.IsLocal() {
		r := hcl.Range{}
		if raw != nil {
			r = raw.ModeRange
		}
		b.errorf(r, "ACME for a local host", "No public CA issues certificates for %q; use mode = \"self_signed\" for local hosts.", h.Hostname)
	}
	return t
}

// hostTLSBlock reads a host's tls block as written, except that files
// without a mode mean mode "files".
func (b *builder) hostTLSBlock(raw *hostTLSSchema) HostTLS {
	t := HostTLS{Mode: TLSMode(raw.Mode), CertFile: raw.CertFile, KeyFile: raw.KeyFile,
		CertFileRange: raw.CertFileRange, KeyFileRange: raw.KeyFileRange}
	switch t.Mode {
	case TLSAuto, TLSACME, TLSFiles, TLSSelfSigned, TLSOff:
	default:
		b.errorf(raw.ModeRange, "Invalid TLS mode", "%q is not a mode; write mode = \"acme\", \"files\", \"self_signed\" or \"off\".", raw.Mode)
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		b.errorf(raw.DefRange, "Incomplete certificate pair", "cert_file and key_file go together; write both or neither.")
	}
	if t.CertFile != "" && t.Mode == TLSAuto {
		t.Mode = TLSFiles
	}
	if t.CertFile != "" && t.Mode != TLSFiles {
		b.errorf(raw.CertFileRange, "Certificate files unused", "cert_file is used only with mode = \"files\"; remove it or set the mode.")
	}
	b.checkFile(raw.CertFileRange, "cert_file", t.CertFile)
	b.checkFile(raw.KeyFileRange, "key_file", t.KeyFile)
	return t
}

// emailRequiredCA names the CA of an ACME directory host that refuses
// accounts without a contact email (such CAs also want external account
// binding); "" for others.
func emailRequiredCA(host string) string {
	switch host {
	case "acme.zerossl.com":
		return "ZeroSSL"
	case "dv.acme-v02.api.pki.goog":
		return "Google Trust Services"
	case "acme.ssl.com":
		return "SSL.com"
	case "acme.digicert.com":
		return "DigiCert"
	case "acme.sectigo.com":
		return "Sectigo"
	case "acme.entrust.net":
		return "Entrust"
	case "acme-v02.harica.gr":
		return "HARICA"
	case "acme.actalis.com":
		return "Actalis"
	case "acme.globalsign.com", "emea.acme.atlas.globalsign.com":
		return "GlobalSign"
	}
	return ""
}
