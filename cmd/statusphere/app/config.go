package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/cmd/statusphere/jetstream"
)

// Config configures the app. ConfigFromEnv builds one from the environment; tests build one
// directly.
type Config struct {
	// Addr is the address to listen on, e.g. ":3000". Ignored when Listener is set.
	Addr string
	// Listener, when set, is served instead of listening on Addr (tests pass a listener on
	// 127.0.0.1:0).
	Listener net.Listener
	// ProxyURL is ioproxy's calling port, e.g. "http://127.0.0.1:7000". Required.
	ProxyURL string
	// JetstreamURL is the Jetstream subscribe endpoint; empty runs no ingester (statuses then
	// come only from this app's own writes).
	JetstreamURL string
	// DBPath is the SQLite file. Required.
	DBPath string

	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// HTTPClient makes calls to the calling port. Default: a client with a 15s timeout.
	HTTPClient *http.Client
	// Now defaults to time.Now; the page's dates ("today") are in its location.
	Now func() time.Time
	// StatusLimit is how many statuses the home page lists. Default: 10, as the original.
	StatusLimit int
	// HandleWait bounds how long a page waits for authors' handles before showing DIDs.
	// Default: 2s.
	HandleWait time.Duration
	// JetstreamResumeMargin, JetstreamMinBackoff and JetstreamMaxBackoff tune the ingester;
	// zero values take jetstream's defaults.
	JetstreamResumeMargin, JetstreamMinBackoff, JetstreamMaxBackoff time.Duration
}

// Environment variables read by ConfigFromEnv.
const (
	EnvPort      = "PORT"
	EnvProxy     = "ATPROTO_PROXY"
	EnvJetstream = "JETSTREAM_URL"
	EnvDB        = "STATUSPHERE_DB"
)

// Defaults of ConfigFromEnv.
const (
	DefaultPort   = 3000
	DefaultDBPath = "statusphere.sqlite"
)

// ConfigFromEnv reads PORT (default 3000), ATPROTO_PROXY (required), JETSTREAM_URL (default the
// public Jetstream; "off" runs no ingester) and STATUSPHERE_DB (default statusphere.sqlite in the
// working directory). getenv is os.Getenv outside tests.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var errs []error
	cfg := Config{
		Addr:         fmt.Sprintf(":%d", DefaultPort),
		ProxyURL:     strings.TrimSpace(getenv(EnvProxy)),
		JetstreamURL: jetstream.DefaultURL,
		DBPath:       DefaultDBPath,
	}
	if v := strings.TrimSpace(getenv(EnvPort)); v != "" {
		port, err := strconv.Atoi(v)
		if err != nil || port < 1 || port > 65535 {
			errs = append(errs, fmt.Errorf("%s=%q: want a port number from 1 to 65535, e.g. %s=%d", EnvPort, v, EnvPort, DefaultPort))
		}
		cfg.Addr = fmt.Sprintf(":%d", port)
	}
	if err := checkProxyURL(cfg.ProxyURL); err != nil {
		errs = append(errs, err)
	}
	switch v := strings.TrimSpace(getenv(EnvJetstream)); {
	case v == "":
	case strings.EqualFold(v, "off"):
		cfg.JetstreamURL = ""
	default:
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s=%q: want a ws:// or wss:// URL such as %s, or \"off\"", EnvJetstream, v, jetstream.DefaultURL))
		}
		cfg.JetstreamURL = v
	}
	if v := strings.TrimSpace(getenv(EnvDB)); v != "" {
		cfg.DBPath = v
	}
	return cfg, errors.Join(errs...)
}

func checkProxyURL(v string) error {
	if v == "" {
		return fmt.Errorf("%s is not set: set it to ioproxy's calling port, e.g. %s=http://127.0.0.1:7000", EnvProxy, EnvProxy)
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" {
		return fmt.Errorf("%s=%q: want the calling port's base URL, e.g. %s=http://127.0.0.1:7000", EnvProxy, v, EnvProxy)
	}
	return nil
}
