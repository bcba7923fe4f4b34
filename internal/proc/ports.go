package proc

import (
	"net"
	"testing"
)

// FreePorts returns n distinct loopback ports that were free a moment ago,
// for the listeners of a server a test configures. All n are held open at
// once while chosen and closed before FreePorts returns: ports chosen one
// at a time may repeat, since the kernel can hand out a port it has just
// seen closed again, and two listeners of one server on the same port
// fail its start. As with [FreeAddr], another process may take a port
// before the server binds it.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	if n < 0 {
		t.Fatalf("FreePorts: n = %d, want n >= 0", n)
	}
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find %d free ports: %v", n, err)
		}
		// Deferred, so that a failure above still closes those taken.
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// FreePort returns a loopback port that was free a moment ago. A test
// that needs two or more asks [FreePorts] for them at once.
func FreePort(t testing.TB) int {
	t.Helper()
	return FreePorts(t, 1)[0]
}
