package xrpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	defaultTimeout          = 30 * time.Second
	defaultMaxResponseBytes = 4 << 20
	// Error bodies are only read for their {"error","message"}; a larger body is not an XRPC
	// error worth keeping.
	maxErrorBodyBytes = 64 << 10
)

// HTTPConfig configures an HTTPClient.
type HTTPConfig struct {
	// Host is the base URL that "/xrpc/{nsid}" is appended to, e.g. "https://bsky.social" or
	// ioproxy's calling port "http://127.0.0.1:7000". Required.
	Host string
	// HTTPClient makes the requests. Default: a client with a 30s timeout.
	HTTPClient *http.Client
	// UserAgent, when set, is sent as User-Agent.
	UserAgent string
	// MaxResponseBytes bounds the size of a successful response body. Default: 4 MiB.
	MaxResponseBytes int64
}

// HTTPClient calls XRPC methods on one host over plain HTTP.
type HTTPClient struct {
	base      *url.URL
	http      *http.Client
	userAgent string
	maxBytes  int64
}

var _ Client = (*HTTPClient)(nil)

// NewHTTPClient returns a client for cfg.Host.
func NewHTTPClient(cfg HTTPConfig) (*HTTPClient, error) {
	if cfg.Host == "" {
		return nil, errors.New("xrpc: no host: set HTTPConfig.Host to a base URL such as http://127.0.0.1:7000")
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("xrpc: host %q: %w", cfg.Host, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("xrpc: host %q: want an http:// or https:// URL with a host, such as http://127.0.0.1:7000", cfg.Host)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("xrpc: host %q: must not have a query or fragment", cfg.Host)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	c := &HTTPClient{base: u, http: cfg.HTTPClient, userAgent: cfg.UserAgent, maxBytes: cfg.MaxResponseBytes}
	if c.http == nil {
		c.http = &http.Client{Timeout: defaultTimeout}
	}
	if c.maxBytes <= 0 {
		c.maxBytes = defaultMaxResponseBytes
	}
	return c, nil
}

// Host returns the base URL the client calls.
func (c *HTTPClient) Host() string { return c.base.String() }

// Do implements Client.
func (c *HTTPClient) Do(ctx context.Context, method, nsid string, params url.Values, input, output any) error {
	return c.DoWithHeader(ctx, nil, method, nsid, params, input, output)
}

// DoWithHeader is Do with extra request headers.
func (c *HTTPClient) DoWithHeader(ctx context.Context, header http.Header, method, nsid string, params url.Values, input, output any) error {
	if method != Query && method != Procedure {
		return fmt.Errorf("xrpc %s: method %q: want xrpc.Query (GET) or xrpc.Procedure (POST)", nsid, method)
	}
	if nsid == "" || strings.ContainsAny(nsid, "/?#% ") {
		return fmt.Errorf("xrpc: invalid NSID %q", nsid)
	}
	u := *c.base
	u.Path += "/xrpc/" + nsid
	u.RawQuery = params.Encode()

	var body io.Reader
	if input != nil {
		b, err := json.Marshal(input)
		if err != nil {
			return fmt.Errorf("xrpc %s: encode input: %w", nsid, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return fmt.Errorf("xrpc %s: %w", nsid, err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("Accept", "application/json")
	if input != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}

	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("xrpc %s: %w", nsid, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return parseError(nsid, resp)
	}
	if output == nil {
		// Drain a little so the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBodyBytes))
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBytes+1))
	if err != nil {
		return fmt.Errorf("xrpc %s: read response: %w", nsid, err)
	}
	if int64(len(b)) > c.maxBytes {
		return fmt.Errorf("xrpc %s: response larger than %d bytes", nsid, c.maxBytes)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		// Some methods answer success with no body (older PDSes on deleteRecord, say): leave
		// output at its zero value.
		return nil
	}
	if err := json.Unmarshal(b, output); err != nil {
		return fmt.Errorf("xrpc %s: decode %s response: %w", nsid, contentType(resp), err)
	}
	return nil
}

func parseError(nsid string, resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
	xe := &Error{NSID: nsid, StatusCode: resp.StatusCode}
	var body struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error != "" {
		xe.Name, xe.Message = body.Error, body.Message
		return xe
	}
	// Not an XRPC error body (a proxy's HTML page, say): name it after the status and keep the
	// start of the body for whoever reads the log.
	xe.Name = strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "")
	if xe.Name == "" {
		xe.Name = fmt.Sprintf("HTTP%d", resp.StatusCode)
	}
	msg := strings.TrimSpace(string(b))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	xe.Message = msg
	return xe
}

func contentType(resp *http.Response) string {
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		return ct
	}
	return "untyped"
}
