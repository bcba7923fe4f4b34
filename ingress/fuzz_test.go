package ingress

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// redirectBase is the page a redirect target is followed from.
const redirectBase = "https://app.example/some/page"

// openRedirectPayloads are the classic ways of writing another origin, or
// ioproxy's own /@/ routes, so that a naive "starts with /" check lets
// them through. They seed FuzzSafeRedirect; each must come back as "/" or
// stay on the site.
func openRedirectPayloads() []string {
	return []string{
		"//evil.example", "///evil.example", "////evil.example", `/\evil.example`, `\/evil.example`,
		`\\evil.example`, `/\/evil.example`, `\/\/evil.example`, `/\\evil.example`, "/\t/evil.example",
		"/\n/evil.example", "/\r/evil.example", "/\t\t/evil.example", "/ /evil.example", "/\v/evil.example",
		"/\f/evil.example", "/\x00/evil.example", "/%09/evil.example", "/%0a/evil.example", "/%0d/evil.example",
		"/%5c/evil.example", "/%5C%5Cevil.example", "/%2f%2fevil.example", "/%2F/evil.example", "/%2f/evil.example",
		"/.//evil.example", "/./\\evil.example", "/..//evil.example", `/..\evil.example`, "/%2e//evil.example",
		"/%2e%2e//evil.example", "/.%2e//evil.example", "/a/..//evil.example", "/a/../..//evil.example", "/a/%2e%2e//evil.example",
		"http:evil.example", "https:evil.example", "http:/evil.example", "https:/\\evil.example", "HTTPS://evil.example",
		"hTtP://evil.example", "javascript:alert(1)", "JaVaScRiPt:alert(1)", "java\tscript:alert(1)", "\x01javascript:alert(1)",
		"data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "evil.example", "@evil.example", ":evil.example",
		" //evil.example", "\t//evil.example", "\x00//evil.example", "/\u3000/evil.example", "/\uff0f\uff0fevil.example",
		"/\u2215\u2215evil.example", "/\u2044evil.example", "/\ufe68evil.example", "/\u0338evil.example", "//evil.example%E3%80%82com",
		"//evil.example\u3002com", "//evil%00.example", "//user@evil.example", "/@evil.example", "//@evil.example",
		"/@/signout", "/@", "/@/", "/%40/signout", "/./@/signout", "/@./signout", "/a#//evil.example", "/a?//evil.example", "/a?\\evil.example",
		"//[::1]/", "/\\[::1]", "//0x7f.1/", "//2130706433/", "//localhost", "/\\localhost", "/%252f%252fevil.example",
		"/after", "/after?x=1", "/a/b/c?next=//evil.example", "/search?q=a%2Fb", "/café", "/a//b", "/a/./b",
		// An escaped separator before dot segments: the decoded path has
		// more segments than the raw one that browsers and http.Redirect
		// clean (found by review, not by the fuzzer).
		"/x/b%2Fc/../../@/signout", "/x/b%2fc/%2e%2e/%2e%2e/@/signout", "/x/b%5Cc/../../@/signin?handle=evil.example",
		"/a/../%2F/evil.example", "/x/b%2Fc/../../@/callback?code=x", "/files/a%2Fb",
	}
}

// FuzzSafeRedirect checks SafeRedirect, which decides where a browser goes
// after sign-in and sign-out: a target chosen by whoever made the link.
//
// Properties: the result is "/" or the input unchanged; and the result,
// both as a link and as the Location header http.Redirect makes of it,
// resolved from a page of the site the way a browser resolves it, stays on
// https://app.example and does not lead into ioproxy's own /@/ routes (as
// the browser sends the path, nor as the router reads it).
func FuzzSafeRedirect(f *testing.F) {
	for _, p := range openRedirectPayloads() {
		f.Add(p)
	}
	base, err := url.Parse(redirectBase)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, target string) {
		got := SafeRedirect(target)
		if got != "/" && got != target {
			t.Fatalf("SafeRedirect(%q) = %q; want %q or %q", target, got, "/", target)
		}
		if got == "/" {
			return
		}
		checkStaysOnSite(t, base, "target", got)

		rec := httptest.NewRecorder()
		http.Redirect(rec, httptest.NewRequest(http.MethodGet, redirectBase, nil), got, http.StatusSeeOther)
		checkStaysOnSite(t, base, "Location header", rec.Header().Get("Location"))
	})
}

