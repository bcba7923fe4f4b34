package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/ioproxy/ioproxy/atproto/safehttp"
)

// userAgent names ioproxy to providers; GitHub's API refuses requests
// without one.
const userAgent = "ioproxy (+https://github.com/ioproxy/ioproxy)"

// answer is an HTTP response read whole (within its bound).
type answer struct {
	status      int
	contentType string
	header      http.Header
	body        []byte
}

// describe says what the body is without quoting it.
func (a *answer) describe() string {
	ct := a.contentType
	if ct == "" {
		ct = "no content type"
	}
	return fmt.Sprintf("%s, %d bytes", ct, len(a.body))
}

// isJSON reports whether the content type says JSON, or says nothing (some
// providers send JSON as text/plain or without a type).
func (a *answer) isJSON() bool {
	mt, _, err := mime.ParseMediaType(a.contentType)
	if err != nil {
		return true
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json") || mt == "text/plain" || mt == "text/javascript"
}

// do sends req under its own timeout and reads at most limit bytes of the
// answer. A transport failure (no answer, a cut one) is ErrUnavailable;
// an answer past limit is safehttp.ErrBodyTooLarge.
func (c *Client) do(ctx context.Context, method, target string, form url.Values, limit int64, prepare func(*http.Request)) (*answer, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if prepare != nil {
		prepare(req)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error names the method and URL; our endpoint URLs carry no
		// secrets (the form is in the body).
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, err := safehttp.ReadBody(resp.Body, limit)
	switch {
	case errors.Is(err, safehttp.ErrBodyTooLarge):
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	case err != nil:
		// A cut answer passes, as no answer does.
		return nil, fmt.Errorf("%w: %s %s: %w", ErrUnavailable, method, target, err)
	}
	return &answer{
		status:      resp.StatusCode,
		contentType: resp.Header.Get("Content-Type"),
		header:      resp.Header,
		body:        data,
	}, nil
}
