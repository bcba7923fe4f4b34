package identity

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bluesky-social/indigo/atproto/syntax"
)

// fakeNet is a fake PLC directory, XRPC handle resolver and did:web host in
// one httptest server.
type fakeNet struct {
	srv *httptest.Server

	mu      sync.Mutex
	docs    map[string]map[string]any // DID → document (PLC)
	webDocs map[string]map[string]any // path host → did.json
	handles map[string]string         // handle → DID (XRPC)

	plcHits, xrpcHits, webHits atomic.Int64
	xrpcStatus                 int // when set, resolveHandle answers this status
}

func newFakeNet(t *testing.T) *fakeNet {
	t.Helper()
	f := &fakeNet{
		docs:    map[string]map[string]any{},
		webDocs: map[string]map[string]any{},
		handles: map[string]string{},
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeNet) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/xrpc/com.atproto.identity.resolveHandle":
		f.xrpcHits.Add(1)
		if f.xrpcStatus != 0 {
			w.WriteHeader(f.xrpcStatus)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		did, ok := f.handles[r.URL.Query().Get("handle")]
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"InvalidRequest","message":"Unable to resolve handle"}`)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"did": did})
	case r.URL.Path == "/.well-known/did.json":
		f.webHits.Add(1)
		doc, ok := f.webDocs[r.Host]
		if !ok {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(doc)
	case strings.HasPrefix(r.URL.Path, "/did:plc:"):
		f.plcHits.Add(1)
		doc, ok := f.docs[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"message":"DID not registered"}`)
			return
		}
		json.NewEncoder(w).Encode(doc)
	default:
		http.NotFound(w, r)
	}
}

func didDoc(did, handle, pds string) map[string]any {
	doc := map[string]any{
		"@context": []string{"https://www.w3.org/ns/did/v1"},
		"id":       did,
	}
	if handle != "" {
		doc["alsoKnownAs"] = []string{"at://" + handle}
	}
	if pds != "" {
		doc["service"] = []map[string]string{{
			"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": pds,
		}}
	}
	return doc
}

