package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ioproxy/ioproxy/internal/proc"
)

// freePorts are n distinct free ports (proc's), held open at once while
// chosen so that no two are the same.
func freePorts(t *testing.T, n int) []int { t.Helper(); return proc.FreePorts(t, n) }

// staleSocket leaves a socket file at path that nothing listens on, as a
// killed serve does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = ln.Close()
	if info, err := os.Lstat(path); err != nil || info.Mode()&os.ModeSocket == 0 {
		t.Fatalf("no stale socket at %s: %v", path, err)
	}
}

// The control socket takes the place of a stale one, refuses to take
// that of one that answers (another serve owns the data dir) or of a
// file that is not a socket, and refuses a data dir others may write to.
func TestListenControl(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, controlSocketName)
	staleSocket(t, path)
	cs, err := listenControl(dir)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the new control socket does not answer: %v", err)
	}
	c.Close()
	if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("control socket mode %v, %v", info.Mode(), err)
	}
	if _, err := listenControl(dir); err == nil || !strings.Contains(err.Error(), "another ioproxy serve runs with this data_dir") {
		t.Fatalf("over a socket that answers: %v", err)
	}
	cs.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Fatalf("Close left the socket: %v", err)
	}

	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(dir); err == nil || !strings.Contains(err.Error(), "is not one: remove it") {
		t.Fatalf("over a file: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := listenControl(dir); err == nil || !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Fatalf("in a data dir others may write to: %v", err)
	}
}

// A serve killed with SIGKILL leaves its control socket behind: ioproxy
// reload says plainly that no serve runs, and the next serve starts over
// it and reloads.
func TestReloadAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "ioproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	ps := freePorts(t, 2)
	cfgPath := writeConfig(t, fmt.Sprintf("data_dir = %q\ningress { http = \"127.0.0.1:%d\" }\nadmin { listen = \"127.0.0.1:%d\" }\nhost \"app.localhost\" {\n  backend = \"127.0.0.1:1\"\n  tls { mode = \"off\" }\n}\n", dataDir, ps[0], ps[1]))
	serve := func() (*exec.Cmd, chan error) {
		var logs lockedBuffer
		cmd := exec.Command(bin, "serve", "-config", cfgPath)
		cmd.Stdout, cmd.Stderr = &logs, &logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() { _ = cmd.Process.Kill() })
		waitReady(t, ps[1], &logs)
		return cmd, exited
	}
	reload := func() (int, string, string) {
		var out, errb bytes.Buffer
		code := run([]string{"reload", "-config", cfgPath, "-wait", "20s"}, &out, &errb)
		return code, out.String(), errb.String()
	}

	cmd, exited := serve()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("ioproxy did not end on SIGKILL")
	}
	sock := filepath.Join(dataDir, controlSocketName)
	if info, err := os.Lstat(sock); err != nil || info.Mode()&os.ModeSocket == 0 {
		t.Fatalf("the killed serve left no socket (%v): the test proves nothing", err)
	}
	code, out, errs := reload()
	want := "ioproxy reload: no ioproxy serve runs with data_dir " + dataDir + ": nothing answers on its control socket " + sock
	if code != 1 || out != "" || !strings.HasPrefix(errs, want) || strings.Contains(errs, "connect:") {
		t.Fatalf("reload against a stale socket: exit %d\nstdout %q\nstderr %q\nwant it to begin %q", code, out, errs, want)
	}

	cmd, _ = serve()
	if code, out, errs := reload(); code != 0 || !strings.Contains(out, fmt.Sprintf("process %d applied", cmd.Process.Pid)) {
		t.Fatalf("reload of the serve started over the stale socket: exit %d\n%s%s", code, out, errs)
	}
}