// checkStaysOnSite resolves ref as a browser would and fails unless it
// lands on the base's origin, outside /@/.
func checkStaysOnSite(t *testing.T, base *url.URL, what, ref string) {
	t.Helper()
	u, err := browserResolve(base, ref)
	if err != nil {
		t.Fatalf("%s %q: the browser-like resolver cannot parse it: %v", what, ref, err)
	}
	if u.Scheme != base.Scheme || u.Host != base.Host || u.User != nil {
		t.Fatalf("%s %q leads to %s://%s (user %v); want the origin %s://%s", what, ref, u.Scheme, u.Host, u.User, base.Scheme, base.Host)
	}
	// u.Path is what the server decodes from the request line.
	if ownRoute(u.Path) {
		t.Fatalf("%s %q leads to ioproxy's route %q", what, ref, u.Path)
	}
	if n := normalizePath(u.Path); ownRoute(n) {
		t.Fatalf("%s %q leads to %q, which the router reads as ioproxy's route %q", what, ref, u.Path, n)
	}
	// A backend that redirects again on the decoded path must not read
	// another host in it.
	if redirectTrick.MatchString(u.Path) {
		t.Fatalf("%s %q leads to the path %q, which reads as another host once decoded", what, ref, u.Path)
	}
}

// ownRoute is the router's test for paths that belong to ioproxy.
func ownRoute(p string) bool { return p == "/@" || strings.HasPrefix(p, "/@/") }

// schemeRE is the scheme of an absolute URL (WHATWG "scheme state").
var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// specialScheme reports whether a scheme is WHATWG "special": browsers
// parse such URLs with the lenient rules below.
func specialScheme(s string) bool {
	switch s {
	case "http", "https", "ws", "wss", "ftp", "file":
		return true
	}
	return false
}

