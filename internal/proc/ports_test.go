package proc

import (
	"fmt"
	"net"
	"strings"
	"testing"
)

func TestFreePorts(t *testing.T) {
	// Many rounds: ports chosen one at a time repeat now and then, which
	// one round would seldom show.
	for range 50 {
		ports := FreePorts(t, 8)
		if len(ports) != 8 {
			t.Fatalf("FreePorts(8) = %v", ports)
		}
		seen := map[int]bool{}
		for _, p := range ports {
			if p <= 0 || p > 65535 {
				t.Fatalf("FreePorts: port %d out of range in %v", p, ports)
			}
			if seen[p] {
				t.Fatalf("FreePorts: port %d twice in %v", p, ports)
			}
			seen[p] = true
		}
		// Closed on return: the test's server can bind them all, at once.
		var lns []net.Listener
		for _, p := range ports {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				for _, ln := range lns {
					ln.Close()
				}
				t.Fatalf("FreePorts' port %d is not free: %v", p, err)
			}
			lns = append(lns, ln)
		}
		for _, ln := range lns {
			ln.Close()
		}
	}
}

func TestFreePortsNone(t *testing.T) {
	if ports := FreePorts(t, 0); len(ports) != 0 {
		t.Errorf("FreePorts(0) = %v", ports)
	}
	f, _ := OnFake(t, func(tb testing.TB) []int { return FreePorts(tb, -1) })
	if msg := f.Message(); !strings.Contains(msg, "n = -1") {
		t.Errorf("FreePorts(-1): fatal %q, want one naming n", msg)
	}
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		t.Fatalf("FreePort's port %d is not free: %v", p, err)
	}
	ln.Close()
}
