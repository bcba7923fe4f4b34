package nginx

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/proc"
)

// authServer stands in for ioproxy's forward-auth endpoint. It decides by
// the first segment of the original URI, which nginx passes in
// X-Original-URI.
func authServer(t *testing.T, rec *proc.Recorder) *httptest.Server {
	originalURI := func(r *http.Request) string { return r.Header.Get("X-Original-URI") }
	return proc.Backend(t, "auth server", rec, originalURI, func(w http.ResponseWriter, r *http.Request, uri string) {
		// Neither reaches the client: nginx drops the headers of an auth
		// response (except WWW-Authenticate on a 401) and its body.
		w.Header().Set("Set-Cookie", "auth=1")
		const body = "from the auth server\n"
		switch strings.SplitN(strings.TrimPrefix(uri, "/"), "/", 2)[0] {
		case "ok":
			w.Header().Set("User-Did", "did:plc:abc")
			io.WriteString(w, body)
		case "anon":
			io.WriteString(w, body)
		case "unauth":
			w.Header().Set("WWW-Authenticate", `Bearer realm="ioproxy"`)
			http.Error(w, body, http.StatusUnauthorized)
		case "forbidden":
			http.Error(w, body, http.StatusForbidden)
		case "redirect":
			http.Redirect(w, r, "/@/signin", http.StatusFound)
		default:
			t.Errorf("auth server: unexpected original URI %q", uri)
			http.Error(w, body, http.StatusTeapot)
		}
	})
}

// authConfig is the forward-auth setup under test. The auth location is the
// one from the nginx documentation: the auth subrequest is always a GET
// carrying the original request's headers, Content-Length included, but
// never its body, so without "proxy_pass_request_body off" and an empty
// Content-Length an auth server that reads the body waits for bytes that
// never come, and nginx answers 500 after proxy_read_timeout.
//
// The "signin" server adds what a site does to send a browser to sign in
// instead of showing a bare 401.
func authConfig(plain, signin, app, auth string) string {
	locations := fmt.Sprintf(`
        location / {
            auth_request /_auth;
            auth_request_set $user_did $upstream_http_user_did;
            # An empty value removes the header, so a client-sent User-Did
            # never reaches the app.
            proxy_set_header User-Did $user_did;
            proxy_pass %s;
        }
        location = /_auth {
            internal;
            proxy_pass %s/auth;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
        }`, app, auth)
	return fmt.Sprintf(`
    server {
        listen %s;
%s
    }
    server {
        listen %s;
        error_page 401 = @signin;
        location @signin {
            return 302 /@/signin?redirect=$request_uri;
        }
%s
    }
`, plain, locations, signin, locations)
}

