package safehttp

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		addr   string
		reason string // substring of the refusal; "" means allowed
	}{
		// public
		{"1.1.1.1", ""},
		{"8.8.8.8", ""},
		{"93.184.216.34", ""},
		{"100.63.255.255", ""},
		{"100.128.0.0", ""},
		{"172.15.255.255", ""},
		{"172.32.0.0", ""},
		{"192.169.0.1", ""},
		{"198.17.255.255", ""},
		{"198.20.0.0", ""},
		{"223.255.255.255", ""},
		{"2606:4700:4700::1111", ""},
		{"2001:4860:4860::8888", ""},
		{"2a00:1450:4001:80b::200e", ""},
		{"::ffff:8.8.8.8", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of 8.8.8.8

		// IPv4 specials
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"10.0.0.1", "private"},
		{"10.255.255.255", "private"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.254", "carrier-grade NAT"},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"169.254.169.254", "link-local"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.0.0.8", "IETF protocol assignment"},
		{"192.0.2.1", "documentation"},
		{"192.88.99.1", "6to4 relay"},
		{"192.168.1.1", "private"},
		{"198.18.0.1", "benchmarking"},
		{"198.19.255.255", "benchmarking"},
		{"198.51.100.7", "documentation"},
		{"203.0.113.9", "documentation"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"240.0.0.1", "reserved"},
		{"255.255.255.255", "reserved"},

		// IPv6 specials
		{"::", "unspecified"},
		{"::1", "loopback"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"febf:ffff::1", "link-local"},
		{"fec0::1", "site-local"},
		{"fc00::1", "unique local"},
		{"fd12:3456:789a::1", "unique local"},
		{"ff02::1", "multicast"},
		{"ff05::1:3", "multicast"},
		{"100::1", "discard-only"},
		{"2001:db8::1", "documentation"},
		{"3fff::1", "documentation"},
		{"2001::1", "IETF protocol assignment"},    // Teredo
		{"2001:2::1", "IETF protocol assignment"},  // benchmarking
		{"2001:10::1", "IETF protocol assignment"}, // ORCHID
		{"2002:7f00:1::1", "6to4"},                 // 6to4 of 127.0.0.1
		{"2002:808:808::1", "6to4"},                // 6to4 is deprecated altogether
		{"5f00::1", "segment routing"},             //
		{"::2", "outside 2000::/3"},                // IPv4-compatible, deprecated
		{"::127.0.0.1", "outside 2000::/3"},        // IPv4-compatible loopback
		{"::ffff:0:7f00:1", "outside 2000::/3"},    // IPv4-translated (SIIT)
		{"4000::1", "outside 2000::/3"},            // unallocated
		{"64:ff9b:1::a00:1", "local-use NAT64"},    //
		{"64:ff9b::7f00:1", "NAT64 address embedding 127.0.0.1 (loopback"},
		{"64:ff9b::a9fe:a9fe", "NAT64 address embedding 169.254.169.254"},
		{"64:ff9b::c0a8:101", "NAT64 address embedding 192.168.1.1 (private"},

		// IPv4-mapped IPv6 forms
		{"::ffff:127.0.0.1", "IPv4-mapped loopback"},
		{"::ffff:7f00:1", "IPv4-mapped loopback"},
		{"::ffff:10.1.2.3", "IPv4-mapped private"},
		{"::ffff:169.254.169.254", "IPv4-mapped link-local"},
		{"::ffff:100.64.0.1", "IPv4-mapped carrier-grade NAT"},
		{"::ffff:0.0.0.0", "IPv4-mapped unspecified"},
		{"::ffff:224.0.0.1", "IPv4-mapped multicast"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			addr, err := netip.ParseAddr(tt.addr)
			if err != nil {
				t.Fatalf("bad test address: %v", err)
			}
			err = CheckAddr(addr)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("CheckAddr(%s) = %v, want allowed", tt.addr, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckAddr(%s) allowed, want refusal containing %q", tt.addr, tt.reason)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("CheckAddr(%s) = %q, want it to contain %q", tt.addr, err, tt.reason)
			}
			if !errors.Is(err, ErrRefused) {
				t.Errorf("errors.Is(%v, ErrRefused) = false", err)
			}
		})
	}
}

