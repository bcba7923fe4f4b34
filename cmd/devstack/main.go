// Command devstack runs everything on this machine with one command: a
// local atmosphere (a PLC directory and the real @atproto/pds, with two
// demo accounts, and a small Jetstream polling it), ioproxy with
// examples/local.hcl, and the Statusphere app behind it. State lives under one folder (.local by default) that the
// next run reuses. Ctrl-C stops it all.
//
//	go run ./cmd/devstack            (./scripts/local installs the npm packages first)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ioproxy/ioproxy/server"
	"github.com/ioproxy/ioproxy/cmd/statusphere/app"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/localjetstream"
)

// The demo accounts. They exist only in the local PDS under .local.
var demoAccounts = []atmo.Account{
	{Handle: "alice.test", Password: "alice-local-password"},
	{Handle: "bob.test", Password: "bob-local-password"},
}

func main() {
	state := flag.String("state", ".local", "folder for all local state (reused by the next run)")
	configPath := flag.String("config", "examples/local.hcl", "ioproxy configuration")
	plcPort := flag.Int("plc-port", 2582, "port of the local PLC directory")
	pdsPort := flag.Int("pds-port", 2583, "port of the local PDS")
	verbose := flag.Bool("v", false, "show every request in the log")
	flag.Parse()

	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	o := options{state: *state, configPath: *configPath, plcPort: *plcPort, pdsPort: *pdsPort}
	if err := run(ctx, log, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

// options are devstack's flags.
type options struct {
	state, configPath string
	plcPort, pdsPort  int
	// ready, when set, is closed once everything is up.
	ready chan<- struct{}
}

func run(ctx context.Context, log *slog.Logger, o options, out io.Writer) error {
	state, configPath, plcPort, pdsPort := o.state, o.configPath, o.plcPort, o.pdsPort
	state, err := filepath.Abs(state)
	if err != nil {
		return err
	}
	for _, p := range []int{plcPort, pdsPort} {
		if err := portFree(p); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "Starting the local atmosphere (PLC directory and PDS) in %s …\n", filepath.Join(state, "atmosphere"))
	a, err := atmo.Run(ctx, atmo.Options{
		Accounts: demoAccounts,
		DataDir:  filepath.Join(state, "atmosphere"),
		PLCPort:  plcPort,
		PDSPort:  pdsPort,
	})
	if err != nil {
		return fmt.Errorf("start the local atmosphere: %w", err)
	}
	defer a.Stop()

	env := map[string]string{
		"IOPROXY_DATA_DIR": filepath.Join(state, "ioproxy"),
		"ATMO_PLC_URL":     a.PLCURL,
		"ATMO_PDS_URL":     a.PDSURL,
	}
	cfg, diags := config.Load(configPath, config.Options{LookupEnv: func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}})
	if diags.HasErrors() {
		_ = config.WriteDiagnostics(os.Stderr, diags)
		return fmt.Errorf("%s has errors", configPath)
	}
	srv, err := server.Start(ctx, cfg, server.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("start ioproxy: %w", err)
	}
	defer srv.Close()

	// The app listens where the config's sign-in host sends requests.
	appAddr := ""
	for _, h := range cfg.Hosts {
		if h.ATProto != nil && h.ATProto.Local != 0 && h.Backend.Kind == config.BackendURL {
			appAddr = h.Backend.URL.Host
		}
	}
	if appAddr == "" {
		return fmt.Errorf("%s has no host with atproto { local = … } and a host:port backend for the app", configPath)
	}
	if host, port, err := net.SplitHostPort(appAddr); err == nil && (host == "localhost" || host == "") {
		appAddr = net.JoinHostPort("127.0.0.1", port)
	}
	l, err := net.Listen("tcp", appAddr)
	if err != nil {
		return fmt.Errorf("the app's address %s is taken (is another devstack running?): %w", appAddr, err)
	}
	l.Close()
	callURL := ""
	for _, c := range cfg.Calls {
		if c.Endpoint.Kind == config.EndpointPDS {
			callURL = "http://" + c.Addr()
		}
	}
	if callURL == "" {
		return fmt.Errorf("%s has no call block with endpoint = \"@\" for the app", configPath)
	}
	// The local atmosphere has no relay, hence no Jetstream: a small one
	// polls the PDS, so the app's ingester runs here as in production.
	jsURL, stopJetstream, err := startJetstream(ctx, a.PDSURL, log)
	if err != nil {
		return err
	}
	defer stopJetstream()

	appErr := make(chan error, 1)
	go func() {
		appErr <- app.Run(ctx, app.Config{
			Addr:         appAddr,
			ProxyURL:     callURL,
			JetstreamURL: jsURL,
			DBPath:       filepath.Join(state, "statusphere.sqlite"),
			Logger:       log,
		})
	}()

	if err := waitListening(ctx, appAddr, appErr); err != nil {
		return fmt.Errorf("statusphere did not start: %w", err)
	}

	open := "http://127.0.0.1:9000"
	for _, h := range cfg.Hosts {
		if h.ATProto != nil && h.ATProto.Local != 0 {
			open = fmt.Sprintf("http://127.0.0.1:%d", h.ATProto.Local)
		}
	}
	fmt.Fprintf(out, `
Statusphere is running. Open %s and sign in as:

    alice.test   password %s
    bob.test     password %s

  PDS (its own sign-in pages)  %s
  ioproxy traffic view          http://%s/traffic
  state (reused next time)      %s

Press Ctrl-C to stop.
`, open, demoAccounts[0].Password, demoAccounts[1].Password, a.PDSURL, cfg.Admin.Listen, state)
	if o.ready != nil {
		close(o.ready)
	}

	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "\nStopping …")
	case err := <-appErr:
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("statusphere stopped: %w", err)
		}
	case <-a.Done():
		return errors.New("the local PDS stopped:\n" + a.StderrTail())
	}
	select {
	case <-appErr:
	case <-time.After(10 * time.Second):
	}
	return nil
}

// startJetstream serves a local Jetstream for the PDS on a free loopback
// port and returns its subscribe URL.
func startJetstream(ctx context.Context, pdsURL string, log *slog.Logger) (string, func(), error) {
	js := localjetstream.New(localjetstream.Config{PDSURL: pdsURL, Collections: []string{"xyz.statusphere.status"}, Logger: log})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("local jetstream: %w", err)
	}
	srv := &http.Server{Handler: js, ReadHeaderTimeout: 10 * time.Second}
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{}, 2)
	go func() { _ = js.Run(jctx); done <- struct{}{} }()
	go func() { _ = srv.Serve(ln); done <- struct{}{} }()
	stop := func() {
		cancel()
		_ = srv.Close()
		<-done
		<-done
	}
	return "ws://" + ln.Addr().String() + "/subscribe", stop, nil
}

// waitListening waits until addr accepts connections, or the app fails.
func waitListening(ctx context.Context, addr string, failed <-chan error) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s", addr)
		}
		select {
		case err := <-failed:
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func portFree(port int) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return fmt.Errorf("port %d is taken (is another devstack running?): %w", port, err)
	}
	return l.Close()
}
