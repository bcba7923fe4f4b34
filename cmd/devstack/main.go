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

	"github.com/ioproxy/ioproxy/cmd/statusphere/app"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/e2e/atmo"
	"github.com/ioproxy/ioproxy/e2e/localjetstream"
	"github.com/ioproxy/ioproxy/server"
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

// run starts the atmosphere, ioproxy, a local Jetstream and the app, in
// that order (each needs the one before), and stops them in reverse when
// ctx ends or one of them fails.
func run(ctx context.Context, log *slog.Logger, o options, out io.Writer) error {
	state, err := filepath.Abs(o.state)
	if err != nil {
		return err
	}
	// Checked before anything starts, so that a second devstack fails at
	// once and says why.
	for _, p := range []int{o.plcPort, o.pdsPort} {
		if err := portFree(p); err != nil {
			return err
		}
	}
	a, err := startAtmosphere(ctx, state, o, out)
	if err != nil {
		return err
	}
	defer a.Stop()

	cfg, err := loadConfig(o.configPath, state, a)
	if err != nil {
		return err
	}
	srv, err := server.Start(ctx, cfg, server.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("start ioproxy: %w", err)
	}
	defer srv.Close()

	appAddr, err := appAddress(cfg, o.configPath)
	if err != nil {
		return err
	}
	callURL, err := callingURL(cfg, o.configPath)
	if err != nil {
		return err
	}
	// The local atmosphere has no relay, hence no Jetstream: a small one
	// polls the PDS, so the app's ingester runs here as in production.
	jsURL, stopJetstream, err := startJetstream(ctx, a.PDSURL, log)
	if err != nil {
		return err
	}
	defer stopJetstream()

	appErr := startApp(ctx, app.Config{
		Addr:         appAddr,
		ProxyURL:     callURL,
		JetstreamURL: jsURL,
		DBPath:       filepath.Join(state, "statusphere.sqlite"),
		Logger:       log,
	})
	if err := waitListening(ctx, appAddr, appErr); err != nil {
		return fmt.Errorf("statusphere did not start: %w", err)
	}

	printBanner(out, cfg, a, state)
	if o.ready != nil {
		close(o.ready)
	}
	return waitForStop(ctx, out, a, appErr)
}

// startAtmosphere runs the PLC directory and the PDS with the demo accounts
// under state/atmosphere, so that the next run finds the same accounts.
func startAtmosphere(ctx context.Context, state string, o options, out io.Writer) (*atmo.Atmosphere, error) {
	dir := filepath.Join(state, "atmosphere")
	fmt.Fprintf(out, "Starting the local atmosphere (PLC directory and PDS) in %s …\n", dir)
	a, err := atmo.Run(ctx, atmo.Options{
		Accounts: demoAccounts,
		DataDir:  dir,
		PLCPort:  o.plcPort,
		PDSPort:  o.pdsPort,
	})
	if err != nil {
		return nil, fmt.Errorf("start the local atmosphere: %w", err)
	}
	return a, nil
}

// loadConfig reads the ioproxy configuration with the variables that
// examples/local.hcl expects set to this run's atmosphere and state; the
// process environment supplies the rest.
func loadConfig(path, state string, a *atmo.Atmosphere) (*config.Config, error) {
	env := map[string]string{
		"IOPROXY_DATA_DIR": filepath.Join(state, "ioproxy"),
		"ATMO_PLC_URL":     a.PLCURL,
		"ATMO_PDS_URL":     a.PDSURL,
	}
	cfg, diags := config.Load(path, config.Options{LookupEnv: func(k string) (string, bool) {
		if v, ok := env[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	}})
	if diags.HasErrors() {
		_ = config.WriteDiagnostics(os.Stderr, diags)
		return nil, fmt.Errorf("%s has errors", path)
	}
	return cfg, nil
}

// appAddress is where the app must listen: the host:port backend of the
// config's sign-in host (the last one, if there are several). It fails when
// that address is taken, most likely by another devstack.
func appAddress(cfg *config.Config, configPath string) (string, error) {
	addr := ""
	for _, h := range cfg.Hosts {
		if h.ATProto != nil && h.ATProto.Local != 0 && h.Backend.Kind == config.BackendURL {
			addr = h.Backend.URL.Host
		}
	}
	if addr == "" {
		return "", fmt.Errorf("%s has no host with atproto { local = … } and a host:port backend for the app", configPath)
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "localhost" || host == "") {
		addr = net.JoinHostPort("127.0.0.1", port)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("the app's address %s is taken (is another devstack running?): %w", addr, err)
	}
	l.Close()
	return addr, nil
}

// callingURL is the base URL of the config's calling port to the signed-in
// user's PDS (endpoint = "@"), which the app writes through.
func callingURL(cfg *config.Config, configPath string) (string, error) {
	u := ""
	for _, c := range cfg.Calls {
		if c.Endpoint.Kind == config.EndpointPDS {
			u = "http://" + c.Addr()
		}
	}
	if u == "" {
		return "", fmt.Errorf("%s has no call block with endpoint = \"@\" for the app", configPath)
	}
	return u, nil
}

// startApp runs the Statusphere app until ctx ends; the channel gets what
// it returned.
func startApp(ctx context.Context, c app.Config) <-chan error {
	appErr := make(chan error, 1)
	go func() { appErr <- app.Run(ctx, c) }()
	return appErr
}

// printBanner tells the user where to go and how to sign in.
func printBanner(out io.Writer, cfg *config.Config, a *atmo.Atmosphere, state string) {
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
}

// waitForStop returns when ctx ends (nil: a normal stop) or when the app or
// the PDS stops on its own (an error). After a normal stop it waits up to
// ten seconds for the app, which ctx also stops, to finish, so that run's
// deferred stops do not pull ioproxy and Jetstream from under it.
func waitForStop(ctx context.Context, out io.Writer, a *atmo.Atmosphere, appErr <-chan error) error {
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
