package config

import (
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Checks of values that more than one block has: durations, limits,
// service URLs and file paths.

// duration parses a duration attribute of at least min; example is a
// good value to suggest, as "30s".
func (b *builder) duration(rng hcl.Range, attr, s string, min time.Duration, example string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil || d < min {
		b.errorf(rng, "Invalid "+attr, "%q is not a duration of at least %s; write, for example, %s = %q.", s, shortDuration(min), attr, example)
		return min
	}
	return d
}

// shortDuration writes d as a person would: "1m" and "24h" rather than
// time.Duration's "1m0s" and "24h0m0s".
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// limit checks a limit attribute, which is at least 1; counts says what
// it counts and def is its default, both for the error.
func (b *builder) limit(rng hcl.Range, attr string, n, def int, counts string) int {
	if n < 1 {
		b.errorf(rng, "Invalid "+attr, "%d is not a limit: %s is %s. Write a number of at least 1, such as %s = %d, or leave it out for that default.", n, attr, counts, attr, def)
	}
	return n
}

// checkServiceURL requires an absolute URL without path; http only with
// allow_insecure.
func (b *builder) checkServiceURL(rng hcl.Range, attr, s string, allowHTTP bool, example string) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		b.errorf(rng, "Invalid "+attr, "%q is not an http(s) URL; write, for example, %s.", s, example)
		return
	}
	if u.Scheme == "http" && !allowHTTP {
		b.errorf(rng, "Insecure "+attr, "%q uses http://. Use https://, or set allow_insecure = true in the identity block for a local development atmosphere.", s)
	}
	if u.Path != "" && u.Path != "/" {
		b.errorf(rng, "Invalid "+attr, "%q has a path; write only the scheme and host, as in %s.", s, example)
	}
}

// checkFile requires a file named in the configuration to exist.
func (b *builder) checkFile(rng hcl.Range, attr, path string) {
	if path == "" {
		return
	}
	if _, err := os.Stat(path); err != nil {
		b.errorf(rng, "Cannot read "+attr, "%v. Write the path of an existing PEM file (relative paths start from the directory ioproxy runs in).", err)
	}
}
