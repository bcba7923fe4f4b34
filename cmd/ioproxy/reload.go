package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ioproxy/ioproxy/server"
)

// A running `ioproxy serve` holds a lock on its pid file in the data dir
// for as long as it runs, and writes the outcome of each reload beside
// it; `ioproxy reload` finds the process through the first and reads the
// second. The lock, not the pid alone, says the process still runs: a
// stale pid file must not send SIGHUP (which ends most processes) to
// whatever process has that number now.
const (
	pidFileName    = "ioproxy.pid"
	reloadFileName = "ioproxy.reload.json"
)

// runFile is the locked pid file of a running ioproxy serve.
type runFile struct {
	dir string
	f   *os.File
	seq int
}

// reloadStatus is the outcome of the last reload, as the running
// process wrote it.
type reloadStatus struct {
	PID     int       `json:"pid"`
	Seq     int       `json:"seq"`
	OK      bool      `json:"ok"`
	At      time.Time `json:"at"`
	Message string    `json:"message"`
}

// claimRunFile writes this process's pid file in dataDir and locks it,
// failing when another ioproxy holds it.
func claimRunFile(dataDir string) (*runFile, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dataDir, pidFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file %s is locked: another ioproxy serve runs with this data_dir", path)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file: %w", err)
	}
	return &runFile{dir: dataDir, f: f}, nil
}

// report writes the outcome of a reload for `ioproxy reload` to read.
func (rf *runFile) report(rep server.ReloadReport, err error) {
	rf.seq++
	st := reloadStatus{PID: os.Getpid(), Seq: rf.seq, OK: err == nil, At: time.Now().UTC()}
	if err != nil {
		st.Message = err.Error()
	} else {
		st.Message = describeReload(rep)
	}
	b, _ := json.Marshal(st)
	tmp := filepath.Join(rf.dir, reloadFileName+".tmp")
	if werr := os.WriteFile(tmp, b, 0o600); werr == nil {
		_ = os.Rename(tmp, filepath.Join(rf.dir, reloadFileName))
	}
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

// Close unlocks and removes the pid file.
func (rf *runFile) Close() {
	_ = os.Remove(filepath.Join(rf.dir, pidFileName))
	_ = rf.f.Close()
}

// runningPID is the pid of the ioproxy serve that holds dataDir's pid
// file, or an error that says none runs.
func runningPID(dataDir string) (int, error) {
	path := filepath.Join(dataDir, pidFileName)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("no ioproxy serve runs with data_dir %s (no %s)", dataDir, pidFileName)
	}
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err == nil {
		return 0, fmt.Errorf("no ioproxy serve runs with data_dir %s (%s is left from one that stopped)", dataDir, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, 32))
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("pid file %s holds %q, not a process id", path, b)
	}
	return pid, nil
}

// readReloadStatus reads the last reload's outcome; the zero status when
// there was none.
func readReloadStatus(dataDir string) reloadStatus {
	var st reloadStatus
	b, err := os.ReadFile(filepath.Join(dataDir, reloadFileName))
	if err == nil {
		_ = json.Unmarshal(b, &st)
	}
	return st
}

// cmdReload checks the configuration, then asks the running ioproxy
// serve to apply it (SIGHUP) and prints the outcome.
func cmdReload(args []string, stdout, stderr io.Writer) int {
	var wait *time.Duration
	cfg, _, ok := loadConfig("reload", args, stderr, func(fs *flag.FlagSet) {
		wait = fs.Duration("wait", 30*time.Second, "how long to wait for the running ioproxy to say how the reload went")
	})
	if !ok {
		fmt.Fprintln(stderr, "ioproxy reload: the running ioproxy was not asked to reload; fix the errors above first")
		return 1
	}
	pid, err := runningPID(cfg.DataDir)
	if err != nil {
		fmt.Fprintln(stderr, "ioproxy reload:", err)
		return 1
	}
	before := readReloadStatus(cfg.DataDir)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		fmt.Fprintf(stderr, "ioproxy reload: signal process %d: %v\n", pid, err)
		return 1
	}
	deadline := time.Now().Add(*wait)
	for time.Now().Before(deadline) {
		st := readReloadStatus(cfg.DataDir)
		if st.PID == pid && (before.PID != pid || st.Seq > before.Seq) {
			if !st.OK {
				fmt.Fprintf(stderr, "ioproxy reload: failed; process %d keeps its running configuration:\n%s\n", pid, st.Message)
				return 1
			}
			fmt.Fprintf(stdout, "ioproxy reload: process %d %s\n", pid, st.Message)
			return 0
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(stderr, "ioproxy reload: process %d was signalled but did not report within %s; see its log\n", pid, *wait)
	return 1
}