// account registers a PLC DID, its document and (if handle != "") its
// handle at the XRPC resolver.
func (f *fakeNet) account(did, handle, pds string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.docs[did] = didDoc(did, handle, pds)
	if handle != "" {
		f.handles[handle] = did
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newResolver(t *testing.T, f *fakeNet, clock *fakeClock) *Resolver {
	t.Helper()
	cfg := Config{
		PLCURL:         f.srv.URL,
		HandleResolver: f.srv.URL,
		AllowInsecure:  true, // httptest is loopback, plain http
	}
	if clock != nil {
		cfg.Now = clock.Now
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return New(cfg)
}

const (
	aliceDID = "did:plc:aliceaaaaaaaaaaaaaaaaaaa"
	bobDID   = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb"
	carolDID = "did:plc:carolcccccccccccccccccc"
)

func TestLookupHandle(t *testing.T) {
	f := newFakeNet(t)
	f.account(aliceDID, "alice.test", "https://pds.example.com/")
	r := newResolver(t, f, nil)

	for _, input := range []string{"alice.test", "@alice.test", "ALICE.Test", " @Alice.TEST \n"} {
		ident, err := r.Lookup(context.Background(), input)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", input, err)
		}
		want := Identity{DID: aliceDID, Handle: "alice.test", PDS: "https://pds.example.com"}
		if *ident != want {
			t.Errorf("Lookup(%q) = %+v, want %+v", input, *ident, want)
		}
	}
	if n := f.plcHits.Load(); n != 1 {
		t.Errorf("PLC hit %d times, want 1 (cached)", n)
	}
}

func TestLookupDID(t *testing.T) {
	f := newFakeNet(t)
	f.account(aliceDID, "alice.test", "https://pds.example.com")
	r := newResolver(t, f, nil)
	ident, err := r.Lookup(context.Background(), aliceDID)
	if err != nil {
		t.Fatal(err)
	}
	if ident.Handle != "alice.test" || ident.DID != aliceDID || ident.PDS != "https://pds.example.com" {
		t.Fatalf("got %+v", ident)
	}
	// A DID lookup verified the handle, so a handle lookup is now cached.
	xrpc, plc := f.xrpcHits.Load(), f.plcHits.Load()
	if _, err := r.Lookup(context.Background(), "alice.test"); err != nil {
		t.Fatal(err)
	}
	if f.xrpcHits.Load() != xrpc || f.plcHits.Load() != plc {
		t.Error("handle lookup after DID lookup was not served from cache")
	}
}

func TestHandleMismatch(t *testing.T) {
	f := newFakeNet(t)
	f.account(aliceDID, "alice.test", "https://pds.example.com")
	// bob's document claims alice.test, which resolves to alice.
	f.account(bobDID, "", "https://pds.example.com")
	f.mu.Lock()
	f.docs[bobDID] = didDoc(bobDID, "alice.test", "https://pds.example.com")
	// mallory.test resolves to alice, whose document does not claim it.
	f.handles["mallory.test"] = aliceDID
	// carol claims a handle that resolves nowhere.
	f.docs[carolDID] = didDoc(carolDID, "ghost.test", "https://pds.example.com")
	f.mu.Unlock()
	r := newResolver(t, f, nil)
	ctx := context.Background()

	_, err := r.Lookup(ctx, "mallory.test")
	if !errors.Is(err, ErrHandleMismatch) {
		t.Fatalf("Lookup(mallory.test) = %v, want ErrHandleMismatch", err)
	}
	if msg := UserMessage(err); !strings.Contains(msg, "mallory.test") || !strings.Contains(msg, "alice.test") {
		t.Errorf("message %q should name both handles", msg)
	}

	for _, did := range []string{bobDID, carolDID} {
		ident, err := r.LookupDID(ctx, syntax.DID(did))
		if err != nil {
			t.Fatalf("LookupDID(%s): %v", did, err)
		}
		if ident.Handle != syntax.HandleInvalid {
			t.Errorf("LookupDID(%s).Handle = %q, want handle.invalid", did, ident.Handle)
		}
		if ident.PDS != "https://pds.example.com" {
			t.Errorf("LookupDID(%s).PDS = %q", did, ident.PDS)
		}
	}
	// The unverified handle must not become a cache key for bob.
	ident, err := r.Lookup(ctx, "alice.test")
	if err != nil || ident.DID != aliceDID {
		t.Fatalf("Lookup(alice.test) = %+v, %v", ident, err)
	}
	// A DID without any handle.
	f.account("did:plc:nohandleeeeeeeeeeeeeeeee", "", "https://pds.example.com")
	ident, err = r.LookupDID(ctx, "did:plc:nohandleeeeeeeeeeeeeeeee")
	if err != nil || ident.Handle != syntax.HandleInvalid {
		t.Fatalf("no handle: %+v, %v", ident, err)
	}
}

func TestCacheExpiry(t *testing.T) {
	f := newFakeNet(t)
	f.account(aliceDID, "alice.test", "https://pds.example.com")
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	r := newResolver(t, f, clock)
	ctx := context.Background()

	lookup := func() {
		t.Helper()
		if _, err := r.Lookup(ctx, "alice.test"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.LookupDID(ctx, aliceDID); err != nil {
			t.Fatal(err)
		}
	}
	lookup()
	if n := f.plcHits.Load(); n != 1 {
		t.Fatalf("PLC hits = %d, want 1", n)
	}
	clock.Advance(DefaultCacheTTL - time.Second)
	lookup()
	if n := f.plcHits.Load(); n != 1 {
		t.Fatalf("before expiry: PLC hits = %d, want 1", n)
	}
	clock.Advance(2 * time.Second)
	lookup()
	if n := f.plcHits.Load(); n != 2 {
		t.Fatalf("after expiry: PLC hits = %d, want 2", n)
	}

	// A negative TTL disables the cache.
	nocache := New(Config{PLCURL: f.srv.URL, HandleResolver: f.srv.URL, AllowInsecure: true, CacheTTL: -1})
	before := f.plcHits.Load()
	for range 3 {
		if _, err := nocache.LookupDID(ctx, aliceDID); err != nil {
			t.Fatal(err)
		}
	}
	if n := f.plcHits.Load() - before; n != 3 {
		t.Errorf("no cache: PLC hits = %d, want 3", n)
	}
}

func TestLookupDIDFresh(t *testing.T) {
	f := newFakeNet(t)
	f.account(aliceDID, "alice.test", "https://old-pds.example.com")
	r := newResolver(t, f, nil)
	ctx := context.Background()

	if _, err := r.LookupDID(ctx, aliceDID); err != nil {
		t.Fatal(err)
	}
	// The account migrates and changes handle.
	f.account(aliceDID, "alice2.test", "https://new-pds.example.com")

	cached, err := r.LookupDID(ctx, aliceDID)
	if err != nil || cached.PDS != "https://old-pds.example.com" {
		t.Fatalf("cached lookup = %+v, %v; want the old PDS from cache", cached, err)
	}
	fresh, err := r.LookupDIDFresh(ctx, aliceDID)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.PDS != "https://new-pds.example.com" || fresh.Handle != "alice2.test" {
		t.Fatalf("fresh lookup = %+v", fresh)
	}
	again, err := r.LookupDID(ctx, aliceDID)
	if err != nil || *again != *fresh {
		t.Fatalf("cache not refreshed: %+v, %v", again, err)
	}
	// The old handle no longer leads to alice through the cache.
	if ident, err := r.Lookup(ctx, "alice.test"); err == nil {
		t.Fatalf("Lookup(alice.test) = %+v after the handle moved, want an error", ident)
	}
}

func TestDIDWeb(t *testing.T) {
	f := newFakeNet(t)
	hostport := strings.TrimPrefix(f.srv.URL, "http://")
	_, port, _ := net.SplitHostPort(hostport)
	did := "did:web:localhost%3A" + port
	f.mu.Lock()
	f.webDocs["localhost:"+port] = didDoc(did, "web.test", "http://localhost:"+port)
	f.handles["web.test"] = did
	f.mu.Unlock()
	r := newResolver(t, f, nil)
	ctx := context.Background()

	ident, err := r.Lookup(ctx, "web.test")
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{DID: syntax.DID(did), Handle: "web.test", PDS: "http://localhost:" + port}
	if *ident != want {
		t.Fatalf("got %+v, want %+v", *ident, want)
	}
	ident, err = r.LookupDIDFresh(ctx, syntax.DID(did))
	if err != nil || ident.Handle != "web.test" {
		t.Fatalf("LookupDIDFresh(%s) = %+v, %v", did, ident, err)
	}

	// A document for another DID is refused.
	f.mu.Lock()
	f.webDocs["localhost:"+port] = didDoc("did:web:evil.example.com", "web.test", "http://localhost:"+port)
	f.mu.Unlock()
	if _, err := r.LookupDIDFresh(ctx, syntax.DID(did)); !errors.Is(err, ErrDIDNotFound) {
		t.Errorf("mismatched document id: got %v, want ErrDIDNotFound", err)
	}

	// Without the development switch, localhost did:web is refused before
	// any request.
	strict := New(Config{HandleResolver: "https://resolver.example.com", HTTPClient: failingClient(t)})
	if _, err := strict.LookupDID(ctx, syntax.DID(did)); !errors.Is(err, ErrUnsupportedDID) {
		t.Errorf("strict localhost did:web: got %v, want ErrUnsupportedDID", err)
	}
}

func TestDIDWebURL(t *testing.T) {
	r := New(Config{AllowInsecure: false})
	dev := New(Config{AllowInsecure: true})
	tests := []struct {
		r    *Resolver
		did  string
		want string // "" means ErrUnsupportedDID
	}{
		{r, "did:web:example.com", "https://example.com/.well-known/did.json"},
		{r, "did:web:Sub.Example.COM", "https://sub.example.com/.well-known/did.json"},
		{r, "did:web:example.com%3A8443", ""},
		{r, "did:web:example.com:user:alice", ""},
		{r, "did:web:localhost", ""},
		{r, "did:web:localhost%3A2583", ""},
		{r, "did:web:foo.local", ""},
		{r, "did:web:foo.internal", ""},
		{r, "did:web:127.0.0.1", ""},
		{r, "did:web:nodots", ""},
		{dev, "did:web:localhost%3A2583", "http://localhost:2583/.well-known/did.json"},
		{dev, "did:web:localhost", "http://localhost/.well-known/did.json"},
		{dev, "did:web:example.com%3A8443", ""},
	}
	for _, tt := range tests {
		got, err := tt.r.didWebURL(syntax.DID(tt.did))
		if tt.want == "" {
			if !errors.Is(err, ErrUnsupportedDID) {
				t.Errorf("didWebURL(%s) = %q, %v; want ErrUnsupportedDID", tt.did, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("didWebURL(%s) = %q, %v; want %q", tt.did, got, err, tt.want)
		}
	}
}

func TestErrors(t *testing.T) {
	f := newFakeNet(t)
	f.account("did:plc:nopdsssssssssssssssssssss", "nopds.test", "")
	f.account("did:plc:ftppdsssssssssssssssssss", "ftppds.test", "ftp://pds.example.com")
	f.account("did:plc:orphannnnnnnnnnnnnnnnnnn", "", "https://pds.example.com")
	f.mu.Lock()
	f.handles["orphan.test"] = "did:plc:missingggggggggggggggggg"
	f.mu.Unlock()
	r := newResolver(t, f, nil)
	ctx := context.Background()

	tests := []struct {
		input string
		kind  error
		msg   string
	}{
		{"nobody.test", ErrHandleNotFound, "handle nobody.test does not resolve to an account"},
		{"@Nobody.Test", ErrHandleNotFound, "handle nobody.test does not resolve to an account"},
		{"orphan.test", ErrDIDNotFound, "account did:plc:missingggggggggggggggggg was not found"},
		{"did:plc:missingggggggggggggggggg", ErrDIDNotFound, "account did:plc:missingggggggggggggggggg was not found"},
		{"nopds.test", ErrNoPDS, "account did:plc:nopdsssssssssssssssssssss has no PDS in its DID document"},
		{"ftppds.test", ErrNoPDS, "account did:plc:ftppdsssssssssssssssssss has an unusable PDS endpoint"},
		{"", ErrInvalidInput, "is not a valid handle"},
		{"not a handle", ErrInvalidInput, "is not a valid handle"},
		{"alice", ErrInvalidInput, "is not a valid handle"},
		{"handle.invalid", ErrInvalidInput, "is not a valid handle"},
		{"did:", ErrInvalidInput, "is not a valid DID"},
		{"alice.local", ErrHandleNotFound, "reserved top-level domain"},
		{"did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", ErrUnsupportedDID, "only did:plc and did:web"},
	}
	for _, tt := range tests {
		_, err := r.Lookup(ctx, tt.input)
		if !errors.Is(err, tt.kind) {
			t.Errorf("Lookup(%q) = %v, want %v", tt.input, err, tt.kind)
			continue
		}
		if msg := UserMessage(err); !strings.Contains(msg, tt.msg) {
			t.Errorf("Lookup(%q) message %q, want it to contain %q", tt.input, msg, tt.msg)
		}
	}

	f.mu.Lock()
	f.xrpcStatus = http.StatusInternalServerError
	f.mu.Unlock()
	_, err := r.ResolveHandle(ctx, "anyone.test")
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("resolver 500: got %v, want ErrUnavailable", err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := r.Lookup(canceled, "someone.test"); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled context: got %v", err)
	}
}

func TestCheckPDS(t *testing.T) {
	strict := &Resolver{}
	dev := &Resolver{allowInsecure: true}
	tests := []struct {
		r    *Resolver
		in   string
		want string // "" means refused
	}{
		{strict, "https://pds.example.com", "https://pds.example.com"},
		{strict, "https://PDS.Example.com/", "https://pds.example.com"},
		{strict, "HTTPS://pds.example.com:8443/", "https://pds.example.com:8443"},
		{strict, "https://pds.example.com/base/", "https://pds.example.com/base"},
		{strict, "http://pds.example.com", ""},
		{strict, "ftp://pds.example.com", ""},
		{strict, "pds.example.com", ""},
		{strict, "/relative", ""},
		{strict, "https://", ""},
		{strict, "https://user:pw@pds.example.com", ""},
		{strict, "https://pds.example.com?x=1", ""},
		{strict, "https://pds.example.com#f", ""},
		{strict, "javascript:alert(1)", ""},
		{strict, "", ""},
		{dev, "http://localhost:2583", "http://localhost:2583"},
		{dev, "http://127.0.0.1:2583/", "http://127.0.0.1:2583"},
		{dev, "ftp://localhost", ""},
	}
	for _, tt := range tests {
		got, err := tt.r.checkPDS(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("checkPDS(%q) = %q, want refusal", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("checkPDS(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{CacheTTL: 9 * time.Minute}, true},
		{Config{CacheTTL: 10 * time.Minute}, false},
		{Config{CacheTTL: time.Hour}, false},
		{Config{PLCURL: "https://plc.example.com/"}, true},
		{Config{PLCURL: "http://localhost:2582"}, false},
		{Config{PLCURL: "http://localhost:2582", AllowInsecure: true}, true},
		{Config{PLCURL: "plc.example.com"}, false},
		{Config{HandleResolver: "http://localhost:2583"}, false},
		{Config{HandleResolver: "http://localhost:2583", AllowInsecure: true}, true},
		{Config{HandleResolver: "https://api.example.com?x=1"}, false},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != tt.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tt.cfg, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrConfig) {
			t.Errorf("Validate error %v is not ErrConfig", err)
		}
	}
	// An invalid config fails every lookup rather than being half-applied.
	r := New(Config{CacheTTL: time.Hour, HTTPClient: failingClient(t)})
	if _, err := r.Lookup(context.Background(), "alice.test"); !errors.Is(err, ErrConfig) {
		t.Errorf("lookup with invalid config: %v", err)
	}
}

// failingClient fails the test if any request is made.
func failingClient(t *testing.T) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		t.Errorf("unexpected request to %s", r.URL)
		return nil, errors.New("no network in this test")
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestWellKnownAndPLCOverHTTPS exercises the production path: no XRPC
// resolver, DNS TXT (failing here), then the HTTPS well-known; PLC over
// https. Every connection goes to one local TLS server.
func TestWellKnownAndPLCOverHTTPS(t *testing.T) {
	var wellKnownHits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Host == "alice.example.com" && r.URL.Path == "/.well-known/atproto-did":
			wellKnownHits.Add(1)
			fmt.Fprintln(w, aliceDID)
		case r.Host == "plc.example.com" && r.URL.Path == "/"+aliceDID:
			json.NewEncoder(w).Encode(didDoc(aliceDID, "alice.example.com", "https://pds.example.com"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	var dnsDials atomic.Int64
	r := New(Config{
		PLCURL:     "https://plc.example.com",
		HTTPClient: client,
		DNSDial: func(ctx context.Context, network, address string) (net.Conn, error) {
			dnsDials.Add(1)
			return nil, errors.New("no DNS in tests")
		},
	})
	ident, err := r.Lookup(context.Background(), "@Alice.Example.com")
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{DID: aliceDID, Handle: "alice.example.com", PDS: "https://pds.example.com"}
	if *ident != want {
		t.Fatalf("got %+v, want %+v", *ident, want)
	}
	if dnsDials.Load() == 0 || wellKnownHits.Load() != 1 {
		t.Errorf("DNS dials %d, well-known hits %d; want DNS tried, then one well-known fetch", dnsDials.Load(), wellKnownHits.Load())
	}
	_, err = r.Lookup(context.Background(), "bob.example.com")
	if !errors.Is(err, ErrHandleNotFound) || UserMessage(err) != "handle bob.example.com does not resolve to an account" {
		t.Errorf("unknown handle: %v", err)
	}
}

func TestDefaultClientIsGuarded(t *testing.T) {
	// With the default (safehttp) client and no development switch, a PLC
	// directory that resolves to loopback is refused at dial time.
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	r := New(Config{PLCURL: "https://localhost:" + u.Port(), HandleResolver: "https://localhost:" + u.Port()})
	_, err := r.LookupDID(context.Background(), aliceDID)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("got %v, want a loopback refusal", err)
	}
}

func TestConcurrentLookups(t *testing.T) {
	f := newFakeNet(t)
	for i := range 5 {
		f.account(fmt.Sprintf("did:plc:user%dxxxxxxxxxxxxxxxxxxx", i), fmt.Sprintf("user%d.test", i), "https://pds.example.com")
	}
	clock := &fakeClock{t: time.Now()}
	r := newResolver(t, f, clock)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				n := (g + i) % 5
				if i%10 == 0 {
					clock.Advance(time.Minute)
				}
				var err error
				if i%2 == 0 {
					_, err = r.Lookup(context.Background(), fmt.Sprintf("user%d.test", n))
				} else {
					_, err = r.LookupDIDFresh(context.Background(), syntax.DID(fmt.Sprintf("did:plc:user%dxxxxxxxxxxxxxxxxxxx", n)))
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestSharedLookups(t *testing.T) {
	f := newFakeNet(t)
	f.account(aliceDID, "alice.test", "https://pds.example.com")
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		f.serve(w, r)
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	r := New(Config{PLCURL: slow.URL, HandleResolver: slow.URL, AllowInsecure: true})

	// A caller that gives up does not fail the others.
	impatient, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := r.LookupDID(impatient, aliceDID)
		errc <- err
	}()
	var wg sync.WaitGroup
	results := make(chan error, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ident, err := r.LookupDID(context.Background(), aliceDID)
			if err == nil && ident.Handle != "alice.test" {
				err = fmt.Errorf("got %+v", ident)
			}
			results <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the callers join the flight
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("impatient caller: %v", err)
	}
	close(release)
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Error(err)
		}
	}
	if n := f.plcHits.Load(); n != 1 {
		t.Errorf("PLC hits = %d, want 1 shared fetch", n)
	}
}
