// Command ioproxy is an AT Protocol sign-in and calling proxy.
//
//	ioproxy serve    -config io.hcl   run it
//	ioproxy validate -config io.hcl   check a configuration and exit
//	ioproxy reload   -config io.hcl   check it, then have the running serve apply it
//	ioproxy cert     -config io.hcl   print (or -out write) the local CA to trust
//	ioproxy sessions migrate -config io.hcl -from data/ioproxy.db
//	                                  copy sessions from bbolt into Redis
//	ioproxy key rotate -config io.hcl  replace the OAuth client key, without refusals
//	ioproxy key status -config io.hcl  show the client keys and their times
//	ioproxy version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2"

	"github.com/ioproxy/ioproxy/admin"
	"github.com/ioproxy/ioproxy/config"
	"github.com/ioproxy/ioproxy/ingress/certs"
	"github.com/ioproxy/ioproxy/server"
)

const usage = `ioproxy: AT Protocol sign-in and calling proxy

Usage:
  ioproxy serve    -config FILE   run the proxy (-config may repeat, or name a
                                  directory of *.hcl files: they merge)
  ioproxy validate -config FILE   check a configuration; exit 1 on errors
  ioproxy reload   -config FILE [-wait 30s]
                                  check the configuration, then have the
                                  ioproxy serve running with its data_dir apply
                                  it without a restart (through the control
                                  socket in data_dir; SIGHUP does the same)
  ioproxy cert     -config FILE [-out FILE]
                                  print or write the local CA certificate that
                                  signs self-signed host certificates, to trust it
  ioproxy sessions migrate -config FILE -from PATH/ioproxy.db
                                  copy every session and the client key from
                                  a bbolt file into the configured Redis store
  ioproxy key rotate -config FILE [-sign-after 24h] [-drop-after 24h]
                                  publish a new OAuth client key now, sign with
                                  it after a day, drop the old one a day later
  ioproxy key status -config FILE show the client keys and when they change
  ioproxy version                 print the version
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(args, stderr)
	case "validate":
		return cmdValidate(args, stdout, stderr)
	case "reload":
		return cmdReload(args, stdout, stderr)
	case "cert":
		return cmdCert(args, stdout, stderr)
	case "sessions":
		return cmdSessions(args, stdout, stderr)
	case "key":
		return cmdKey(args, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "ioproxy", version())
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "ioproxy: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v
}

// loadConfig parses -config and prints its diagnostics.
func loadConfig(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*config.Config, *flag.FlagSet, bool) {
	cfg, _, fs, ok := loadConfigPaths(name, args, stderr, extra)
	return cfg, fs, ok
}

// loadConfigPaths is loadConfig that also returns the paths given, for
// reading them again at a reload.
func loadConfigPaths(name string, args []string, stderr io.Writer, extra func(*flag.FlagSet)) (*config.Config, configPaths, *flag.FlagSet, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var paths configPaths
	fs.Var(&paths, "config", "configuration file, or a directory of *.hcl files; may be given more than once (default io.hcl)")
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		return nil, nil, nil, false
	}
	if len(paths) == 0 {
		paths = configPaths{"io.hcl"}
	}
	cfg, diags := readConfig(paths)
	_ = config.WriteDiagnostics(stderr, diags)
	if diags.HasErrors() {
		return nil, nil, nil, false
	}
	return cfg, paths, fs, true
}

// readConfig reads the configuration with every check validate makes.
func readConfig(paths []string) (*config.Config, hcl.Diagnostics) {
	cfg, diags := config.LoadAll(paths, config.Options{})
	if cfg != nil {
		diags = append(diags, certs.Check(cfg)...)
	}
	return cfg, diags
}

// configPaths are the -config flags, in order.
type configPaths []string

func (p *configPaths) String() string     { return strings.Join(*p, ", ") }
func (p *configPaths) Set(v string) error { *p = append(*p, v); return nil }

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	cfg, _, ok := loadConfig("validate", args, stderr, nil)
	if !ok {
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (%d hosts, %d calling ports, %d serve ports)\n", cfg.Filename, len(cfg.Hosts), len(cfg.Calls), len(cfg.Serves))
	return 0
}

func cmdCert(args []string, stdout, stderr io.Writer) int {
	var out *string
	cfg, _, ok := loadConfig("cert", args, stderr, func(fs *flag.FlagSet) {
		out = fs.String("out", "", "write the CA certificate to this file instead of standard output")
	})
	if !ok {
		return 1
	}
	pem, err := certs.LocalCA(cfg.DataDir)
	if err != nil {
		fmt.Fprintln(stderr, "ioproxy:", err)
		return 1
	}
	if *out == "" {
		_, _ = stdout.Write(pem)
		return 0
	}
	if err := os.WriteFile(*out, pem, 0o644); err != nil {
		fmt.Fprintln(stderr, "ioproxy:", err)
		return 1
	}
	fmt.Fprintf(stdout, "wrote %s: trust it to accept ioproxy's self-signed certificates (%s)\n", *out, certs.LocalCAFile(cfg.DataDir))
	return 0
}

func cmdServe(args []string, stderr io.Writer) int {
	cfg, paths, _, ok := loadConfigPaths("serve", args, stderr, nil)
	if !ok {
		return 1
	}
	// Lines go out in batches from a goroutine of the writer's own, so
	// that no request waits for its access line's write.
	lw := admin.NewLogWriter(admin.LogWriterConfig{Out: stderr, JSON: cfg.Log.Format == "json"})
	defer lw.Close()
	log := admin.NewLogger(lw, cfg.Log)
	// From now on SIGHUP asks for a reload, which waits until the start
	// is done: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	requests := make(chan reloadRequest)
	control, err := listenControl(cfg.DataDir)
	switch {
	case errors.Is(err, errSocketPathTooLong):
		// Only `ioproxy reload` needs the socket: run without it.
		log.Warn("no control socket: ioproxy reload cannot reach this process; reload it with kill -HUP", "err", err)
	case err != nil:
		log.Error("ioproxy could not start", "err", err)
		return 1
	default:
		defer control.Close()
		go control.serve(requests, log)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	load := func() (*config.Config, hcl.Diagnostics) { return readConfig(paths) }
	srv, err := server.Start(ctx, cfg, server.Options{Logger: log, LogDropped: lw.Dropped, Load: load})
	if err != nil {
		log.Error("ioproxy could not start", "err", err)
		return 1
	}
	log.Info("ioproxy started", "version", version(), "config", cfg.Filename)
	for {
		select {
		case <-hup:
			// Reload logs its own outcome, every diagnostic included.
			_, _ = srv.Reload(ctx)
		case req := <-requests:
			rep, err := srv.Reload(ctx)
			req.reply <- outcomeOf(rep, err)
		case <-ctx.Done():
			log.Info("shutting down: finishing in-flight requests")
			srv.Close()
			log.Info("stopped")
			return 0
		}
	}
}
