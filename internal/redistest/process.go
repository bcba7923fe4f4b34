package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// errAddrInUse is a start that failed because redis-server could not bind
// its port.
var errAddrInUse = errors.New("address already in use")

// process is one run of redis-server, as e2e/internal/proc's Process is for
// nginx and Caddy.
type process struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
}

// startProcess runs bin in a process group of its own, so that a kill
// reaches the children Redis forks (an AOF rewrite, a snapshot). If the
// test binary dies without cleanup (a panic, a timeout), redis-server gets
// SIGTERM, so that it frees its port rather than outlive the run.
func startProcess(bin string, args []string, dir string, out ...io.Writer) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	w := io.MultiWriter(out...)
	cmd.Stdout, cmd.Stderr = w, w
	// A child Redis forked (an AOF rewrite) holds the output pipe too;
	// once the server has exited, Wait must not wait for it.
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// err is how the process exited (nil for status 0), once it has; nil
// before.
func (p *process) err() error {
	if p.hasExited() {
		return p.waitErr
	}
	return nil
}

// waitReady waits until the Redis at addr answers PING with PONG, and is
// this process: a port that answers may belong to another Redis that took
// it first, while this one is about to give up its bind. It fails as soon
// as the process exits, and after timeout with what the last probe saw.
func (p *process) waitReady(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it was ready: %v", p.waitErr)
		default:
		}
		pid, err := probe(addr, p.exited)
		if err == nil && pid == p.pid() {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("%s is answered by process %d, not %d", addr, pid, p.pid())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probe sends PING and INFO server to the Redis at addr, in RESP by hand
// (the harness does not depend on the client under test), and returns the
// process_id INFO reports once PING has answered +PONG. While Redis loads
// its data it answers PING with -LOADING, which is not ready. It gives up
// when abort is closed: a port held by something that accepts and never
// answers must not keep it waiting after the server has exited.
func probe(addr string, abort <-chan struct{}) (int, error) {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return 0, err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-abort:
		case <-done:
		}
		c.Close()
	}()
	if err := c.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(c, "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"); err != nil {
		return 0, fmt.Errorf("send PING: %w", err)
	}
	r := bufio.NewReader(c)
	line, err := readLine(r)
	if err != nil {
		return 0, fmt.Errorf("PING: %w", err)
	}
	if line != "+PONG" {
		return 0, fmt.Errorf("PING answered %q", line)
	}
	line, err = readLine(r)
	if err != nil {
		return 0, fmt.Errorf("INFO server: %w", err)
	}
	size, ok := strings.CutPrefix(line, "$")
	n, err := strconv.Atoi(size)
	if !ok || err != nil || n < 0 || n > 1<<20 {
		return 0, fmt.Errorf("INFO server answered %q", line)
	}
	info := make([]byte, n+2)
	if _, err := io.ReadFull(r, info); err != nil {
		return 0, fmt.Errorf("INFO server: %w", err)
	}
	for l := range strings.Lines(string(info)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err != nil {
				return 0, fmt.Errorf("INFO server: process_id %q", v)
			}
			return pid, nil
		}
	}
	return 0, errors.New("INFO server: no process_id")
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\r\n"), nil
}

// stop sends sig and kills the process group if the process has not
// exited after grace. killed says the kill was needed. A SIGKILL goes to
// the group at once.
func (p *process) stop(sig syscall.Signal, grace time.Duration) (killed bool, err error) {
	if p.hasExited() {
		return false, nil
	}
	if sig != syscall.SIGKILL {
		if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return false, fmt.Errorf("stop: send %s: %w", signalName(sig), err)
		}
		select {
		case <-p.exited:
			return false, nil
		case <-time.After(grace):
		}
		killed = true
	}
	if err := syscall.Kill(-p.pid(), syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, fmt.Errorf("stop: kill process group: %w", err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		// SIGKILL cannot be ignored; a process that outlives it is stuck
		// in the kernel, and the test must not hang on it.
		return killed, fmt.Errorf("stop: process %d still there %s after SIGKILL", p.pid(), stopGrace)
	}
	return killed, nil
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGKILL:
		return "SIGKILL"
	}
	return fmt.Sprintf("signal %d (%v)", int(sig), sig)
}

// logBuffer keeps the last max bytes written to it. It is safe for
// concurrent use: redis-server's stdout and stderr are copied into it
// while a test reads it.
type logBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func newLogBuffer(max int) *logBuffer { return &logBuffer{max: max} }

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
	}
	return len(p), nil
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
