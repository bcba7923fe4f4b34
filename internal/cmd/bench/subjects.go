package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/ingress"
	"github.com/ioproxy/ioproxy/sessions"
	"github.com/ioproxy/ioproxy/sessions/boltstore"
)

// The subjects every report has, by name: the ratios and the added
// latency are computed against these.
const (
	nameDirect = "direct"
	nameNginx  = "nginx"
	nameCaddy  = "Caddy"
	nameFloor  = "Go floor (net/http only)"
)

// The hosts of ioproxy's config, the shape of ingress's BenchmarkIngress:
// one that only signs users in, one that lets only signed-in users in.
const (
	appHost  = "app.example.com"
	toolHost = "tool.example.com"
)

// subject is one thing wrk measures: a URL and the headers that make the
// request the one meant (which ioproxy host, which session).
type subject struct {
	name   string
	url    string
	host   string // the Host header; "" sends the URL's
	cookie string // the Cookie header; "" sends none
}

// startSubjects starts the backend, nginx, Caddy and ioproxy, each ready
// when it returns, and returns the subjects in the order of the report.
func startSubjects(ctx context.Context, t tools, dir string, procs *processes, progress io.Writer) ([]subject, error) {
	backend, err := startBackend(ctx, procs, dir)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "== backend on %s\n", backend)
	subjects := []subject{{name: nameDirect, url: "http://" + backend + "/"}}
	for _, start := range []func(context.Context, tools, string, *processes, string) ([]subject, error){
		startNginx, startCaddy, startFloor, startIoproxy,
	} {
		s, err := start(ctx, t, dir, procs, backend)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(progress, "== %s on %s\n", s[0].name, strings.TrimSuffix(strings.TrimPrefix(s[0].url, "http://"), "/"))
		subjects = append(subjects, s...)
	}
	return subjects, nil
}

// nginxConfig is a config that keeps nginx to dir: every path it writes
// is there, so that it needs neither root nor the packaged /var/lib/nginx.
// The upstream keeps connections to the backend open, as a production
// config would (nginx's default opens one per request, which would
// measure the kernel's TCP handshakes). As root, the worker would run as
// "nobody", which could not enter dir (0700): "user root" keeps it able to.
func nginxConfig(dir, listen, backend string, root bool) string {
	p := func(name string) string { return strconv.Quote(filepath.Join(dir, name)) }
	user := ""
	if root {
		user = "user root;\n"
	}
	return fmt.Sprintf(`%sdaemon off;
worker_processes 1;
error_log %s warn;
pid %s;
events {
    worker_connections 1024;
}
http {
    client_body_temp_path %s;
    proxy_temp_path %s;
    fastcgi_temp_path %s;
    uwsgi_temp_path %s;
    scgi_temp_path %s;
    access_log off;

    upstream backend {
        server %s;
        keepalive 64;
    }
    server {
        listen %s;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`, user, p("error.log"), p("nginx.pid"),
		p("client_body_temp"), p("proxy_temp"), p("fastcgi_temp"), p("uwsgi_temp"), p("scgi_temp"),
		backend, listen)
}

// startNginx runs nginx with nginxConfig. It is ready once it has written
// its pid file, which it does only after binding its listener (a port
// that answers could be another server's), and answers.
func startNginx(ctx context.Context, t tools, dir string, procs *processes, backend string) ([]subject, error) {
	dir = filepath.Join(dir, "nginx")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(nginxConfig(dir, addr, backend, os.Geteuid() == 0)), 0o600); err != nil {
		return nil, fmt.Errorf("nginx: write config: %w", err)
	}
	// -p keeps nginx's relative defaults in dir; -e sends what it says
	// before it has read the config to our log, not to the packaged
	// /var/log/nginx/error.log, which a non-root user cannot open.
	args := []string{"-p", dir + "/", "-e", filepath.Join(dir, "error.log"), "-c", conf}
	// nginx -t names the line of a config mistake, where a failed start
	// says only that it exited.
	if out, err := exec.CommandContext(ctx, t.nginx, append([]string{"-t", "-q"}, args...)...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("nginx: %s rejected (%v): %s", conf, err, bytes.TrimSpace(out))
	}
	p, err := procs.start(nameNginx, exec.Command(t.nginx, args...), filepath.Join(dir, "error.log"))
	if err != nil {
		return nil, err
	}
	s := subject{name: nameNginx, url: "http://" + addr + "/"}
	pidFile, pid := filepath.Join(dir, "nginx.pid"), strconv.Itoa(p.cmd.Process.Pid)
	ready := func(ctx context.Context) error {
		if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != pid {
			return fmt.Errorf("no pid file %s: its listener is not bound", pidFile)
		}
		return answers(s.url, "")(ctx)
	}
	if err := p.waitUntil(ctx, ready); err != nil {
		return nil, err
	}
	return []subject{s}, nil
}

// caddyfile is the smallest config with which Caddy reverse-proxies:
// without the admin API (a listener on 2019) and without automatic HTTPS
// (ACME, and listeners on 80 and 443). default_bind keeps the listener on
// 127.0.0.1: a site address names the Host to match, not where to listen.
func caddyfile(listen, backend string) string {
	return fmt.Sprintf(`{
	admin off
	auto_https off
	default_bind 127.0.0.1
}

http://%s {
	reverse_proxy %s
}
`, listen, backend)
}

