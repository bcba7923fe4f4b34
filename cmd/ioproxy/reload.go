package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ioproxy/ioproxy/internal/private"
	"github.com/ioproxy/ioproxy/server"
)

// A running `ioproxy serve` listens on a Unix socket in its data dir,
// through which `ioproxy reload` asks it to reload and reads how that
// went. A socket, not a pid file and a signal: it reaches the process
// that owns the data dir whatever PID namespace either runs in (a
// container's ioproxy is PID 1 there and another number outside), and a
// stale one cannot make a signal end an unrelated process.
const controlSocketName = "ioproxy.sock"

// maxSocketPath is the longest path a Unix socket may have (one byte of
// sun_path ends it).
const maxSocketPath = len(syscall.RawSockaddrUnix{}.Path) - 1

// errSocketPathTooLong is a data dir too deep for a control socket; serve
// runs without one (SIGHUP still reloads).
var errSocketPathTooLong = errors.New("data_dir too long for a control socket")

// reloadRequest is a reload asked for through the control socket (a
// SIGHUP reloads without one); reply receives the outcome.
type reloadRequest struct {
	reply chan<- reloadOutcome
}

// reloadOutcome is what `ioproxy reload` prints.
type reloadOutcome struct {
	OK      bool   `json:"ok"`
	PID     int    `json:"pid"`
	Message string `json:"message"`
}

// controlSocket is the listening control socket of a running serve.
type controlSocket struct {
	path string
	ln   net.Listener
}

// listenControl opens the control socket in dataDir. The data dir must
// be this user's alone (as the bbolt store requires): whoever can write
// there could put a socket or a link of theirs in its place.
func listenControl(dataDir string) (*controlSocket, error) {
	// Only writing is refused here: the socket itself is 0600. The
	// bbolt store refuses a dir that others can read too.
	if err := private.Dir(dataDir, private.NoWrite); err != nil {
		return nil, err
	}
	path := filepath.Join(dataDir, controlSocketName)
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("the control socket %s is a path of %d bytes, over the %d a socket may have (a shorter data_dir has one): %w", path, len(path), maxSocketPath, errSocketPathTooLong)
	}
	if err := clearStaleSocket(path); err != nil {
		return nil, err
	}
	// Made 0600 from the start: between Listen and Chmod, with a lax
	// umask, anyone who can reach the directory could connect.
	oldMask := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(oldMask)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &controlSocket{path: path, ln: ln}, nil
}

// clearStaleSocket removes a control socket left by a serve that is gone,
// and refuses when one answers (another serve owns the data dir) or when
// something else is in its place.
func clearStaleSocket(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if info.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s is in the place of ioproxy's control socket and is not one: remove it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("another ioproxy serve runs with this data_dir (it answers on %s)", path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove the stale control socket: %w", err)
	}
	return nil
}

// serve accepts the control socket's connections until it closes: each
// asks for one reload and gets its outcome.
func (cs *controlSocket) serve(requests chan<- reloadRequest, log *slog.Logger) {
	for {
		c, err := cs.ln.Accept()
		if err != nil {
			return
		}
		go handleControl(c, requests, log)
	}
}

// handleControl reads one command ("reload") and answers its outcome.
func handleControl(c net.Conn, requests chan<- reloadRequest, log *slog.Logger) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Minute))
	line, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "reload" {
		_ = json.NewEncoder(c).Encode(reloadOutcome{PID: os.Getpid(), Message: "unknown command; the control socket takes \"reload\""})
		return
	}
	reply := make(chan reloadOutcome, 1)
	requests <- reloadRequest{reply: reply}
	if err := json.NewEncoder(c).Encode(<-reply); err != nil {
		log.Warn("control socket: answer a reload", "err", err)
	}
}

// Close stops listening and removes the socket.
func (cs *controlSocket) Close() {
	_ = cs.ln.Close()
	_ = os.Remove(cs.path)
}

// outcomeOf is a reload's outcome for `ioproxy reload`.
func outcomeOf(rep server.ReloadReport, err error) reloadOutcome {
	out := reloadOutcome{OK: err == nil, PID: os.Getpid()}
	if err != nil {
		out.Message = err.Error()
		return out
	}
	out.Message = describeReload(rep)
	return out
}

// describeReload says what a reload applied, in one paragraph.
func describeReload(rep server.ReloadReport) string {
	if rep.CertificatesOnly {
		return "certificate files read again"
	}
	msg := fmt.Sprintf("applied: %d hosts, %d calling ports, %d serve ports", rep.Hosts, rep.Calls, rep.Serves)
	if len(rep.Restart) > 0 {
		msg += "; these changed but take effect at the next restart: " + strings.Join(rep.Restart, ", ")
	}
	for _, w := range rep.Warnings {
		msg += "\nwarning: " + w
	}
	return msg
}

// noServe says why the control socket at path did not answer: there is
// none, or one is left by a serve that was killed (a stopped one removes
// its own), which the next serve replaces.
func noServe(path string, err error) string {
	switch {
	case errors.Is(err, syscall.ENOENT):
		return fmt.Sprintf("it has no control socket (%s); start one with ioproxy serve", path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing answers on its control socket %s, left by one that ended without removing it (killed, say); the next ioproxy serve replaces it", path)
	}
	return err.Error()
}

// cmdReload checks the configuration, then asks the ioproxy serve that
// owns its data dir to apply it, and prints the outcome.
func cmdReload(args []string, stdout, stderr io.Writer) int {
	var wait *time.Duration
	cfg, _, ok := loadConfig("reload", args, stderr, func(fs *flag.FlagSet) {
		wait = fs.Duration("wait", 2*time.Minute, "how long to wait for the running ioproxy to say how the reload went")
	})
	if !ok {
		fmt.Fprintln(stderr, "ioproxy reload: the running ioproxy was not asked to reload; fix the errors above first")
		return 1
	}
	path := filepath.Join(cfg.DataDir, controlSocketName)
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "ioproxy reload: no ioproxy serve runs with data_dir %s: %s\n", cfg.DataDir, noServe(path, err))
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(*wait))
	var out reloadOutcome
	_, err = io.WriteString(c, "reload\n")
	if err == nil {
		err = json.NewDecoder(io.LimitReader(c, 1<<20)).Decode(&out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "ioproxy reload: the running ioproxy did not say how the reload went (%v); see its log\n", err)
		return 1
	}
	if !out.OK {
		fmt.Fprintf(stderr, "ioproxy reload: failed; process %d keeps its running configuration:\n%s\n", out.PID, out.Message)
		return 1
	}
	fmt.Fprintf(stdout, "ioproxy reload: process %d %s\n", out.PID, out.Message)
	return 0
}