func TestRefusalMessage(t *testing.T) {
	err := CheckAddr(netip.MustParseAddr("127.0.0.1"))
	want := "refusing to connect to 127.0.0.1: loopback address; set identity.allow_insecure for development"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
}

func okServer(t *testing.T, tls bool) *httptest.Server {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, c *http.Client, u string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := Get(ctx, c, u, 1<<10)
	return string(b), err
}

func TestLoopbackServerRefused(t *testing.T) {
	srv := okServer(t, true)
	opts := Options{RootCAs: rootCAs(srv)}
	_, err := get(t, NewClient(opts), srv.URL)
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want a *RefusedError", err)
	}
	if re.Reason != "loopback address" || !strings.Contains(err.Error(), "set identity.allow_insecure for development") {
		t.Errorf("unexpected refusal: %v", err)
	}

	// localhost resolves to loopback: the dial-time check sees the address.
	u := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	if _, err := get(t, NewClient(opts), u); !errors.Is(err, ErrRefused) {
		t.Errorf("localhost: got %v, want refusal", err)
	}
}

func TestAllowInsecure(t *testing.T) {
	plain := okServer(t, false)
	c := NewClient(Options{AllowInsecure: true})
	body, err := get(t, c, plain.URL)
	if err != nil || body != "hello" {
		t.Fatalf("AllowInsecure http: got %q, %v", body, err)
	}
	tlsSrv := okServer(t, true)
	body, err = get(t, NewClient(Options{AllowInsecure: true, RootCAs: rootCAs(tlsSrv)}), tlsSrv.URL)
	if err != nil || body != "hello" {
		t.Fatalf("AllowInsecure https: got %q, %v", body, err)
	}
}

func TestPlainHTTPRefused(t *testing.T) {
	plain := okServer(t, false)
	// Exempt loopback so that the scheme check alone is under test.
	c := newClient(Options{}, netip.Addr.IsLoopback)
	_, err := get(t, c, plain.URL)
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(re.Reason, "only https") {
		t.Fatalf("got %v, want an https-only refusal", err)
	}
	if _, err := get(t, c, "ftp://example.com/x"); !errors.Is(err, ErrRefused) {
		t.Errorf("ftp: got %v, want refusal", err)
	}
}

func TestRedirects(t *testing.T) {
	plain := okServer(t, false)
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-http":
			http.Redirect(w, r, plain.URL+"/", http.StatusFound)
		case "/to-self":
			http.Redirect(w, r, "/final", http.StatusFound)
		case "/final":
			io.WriteString(w, "final")
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/to-metadata":
			http.Redirect(w, r, "https://169.254.169.254/latest/meta-data/", http.StatusFound)
		}
	}))
	t.Cleanup(tlsSrv.Close)
	exempt := func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") }
	c := newClient(Options{RootCAs: rootCAs(tlsSrv)}, exempt)

	if body, err := get(t, c, tlsSrv.URL+"/to-self"); err != nil || body != "final" {
		t.Fatalf("same-host https redirect: got %q, %v", body, err)
	}
	_, err := get(t, c, tlsSrv.URL+"/to-http")
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "only https") {
		t.Errorf("redirect to http: got %v, want refusal", err)
	}
	_, err = get(t, c, tlsSrv.URL+"/loop")
	if !errors.Is(err, ErrTooManyRedirects) {
		t.Errorf("redirect loop: got %v, want ErrTooManyRedirects", err)
	}
	_, err = get(t, c, tlsSrv.URL+"/to-metadata")
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "link-local") {
		t.Errorf("redirect to metadata address: got %v, want link-local refusal", err)
	}

	none := newClient(Options{RootCAs: rootCAs(tlsSrv), MaxRedirects: -1}, exempt)
	if _, err := get(t, none, tlsSrv.URL+"/to-self"); !errors.Is(err, ErrTooManyRedirects) {
		t.Errorf("MaxRedirects -1: got %v, want ErrTooManyRedirects", err)
	}

	// With the development switch, a redirect to http is followed.
	dev := NewClient(Options{AllowInsecure: true, RootCAs: rootCAs(tlsSrv)})
	if body, err := get(t, dev, tlsSrv.URL+"/to-http"); err != nil || body != "hello" {
		t.Errorf("AllowInsecure redirect to http: got %q, %v", body, err)
	}
}

