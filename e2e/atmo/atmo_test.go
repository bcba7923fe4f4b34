package atmo_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/e2e/atmo"
)

func getJSON(t *testing.T, rawURL string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %s", rawURL, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decode: %v", rawURL, err)
	}
}

func resolveHandle(t *testing.T, a *atmo.Atmosphere, handle string) string {
	t.Helper()
	var out struct {
		DID string `json:"did"`
	}
	getJSON(t, a.PDSURL+"/xrpc/com.atproto.identity.resolveHandle?handle="+url.QueryEscape(handle), &out)
	return out.DID
}

// pdsEndpoint returns the PDS URL in the DID document that PLC serves.
func pdsEndpoint(t *testing.T, a *atmo.Atmosphere, did string) string {
	t.Helper()
	var doc struct {
		Service []struct {
			ID              string `json:"id"`
			ServiceEndpoint string `json:"serviceEndpoint"`
		} `json:"service"`
	}
	getJSON(t, a.PLCURL+"/"+did, &doc)
	for _, s := range doc.Service {
		if s.ID == "#atproto_pds" {
			return s.ServiceEndpoint
		}
	}
	t.Fatalf("DID document of %s has no #atproto_pds service", did)
	return ""
}

func TestAtmosphere(t *testing.T) {
	dataDir := t.TempDir()
	opts := atmo.Options{
		DataDir: dataDir,
		Accounts: []atmo.Account{
			{Handle: "alice.test", Password: "alice-password"},
			{Handle: "bob.test", Password: "bob-password"},
		},
		HostAliases: []string{"statusphere.ioproxy.dev"},
	}

	a := atmo.Start(t, opts)
	if len(a.Accounts) != 2 {
		t.Fatalf("got %d accounts, want 2", len(a.Accounts))
	}
	for _, acc := range a.Accounts {
		if !strings.HasPrefix(acc.DID, "did:plc:") {
			t.Errorf("account %s has DID %q, want did:plc:…", acc.Handle, acc.DID)
		}
		if got := resolveHandle(t, a, acc.Handle); got != acc.DID {
			t.Errorf("resolveHandle(%s) = %q, want %q", acc.Handle, got, acc.DID)
		}
		if got := pdsEndpoint(t, a, acc.DID); got != a.PDSURL {
			t.Errorf("PDS endpoint of %s = %q, want %q", acc.DID, got, a.PDSURL)
		}
	}
	alice, ok := a.Account("alice.test")
	if !ok {
		t.Fatal(`Account("alice.test") not found`)
	}

	var meta struct {
		Issuer string `json:"issuer"`
	}
	getJSON(t, a.PDSURL+"/.well-known/oauth-authorization-server", &meta)
	u, err := url.Parse(a.PDSURL)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("http://localhost:%s", u.Port()); meta.Issuer != want || a.PDSURL != want {
		t.Errorf("issuer = %q, PDSURL = %q, want both %q", meta.Issuer, a.PDSURL, want)
	}

	if err := a.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := a.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	// A restart on the same data directory, on new ports, keeps the
	// account and its DID, accepts the old password, and points the DID
	// document at the new PDS URL.
	b := atmo.Start(t, atmo.Options{
		DataDir:  dataDir,
		Accounts: []atmo.Account{{Handle: "alice.test", Password: "alice-password"}},
	})
	if b.PDSURL == a.PDSURL {
		t.Logf("the restarted PDS got the same URL %s; the re-pointing of DIDs is not exercised", b.PDSURL)
	}
	if got, _ := b.Account("alice.test"); got.DID != alice.DID {
		t.Errorf("after restart alice.test is %q, want %q", got.DID, alice.DID)
	}
	if got := resolveHandle(t, b, "bob.test"); got != a.Accounts[1].DID {
		t.Errorf("after restart resolveHandle(bob.test) = %q, want %q", got, a.Accounts[1].DID)
	}
	if got := pdsEndpoint(t, b, alice.DID); got != b.PDSURL {
		t.Errorf("after restart the PDS endpoint of %s = %q, want %q", alice.DID, got, b.PDSURL)
	}
}

func TestWrongPasswordOnReusedDataDir(t *testing.T) {
	dataDir := t.TempDir()
	a := atmo.Start(t, atmo.Options{
		DataDir:  dataDir,
		Accounts: []atmo.Account{{Handle: "carol.test", Password: "right"}},
	})
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	_, err := atmo.Run(context.Background(), atmo.Options{
		DataDir:  dataDir,
		Accounts: []atmo.Account{{Handle: "carol.test", Password: "wrong"}},
	})
	if err == nil || !strings.Contains(err.Error(), "another password") {
		t.Fatalf("Run with a changed password: err = %v, want one that mentions another password", err)
	}
}

func TestContextCancelStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	a, err := atmo.Run(ctx, atmo.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-a.Done():
	case <-time.After(15 * time.Second):
		_ = a.Stop()
		t.Fatal("node still runs 15s after the context was canceled")
	}
	if err := a.Stop(); err != nil {
		t.Errorf("Stop after cancel: %v", err)
	}
}

func TestMissingNodeModules(t *testing.T) {
	_, err := atmo.Run(context.Background(), atmo.Options{DataDir: t.TempDir(), Dir: t.TempDir()})
	if err != atmo.ErrNoNodeModules {
		t.Fatalf("err = %v, want ErrNoNodeModules", err)
	}
	if !strings.Contains(err.Error(), "npm ci --prefix e2e/atmosphere") {
		t.Errorf("the error does not say how to fix it: %v", err)
	}
}

// ExampleRun is the shape of the one-command local run: a fixed data
// directory keeps the accounts between runs, fixed ports keep the URLs, and
// Ctrl-C stops everything.
func ExampleRun() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := atmo.Run(ctx, atmo.Options{
		DataDir:     ".local/atmosphere",
		PLCPort:     2582,
		PDSPort:     2583,
		Accounts:    []atmo.Account{{Handle: "alice.test", Password: "alice-password"}},
		HostAliases: []string{"statusphere.ioproxy.dev"},
		ExtraCAFile: ".local/ca.pem",
		Stderr:      os.Stderr,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("PDS:", a.PDSURL)
	select {
	case <-ctx.Done():
	case <-a.Done(): // node died
	}
	if err := a.Stop(); err != nil {
		log.Print(err)
	}
}