// TestAuthRequest pins down what nginx's auth_request does with each answer
// of an auth endpoint. The lesson of the 302 case: an auth endpoint for
// auth_request may answer only 2xx, 401 or 403; anything else, a redirect
// to a sign-in page included, becomes a 500. The redirect has to come from
// nginx (error_page 401).
func TestAuthRequest(t *testing.T) {
	var authSeen, appSeen proc.Recorder
	auth := authServer(t, &authSeen)
	app := proc.App(t, &appSeen)
	plain, signin := FreeAddr(t), FreeAddr(t)
	ngx := Start(t, authConfig(plain, signin, app.URL, auth.URL))
	if want := []string{plain, signin}; !reflect.DeepEqual(ngx.Addrs, want) {
		t.Errorf("Addrs = %v, want %v", ngx.Addrs, want)
	}

	tests := []struct {
		name   string
		addr   string
		method string
		uri    string
		header map[string]string // set verbatim, not canonicalized
		body   string

		wantStatus   int
		wantLocation string // "" for none
		wantWWWAuth  string // "" for none
		wantErrorLog string // "" to not check
		// wantApp: the request reached the app, with wantUserDid as its
		// User-Did ("" for none) and its body.
		wantApp     bool
		wantUserDid string
	}{
		{
			name: "allowed: the app gets the identity, the auth server the credentials",
			addr: plain, method: http.MethodGet, uri: "/ok/page?x=1",
			header: map[string]string{
				"Cookie":        "sid=s3cret",
				"Authorization": "Bearer t0ken",
				// A forged identity, in both spellings.
				"User-Did": "did:plc:forged",
				"User_Did": "did:plc:forged",
			},
			wantStatus: http.StatusOK, wantApp: true, wantUserDid: "did:plc:abc",
		},
		{
			name: "allowed POST: the body goes to the app only",
			addr: plain, method: http.MethodPost, uri: "/ok/post", body: "payload",
			wantStatus: http.StatusOK, wantApp: true, wantUserDid: "did:plc:abc",
		},
		{
			name: "allowed without identity: a client-sent User-Did is removed",
			addr: plain, method: http.MethodGet, uri: "/anon/hyphen",
			header:     map[string]string{"User-Did": "did:plc:forged"},
			wantStatus: http.StatusOK, wantApp: true,
		},
		{
			name: "allowed without identity: a client-sent User_Did is dropped",
			addr: plain, method: http.MethodGet, uri: "/anon/underscore",
			header:     map[string]string{"User_Did": "did:plc:forged"},
			wantStatus: http.StatusOK, wantApp: true,
			// underscores_in_headers is off: nginx ignores the header line.
			wantErrorLog: `client sent invalid header line: "User_Did: did:plc:forged"`,
		},
		{
			name: "401 passes through with WWW-Authenticate",
			addr: plain, method: http.MethodGet, uri: "/unauth/page",
			wantStatus: http.StatusUnauthorized, wantWWWAuth: `Bearer realm="ioproxy"`,
		},
		{
			name: "401 with error_page redirects to sign-in, $request_uri unescaped",
			addr: signin, method: http.MethodGet, uri: "/unauth/page?a=1&b=2",
			wantStatus: http.StatusFound,
			// absolute_redirect makes it absolute; $request_uri goes in as
			// it came, so "&b=2" becomes a parameter of the sign-in page.
			wantLocation: "http://" + signin + "/@/signin?redirect=/unauth/page?a=1&b=2",
			// The header is copied before error_page takes over.
			wantWWWAuth: `Bearer realm="ioproxy"`,
		},
		{
			name: "403 passes through",
			addr: plain, method: http.MethodGet, uri: "/forbidden/page",
			wantStatus: http.StatusForbidden,
		},
		{
			name: "403 passes through error_page 401",
			addr: signin, method: http.MethodGet, uri: "/forbidden/signin",
			wantStatus: http.StatusForbidden,
		},
		{
			name: "302 from the auth server is a 500",
			addr: plain, method: http.MethodGet, uri: "/redirect/page",
			wantStatus:   http.StatusInternalServerError,
			wantErrorLog: "auth request unexpected status: 302",
		},
		{
			name: "302 from the auth server is a 500 despite error_page 401",
			addr: signin, method: http.MethodGet, uri: "/redirect/signin",
			wantStatus:   http.StatusInternalServerError,
			wantErrorLog: "auth request unexpected status: 302",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := proc.Send(t, tc.method, "http://"+tc.addr+tc.uri, tc.header, tc.body)
			if res.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d; body:\n%s", res.StatusCode, tc.wantStatus, body)
			}
			if got := res.Header.Get("Location"); got != tc.wantLocation {
				t.Errorf("Location = %q, want %q", got, tc.wantLocation)
			}
			if got := res.Header.Get("WWW-Authenticate"); got != tc.wantWWWAuth {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.wantWWWAuth)
			}
			if got := res.Header.Values("Set-Cookie"); len(got) != 0 {
				t.Errorf("Set-Cookie of the auth response reached the client: %q", got)
			}
			if strings.Contains(string(body), "from the auth server") {
				t.Errorf("the auth server's body reached the client:\n%s", body)
			}

			a, ok := authSeen.Get(tc.uri)
			if !ok {
				t.Fatalf("the auth server did not see %s", tc.uri)
			}
			// Always GET, never a body, and the Host of proxy_pass: the
			// original method and host must be passed explicitly.
			if a.Method != http.MethodGet || a.Body != "" || a.Header.Get("Content-Length") != "" {
				t.Errorf("auth subrequest: %s with Content-Length %q and body %q, want GET without either",
					a.Method, a.Header.Get("Content-Length"), a.Body)
			}
			if a.Host == tc.addr {
				t.Errorf("auth subrequest Host = %q, the client's; want the auth server's", a.Host)
			}
			for k, v := range tc.header {
				if k == "User_Did" {
					continue
				}
				if got := a.Header.Get(k); got != v {
					t.Errorf("auth subrequest %s = %q, want the client's %q", k, got, v)
				}
			}
			if got := a.Header.Values("User_did"); len(got) != 0 {
				t.Errorf("auth subrequest got User_Did %q", got)
			}

			p, reached := appSeen.CheckApp(t, tc.uri, tc.wantApp, tc.method, tc.body)
			if !reached {
				return
			}
			if got := p.Header.Values("User-Did"); tc.wantUserDid == "" && len(got) != 0 ||
				tc.wantUserDid != "" && !reflect.DeepEqual(got, []string{tc.wantUserDid}) {
				t.Errorf("app User-Did = %q, want %q", got, tc.wantUserDid)
			}
			// Go keeps an underscore name as "User_did".
			if got := p.Header.Values("User_did"); len(got) != 0 {
				t.Errorf("app got User_Did %q", got)
			}

			if tc.wantErrorLog != "" && !strings.Contains(ngx.ErrorLog(), tc.wantErrorLog) {
				t.Errorf("error.log lacks %q", tc.wantErrorLog)
			}
		})
	}

	// The access log line comes after the response, so wait for the last.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(ngx.AccessLog(), `"GET /redirect/signin HTTP/1.1" 500`) {
		if time.Now().After(deadline) {
			t.Fatalf("access.log lacks the last request:\n%s", ngx.AccessLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestListenAddrs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"one line", "server { listen 127.0.0.1:8080; }", []string{"127.0.0.1:8080"}},
		{"own line with parameters", "server {\n  listen 127.0.0.1:8080 default_server;\n}", []string{"127.0.0.1:8080"}},
		{"several, in order, once each", `
			server { listen 127.0.0.1:2; listen [::1]:3; }
			server { listen 127.0.0.1:1; }
			server { listen 127.0.0.1:2; server_name b; }`,
			[]string{"127.0.0.1:2", "[::1]:3", "127.0.0.1:1"}},
		{"comment", "server {\n  # listen 127.0.0.1:9;\n  listen 127.0.0.1:8;\n}", []string{"127.0.0.1:8"}},
		{"comment after a directive", "server { listen 127.0.0.1:7; # listen 127.0.0.1:6;\n}", []string{"127.0.0.1:7"}},
		{"not loopback", "server { listen 8080; listen 0.0.0.0:80; listen unix:/x.sock; }", nil},
		{"not a listen directive", "server { listen_x 127.0.0.1:1; return 200 \"listen 127.0.0.1:2;\"; }", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := listenAddrs(tc.in); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("listenAddrs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestStartFailures(t *testing.T) {
	t.Run("no listen address", func(t *testing.T) {
		msg := proc.StartFailure(t, Start, "server { listen unix:/nowhere.sock; }")
		if !strings.Contains(msg, "no \"listen 127.0.0.1:PORT\"") {
			t.Errorf("message:\n%s", msg)
		}
	})
	t.Run("bad config shows nginx -t", func(t *testing.T) {
		msg := proc.StartFailure(t, Start, fmt.Sprintf("server { listen %s; no_such_directive on; }", FreeAddr(t)))
		if !strings.Contains(msg, `unknown directive "no_such_directive"`) || !strings.Contains(msg, "nginx.conf:") {
			t.Errorf("message:\n%s", msg)
		}
	})
	t.Run("port taken", func(t *testing.T) {
		// Something else answers on the port; Start must not take it for
		// nginx.
		msg := proc.StartFailure(t, Start, fmt.Sprintf("server { listen %s; }", proc.TakenAddr(t)))
		if !strings.Contains(msg, "exited before it was ready") || !strings.Contains(msg, "Address already in use") {
			t.Errorf("message:\n%s", msg)
		}
	})
}
