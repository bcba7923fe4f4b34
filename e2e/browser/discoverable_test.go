package browser_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/browser"
)

// testPKI makes a CA and a certificate for host signed by it, and writes the
// CA to a PEM file.
func testPKI(t *testing.T, host string) (tls.Certificate, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "ioproxy e2e test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}, caFile
}

// TestDiscoverableClient checks the plumbing that ioproxy's end-to-end tests
// stand on: the PDS fetches https://statusphere.ioproxy.dev:<port>/@/client-metadata.json
// from a local server (the name resolves through hosts-preload.js, the
// certificate verifies against ExtraCAFile), and the browser follows the
// whole flow under that name back to the client's callback.
func TestDiscoverableClient(t *testing.T) {
	const host = "statusphere.ioproxy.dev"
	cert, caFile := testPKI(t, host)

	var origin string
	callbacks := make(chan url.Values, 1)
	metadataFetched := make(chan struct{}, 8)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /@/client-metadata.json", func(w http.ResponseWriter, r *http.Request) {
		metadataFetched <- struct{}{}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"client_id":                  origin + "/@/client-metadata.json",
			"client_name":                "ioproxy e2e",
			"client_uri":                 origin,
			"application_type":           "web",
			"grant_types":                []string{"authorization_code", "refresh_token"},
			"response_types":             []string{"code"},
			"redirect_uris":              []string{origin + "/@/callback"},
			"scope":                      "atproto",
			"token_endpoint_auth_method": "none",
			"dpop_bound_access_tokens":   true,
		})
	})
	mux.HandleFunc("GET /@/callback", func(w http.ResponseWriter, r *http.Request) {
		callbacks <- r.URL.Query()
		w.Write([]byte("<title>callback</title>back at the client"))
	})
	srv := httptest.NewUnstartedServer(mux)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	origin = "https://" + host + ":" + u.Port()

	a := atmo.Start(t, atmo.Options{
		Accounts:    []atmo.Account{{Handle: "alice.test", Password: "alice-password"}},
		HostAliases: []string{host},
		ExtraCAFile: caFile,
	})
	client := &loopbackClient{
		pds:      a.PDSURL,
		clientID: origin + "/@/client-metadata.json",
		redirect: origin + "/@/callback",
		codes:    callbacks,
	}
	target, state := client.authorizeURL(t, "alice.test")
	select {
	case <-metadataFetched:
	default:
		t.Fatal("the PDS accepted the request without fetching the client metadata")
	}

	b := browser.Start(t, browser.Options{
		HostResolverRules: map[string]string{host: "127.0.0.1"},
		IgnoreCertErrors:  true,
	})
	navigate(t, b.Ctx(), target)
	if _, err := b.Screenshot(b.Ctx(), "consent-of-discoverable-client"); err != nil {
		t.Error(err)
	}
	ctx, cancel := context.WithTimeout(b.Ctx(), 2*time.Minute)
	defer cancel()
	if err := b.SignInAtPDS(ctx, "alice-password"); err != nil {
		t.Fatal(err)
	}
	client.expectCode(t, state)
}
