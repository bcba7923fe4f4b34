package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ioproxy/ioproxy/internal/proc"
)

// errAddrInUse is a start that failed because redis-server could not bind
// its port.
var errAddrInUse = errors.New("address already in use")

// readiness is the sign, for [proc.Process.WaitProbe], that p is ready:
// the Redis at addr answers PING with PONG, and is p. A port that answers
// may belong to another Redis that took it first, while p is about to give
// up its bind. Its errors say what the probe saw.
func readiness(addr string, p *proc.Process) func() error {
	return func() error {
		pid, err := probe(addr, p.Exited())
		if err == nil && pid == p.Pid() {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("%s is answered by process %d, not %d", addr, pid, p.Pid())
		}
		return fmt.Errorf("not ready after %s: %w", readyTimeout, err)
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