// startCaddy runs "caddy run" with caddyfile. Its home, config and data
// directories are in dir, so that neither anyone's ~/.local/share/caddy
// nor the packaged /var/lib/caddy is touched.
func startCaddy(ctx context.Context, t tools, dir string, procs *processes, backend string) ([]subject, error) {
	dir = filepath.Join(dir, "caddy")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("caddy: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("caddy: %w", err)
	}
	conf := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(conf, []byte(caddyfile(addr, backend)), 0o600); err != nil {
		return nil, fmt.Errorf("caddy: write config: %w", err)
	}
	cmd := exec.Command(t.caddy, "run", "--config", conf, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"HOME="+filepath.Join(dir, "home"),
		"XDG_DATA_HOME="+filepath.Join(dir, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
	)
	p, err := procs.start(nameCaddy, cmd, filepath.Join(dir, "caddy.log"))
	if err != nil {
		return nil, err
	}
	s := subject{name: nameCaddy, url: "http://" + addr + "/"}
	if err := p.waitUntil(ctx, answers(s.url, "")); err != nil {
		return nil, err
	}
	return []subject{s}, nil
}

// ioproxyConfig has the two hosts of BenchmarkIngress in front of the
// backend. The https listener is named, on loopback, although no host
// serves TLS, so that nothing of this run can listen beyond 127.0.0.1.
func ioproxyConfig(dataDir, httpAddr, httpsAddr, backend string) string {
	return fmt.Sprintf(`data_dir = %q
ingress {
  http  = %q
  https = %q
}
admin { listen = "" }

host %q {
  backend = %q
  atproto {}
  tls { mode = "off" }
}

host %q {
  backend = %q
  require_atproto { handles = ["*.example.test"] }
  tls { mode = "off" }
}
`, dataDir, httpAddr, httpsAddr, appHost, "http://"+backend, toolHost, "http://"+backend)
}

// startIoproxy runs "ioproxy serve" with ioproxyConfig, after putting a
// signed-in session for each host into its store, and returns its three
// subjects: anonymous, signed in, and signed in on the host that requires
// it.
func startIoproxy(ctx context.Context, t tools, dir string, procs *processes, backend string) ([]subject, error) {
	dataDir := filepath.Join(dir, "ioproxy-data")
	// ioproxy refuses a data dir that other users can read.
	if err := os.Mkdir(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("ioproxy: %w", err)
	}
	cookies, err := seedSessions(ctx, filepath.Join(dataDir, "ioproxy.db"), appHost, toolHost)
	if err != nil {
		return nil, fmt.Errorf("ioproxy: %w", err)
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("ioproxy: %w", err)
	}
	httpsAddr, err := freeAddr()
	if err != nil {
		return nil, fmt.Errorf("ioproxy: %w", err)
	}
	conf := filepath.Join(dir, "ioproxy.hcl")
	if err := os.WriteFile(conf, []byte(ioproxyConfig(dataDir, httpAddr, httpsAddr, backend)), 0o600); err != nil {
		return nil, fmt.Errorf("ioproxy: write config: %w", err)
	}
	p, err := procs.start("ioproxy", exec.Command(t.ioproxy, "serve", "-config", conf), filepath.Join(dir, "ioproxy.log"))
	if err != nil {
		return nil, err
	}
	url := "http://" + httpAddr + "/"
	if err := p.waitUntil(ctx, answers(url, appHost)); err != nil {
		return nil, err
	}
	return []subject{
		{name: "ioproxy", url: url, host: appHost},
		{name: "ioproxy, signed in", url: url, host: appHost, cookie: cookies[appHost]},
		{name: "ioproxy, require_atproto, signed in", url: url, host: toolHost, cookie: cookies[toolHost]},
	}, nil
}

// seedSessions puts a signed-in session for each host into the bbolt
// store at path, as a sign-in would have left it, and returns the Cookie
// header of each. The handle was checked just now and the tokens live an
// hour, so that no request of the run makes ioproxy refresh or resolve
// anything. The store is closed before it returns: bbolt locks its file,
// and ioproxy opens it next.
func seedSessions(ctx context.Context, path string, hosts ...string) (cookies map[string]string, err error) {
	store, err := boltstore.Open(boltstore.Config{Path: path})
	if err != nil {
		return nil, fmt.Errorf("open the session store: %w", err)
	}
	defer func() {
		if cerr := store.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close the session store: %w", cerr)
		}
	}()
	now := time.Now()
	cookies = map[string]string{}
	for _, host := range hosts {
		s := sessions.Session{
			ID: sessions.NewToken(), ProxyKey: sessions.NewToken(), Host: host,
			DID: "did:plc:bench", Handle: "bench.example.test",
			CreatedAt: now, HandleCheckedAt: now, TokenExpiry: now.Add(time.Hour), Expiry: now.Add(time.Hour),
		}
		if _, err := store.Create(ctx, s); err != nil {
			return nil, fmt.Errorf("store a session for %s: %w", host, err)
		}
		cookies[host] = (&http.Cookie{Name: ingress.CookieName, Value: s.ID}).String()
	}
	return cookies, nil
}
