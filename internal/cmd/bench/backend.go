package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// backendArg, as the first argument, makes this program the backend.
const backendArg = "backend"

// backendBody is the backend's answer to every request: about the size of
// a small API response, so that what is measured is the proxying of a
// request and not the copying of a body. verify compares it byte for
// byte, which tells the backend's answer from anything a proxy makes up.
var backendBody = []byte(`{"service":"ioproxy-bench-backend","status":"ok","note":"one body of 100 bytes for every request."}` + "\n")

// backendHeader is set on every answer. Content-Length is given, so that
// no subject sees a chunked body the others do not.
var backendHeader = http.Header{
	"Content-Type":   {"application/json"},
	"Content-Length": {strconv.Itoa(len(backendBody))},
}

// serveBackend is the backend mode: it listens on a port of the kernel's
// choosing on 127.0.0.1, says which on ready (a line "127.0.0.1:PORT"),
// and answers every request with backendBody until SIGTERM or SIGINT.
// Choosing the port itself leaves no window in which another process
// could take it.
func serveBackend(ready io.Writer) error {
	return serveOnLoopback(ready, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		for k, v := range backendHeader {
			h[k] = v
		}
		_, _ = w.Write(backendBody)
	}))
}

// serveOnLoopback serves h on a free 127.0.0.1 port, says which on ready,
// until SIGTERM or SIGINT.
func serveOnLoopback(ready io.Writer, h http.Handler) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if _, err := fmt.Fprintln(ready, ln.Addr()); err != nil {
		return fmt.Errorf("say the address: %w", err)
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// startBackend runs this program again in backend mode and returns the
// address it listens on.
func startBackend(ctx context.Context, procs *processes, dir string) (string, error) {
	return startSelf(ctx, procs, dir, "backend", backendArg)
}

// startSelf runs this program again with args (a mode that serves on
// loopback) and returns the address it says it listens on, read from its
// standard output through a pipe, once it answers.
func startSelf(ctx context.Context, procs *processes, dir, name string, args ...string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("%s: find this program to run it again: %w", name, err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return "", fmt.Errorf("%s: pipe: %w", name, err)
	}
	// The child writes its one line and nothing more; ours is read once.
	defer r.Close()
	cmd := exec.Command(self, args...)
	cmd.Stdout = w
	p, err := procs.start(name, cmd, filepath.Join(dir, name+".log"))
	// The child holds its own end: ours must close, or a child that dies
	// before it writes would leave the read below waiting for the deadline.
	_ = w.Close()
	if err != nil {
		return "", err
	}
	if err := r.SetReadDeadline(time.Now().Add(readyTimeout)); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("%s: no address on its output after %s: %v%s", name, readyTimeout, err, p.logTail())
	}
	addr := strings.TrimSpace(line)
	if host, _, err := net.SplitHostPort(addr); err != nil || host != "127.0.0.1" {
		return "", fmt.Errorf("%s: said %q, not a 127.0.0.1 address", name, addr)
	}
	if err := p.waitUntil(ctx, answers("http://"+addr+"/", "")); err != nil {
		return "", err
	}
	return addr, nil
}
