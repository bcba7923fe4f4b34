package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

const (
	// requestTimeout bounds one check request: loopback answers in
	// milliseconds.
	requestTimeout = 5 * time.Second
	// bodyMax is as much of an answer as a check reads: enough to tell the
	// backend's body from a page of a proxy's own.
	bodyMax = 64 << 10
	// quoteMax is as much of a wrong body as an error quotes.
	quoteMax = 200
)

// get sends one GET for s, with its Host and Cookie, on a connection of
// its own, and returns the answer with its body. Redirects are not
// followed: a redirect (to HTTPS, to a sign-in page) is itself the wrong
// answer.
func get(ctx context.Context, url, host, cookie string) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if host != "" {
		req.Host = host
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	client := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, bodyMax))
	if err != nil {
		return nil, nil, fmt.Errorf("GET %s: read the body: %w", url, err)
	}
	return resp, body, nil
}

// answers is a readiness probe: url answers with any HTTP response at
// all. Whether it is the right one is verify's question.
func answers(url, host string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, _, err := get(ctx, url, host, "")
		return err
	}
}

// verify checks that s answers a request as the backend does: 200 with
// the backend's body, byte for byte. A proxy that answers anything else
// (a redirect to HTTPS, a sign-in page, an empty 200 for a Host it does
// not serve) would be measured doing something other than proxying.
func verify(ctx context.Context, s subject) error {
	resp, body, err := get(ctx, s.url, s.host, s.cookie)
	if err != nil {
		return fmt.Errorf("check %s: %w", s.name, err)
	}
	if resp.StatusCode == http.StatusOK && bytes.Equal(body, backendBody) {
		return nil
	}
	where := ""
	if loc := resp.Header.Get("Location"); loc != "" {
		where = fmt.Sprintf(" (Location: %s)", loc)
	}
	return fmt.Errorf("check %s: GET %s%s answered %s%s with %s; want 200 with the backend's %d-byte JSON body: this subject is not proxying to the backend",
		s.name, s.url, s.describeHeaders(), resp.Status, where, describeBody(body), len(backendBody))
}

// describeHeaders names the headers that make s's request, for an error.
func (s subject) describeHeaders() string {
	var d []string
	if s.host != "" {
		d = append(d, "Host: "+s.host)
	}
	if s.cookie != "" {
		d = append(d, "with a session cookie")
	}
	if len(d) == 0 {
		return ""
	}
	return " (" + strings.Join(d, ", ") + ")"
}

// describeBody is a wrong answer's body for an error: the title of an
// HTML page (a proxy's error or sign-in page says what it is there), or
// the body quoted, cut short if long.
func describeBody(b []byte) string {
	if _, rest, ok := bytes.Cut(b, []byte("<title>")); ok {
		if title, _, ok := bytes.Cut(rest, []byte("</title>")); ok {
			return fmt.Sprintf("an HTML page titled %q (%d bytes)", bytes.TrimSpace(title), len(b))
		}
	}
	if len(b) > quoteMax {
		return fmt.Sprintf("the body %q… (%d bytes)", b[:quoteMax], len(b))
	}
	return fmt.Sprintf("the body %q", b)
}