// browserResolve resolves ref against base as a WHATWG URL parser does,
// emulating where it differs from net/url in ways an open redirect uses:
// leading and trailing C0 controls and spaces are stripped, tabs and
// newlines removed anywhere; in special URLs "\" is "/" before the query,
// any run of slashes starts an authority, "https:x" on an https page is
// relative, and "%2e" is a dot in dot segments.
func browserResolve(base *url.URL, ref string) (*url.URL, error) {
	s := strings.TrimFunc(ref, func(r rune) bool { return r <= 0x20 })
	s = strings.NewReplacer("\t", "", "\n", "", "\r", "").Replace(s)
	if m := schemeRE.FindString(s); m != "" {
		scheme := strings.ToLower(strings.TrimSuffix(m, ":"))
		if !specialScheme(scheme) {
			// javascript:, data: and the like: not the site's origin,
			// which the caller reports.
			return url.Parse(s)
		}
		rest := backslashesToSlashes(s[len(m):])
		if scheme == base.Scheme && !strings.HasPrefix(rest, "//") {
			// "https:x" and "https:/x" from an https page are the
			// relative "x" and "/x".
			s = rest
		} else {
			return url.Parse(scheme + "://" + strings.TrimLeft(rest, "/"))
		}
	}
	s = backslashesToSlashes(s)
	if strings.HasPrefix(s, "//") {
		s = "//" + strings.TrimLeft(s, "/")
	} else {
		s = dotSegments(s)
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	return base.ResolveReference(u), nil
}

// backslashesToSlashes turns "\" into "/" before the query or fragment,
// as browsers do in special URLs.
func backslashesToSlashes(s string) string {
	end := strings.IndexAny(s, "?#")
	if end < 0 {
		end = len(s)
	}
	return strings.ReplaceAll(s[:end], `\`, "/") + s[end:]
}

// dotSegments writes the percent-encoded dot segments browsers honour
// ("%2e", ".%2e", "%2E%2e", …) as plain dots, for ResolveReference.
func dotSegments(s string) string {
	end := strings.IndexAny(s, "?#")
	if end < 0 {
		end = len(s)
	}
	segs := strings.Split(s[:end], "/")
	for i, seg := range segs {
		switch strings.ToLower(seg) {
		case "%2e":
			segs[i] = "."
		case "%2e%2e", ".%2e", "%2e.":
			segs[i] = ".."
		}
	}
	return strings.Join(segs, "/") + s[end:]
}

// FuzzNormalizePath checks normalizePath, the router's reading of a
// request path, which decides whether a request is ioproxy's (/@/) or
// goes to the backend.
//
// Properties, for rooted paths (what net/http hands the router, besides
// "" and "*"): the result is rooted, has no "//", no "." or ".."
// segments, no "\" and no ";"; it is idempotent; it is the same for every
// spelling of the path that a lenient backend reads alike (backslashes,
// ";params", dot segments, repeated slashes), so that no spelling of
// /@/… reaches the backend; and when it is ioproxy's, the redirect the
// router sends to the normalized path arrives as exactly that path, which
// the router then serves instead of redirecting again.
func FuzzNormalizePath(f *testing.F) {
	for _, p := range []string{
		"", "/", "*", "/@", "/@/", "/@/signin", "//@/signin", "/./@/signin", "/x/../@/signin", `\@\signin`, `/\@/signin`,
		"/@;x/signin", "/@/signin;jsessionid=1", "/x/..;/@/signin", "/x;/../@/", "/@/.", "/@/..", "/@/../x", "/a/b/../../@",
		"/static/../@/callback", "/a//b", "/a/./b/", "/a/b/..", "/..", "/../@/", ";", "/;/", "/a;b;c/d", "/\x00/@/", "/%2e%2e/@/",
		"/@/signin?x", "/\u2215@/signin", "/a/", "/a\\", "/a;", "@/x", "x/../../@/y",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		n := normalizePath(p)
		if normalizePath(n) != n {
			t.Fatalf("normalizePath(%q) = %q, but normalizePath(%q) = %q: not idempotent", p, n, n, normalizePath(n))
		}
		if p != "" && p[0] != '/' && p[0] != '\\' {
			return
		}
		if !strings.HasPrefix(n, "/") {
			t.Fatalf("normalizePath(%q) = %q is not rooted", p, n)
		}
		if strings.Contains(n, "//") || strings.ContainsAny(n, `\;`) {
			t.Fatalf("normalizePath(%q) = %q keeps a \"//\", \"\\\" or \";\"", p, n)
		}
		for _, seg := range strings.Split(n, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("normalizePath(%q) = %q keeps the dot segment %q", p, n, seg)
			}
		}
		for _, v := range spellings(p) {
			if got := normalizePath(v); got != n {
				t.Fatalf("normalizePath(%q) = %q, but its other spelling %q gives %q", p, n, v, got)
			}
		}
		if !ownRoute(n) {
			return
		}
		// The router redirects to u.RequestURI() with Path n; the next
		// request must carry n itself, or the redirect would loop or leave
		// /@/.
		u := url.URL{Path: n}
		back, err := url.ParseRequestURI(u.RequestURI())
		if err != nil || back.Path != n {
			t.Fatalf("redirect for %q to %q arrives as %q (%v)", p, u.RequestURI(), back, err)
		}
	})
}

// spellings are other ways of writing the rooted path p that a lenient
// backend reads as p.
func spellings(p string) []string {
	rest := strings.TrimLeft(p, `/\`)
	return []string{
		"/./" + rest,
		"//" + rest,
		"/x/../" + rest,
		"/x;y/../" + rest,
		strings.ReplaceAll(p, "/", `\`),
		strings.ReplaceAll(p, "/", "//"),
		strings.ReplaceAll(p, "/", "/./"),
		strings.ReplaceAll(p, "/", ";z/"),
	}
}

// FuzzCookieValue checks cookieValue, which reads the session cookie of
// every request without allocating, against net/http's own reading: for
// any Cookie header, the two agree on the value of each of ioproxy's
// cookie names (a disagreement would let one reading see a session the
// other does not); and so does providerCookieIDs, which reads every
// provider cookie in one pass (checkProviderCookieIDs).
func FuzzCookieValue(f *testing.F) {
	for _, c := range []string{
		"ioproxy-session=abc", "a=1; ioproxy-session=abc; b=2", `ioproxy-session="abc"`, "ioproxy-session=", "ioproxy-session",
		"ioproxy-session=a b", "ioproxy-session=a,b", "ioproxy-session=a\\b", "ioproxy-session=a\"b", " ioproxy-session = abc ",
		"ioproxy-session=abc; ioproxy-session=def", "IOPROXY-SESSION=abc", "ioproxy-session=\x7f", ";;ioproxy-session=x;;",
		"__Host-ioproxy-session=abc", "ioproxy-oauth-google=xyz; ioproxy-session=abc", "ioproxy-session=\"\"", "ioproxy-session=\"a",
		"x=\"; ioproxy-session=abc\"", "ioproxy-session=é", "ioproxy-session\t=abc",
		"ioproxy-oauth-google=; ioproxy-oauth-google=b; __Host-ioproxy-oauth-github=\"c\"", "ioproxy-oauth-g=x; ioproxy-oauth-google-work=y",
	} {
		f.Add(c, "")
	}
	f.Add("ioproxy-session=one", "ioproxy-session=two")
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		r := httptest.NewRequest(http.MethodGet, "http://app.example/", nil)
		r.Header["Cookie"] = []string{line1}
		if line2 != "" {
			r.Header["Cookie"] = append(r.Header["Cookie"], line2)
		}
		for _, name := range []string{CookieName, SecureCookieName, "ioproxy-oauth-google"} {
			want := ""
			if c, err := r.Cookie(name); err == nil {
				want = c.Value
			}
			if got := cookieValue(r, name); got != want {
				t.Fatalf("cookieValue(%q, %q) = %q, net/http reads %q", r.Header["Cookie"], name, got, want)
			}
		}
		checkProviderCookieIDs(t, r)
	})
}