func TestProxyEnvIgnored(t *testing.T) {
	// A proxy that would happily forward anywhere.
	var proxied bool
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxied = true
		io.WriteString(w, "via proxy")
	}))
	t.Cleanup(proxy.Close)
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("https_proxy", proxy.URL)
	t.Setenv("NO_PROXY", "")

	_, err := get(t, NewClient(Options{}), "https://127.0.0.1:1/")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want the guard to refuse 127.0.0.1 despite HTTPS_PROXY", err)
	}
	if proxied {
		t.Fatal("request went through the proxy")
	}
}

func TestDialControlNetwork(t *testing.T) {
	g := &guard{opts: Options{}.withDefaults(), policy: newAddrPolicy()}
	if err := g.control("udp4", "8.8.8.8:53", nil); !errors.Is(err, ErrRefused) {
		t.Errorf("udp: got %v, want refusal", err)
	}
	if err := g.control("tcp6", "[2606:4700:4700::1111]:443", nil); err != nil {
		t.Errorf("public v6: %v", err)
	}
	if err := g.control("tcp6", "[::ffff:127.0.0.1]:443", nil); !errors.Is(err, ErrRefused) {
		t.Errorf("mapped loopback: got %v, want refusal", err)
	}
	if err := g.control("tcp6", "[fe80::1%eth0]:443", nil); !errors.Is(err, ErrRefused) {
		t.Errorf("zoned link-local: got %v, want refusal", err)
	}
}

func TestResponseSizeCap(t *testing.T) {
	big := strings.Repeat("x", 5000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.Write([]byte(big[:2500]))
			w.(http.Flusher).Flush()
			w.Write([]byte(big[2500:]))
			return
		}
		io.WriteString(w, big)
	}))
	t.Cleanup(srv.Close)
	c := NewClient(Options{AllowInsecure: true, MaxResponseBytes: 4096})

	// Content-Length announced: refused before the body is read.
	_, err := get(t, c, srv.URL+"/")
	if !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("announced: got %v, want ErrBodyTooLarge", err)
	}
	// Chunked: fails while reading, even when the caller reads without a limit.
	resp, err := c.Get(srv.URL + "/chunked")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); !errors.Is(err, ErrBodyTooLarge) {
		t.Errorf("chunked: got %v, want ErrBodyTooLarge", err)
	}
}

func TestReadBody(t *testing.T) {
	tests := []struct {
		n, limit int
		ok       bool
	}{
		{0, 10, true},
		{10, 10, true},
		{11, 10, false},
		{1 << 20, 1024, false},
	}
	for _, tt := range tests {
		b, err := ReadBody(strings.NewReader(strings.Repeat("a", tt.n)), int64(tt.limit))
		if tt.ok && (err != nil || len(b) != tt.n) {
			t.Errorf("ReadBody(%d, %d) = %d bytes, %v", tt.n, tt.limit, len(b), err)
		}
		if !tt.ok && !errors.Is(err, ErrBodyTooLarge) {
			t.Errorf("ReadBody(%d, %d) err = %v, want ErrBodyTooLarge", tt.n, tt.limit, err)
		}
	}
}

func TestStatusError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	_, err := get(t, NewClient(Options{AllowInsecure: true}), srv.URL+"/x?secret=1")
	var se *StatusError
	if !errors.As(err, &se) || se.StatusCode != 404 || strings.Contains(err.Error(), "secret") {
		t.Fatalf("got %v", err)
	}
}

func TestRedact(t *testing.T) {
	u, _ := url.Parse("https://user:pw@example.com/a?code=x#f")
	if got := redact(u); got != "https://example.com/a" {
		t.Errorf("redact = %q", got)
	}
}

func TestDNSRebindingCheckedAtDial(t *testing.T) {
	// A resolver that answers with a loopback address for a public-looking
	// name: the dial hook must still refuse it.
	srv := okServer(t, true)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	c := NewClient(Options{RootCAs: rootCAs(srv)})
	tr := c.Transport.(*guardedTransport).next.(*http.Transport)
	inner := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		// Simulate the DNS answer by dialling the loopback address through
		// the guarded dialer.
		return inner(ctx, network, net.JoinHostPort("127.0.0.1", port))
	}
	_, err := get(t, c, "https://rebind.example.com:"+port+"/")
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want refusal", err)
	}
}

func rootCAs(srv *httptest.Server) *x509.CertPool {
	return srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}
