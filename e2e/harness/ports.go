package harness

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Loopback is the only address the harness binds or targets.
const Loopback = "127.0.0.1"

// FreePort returns a port on 127.0.0.1 that was free for both TCP and UDP a
// moment ago: DNS servers need the same port on both, and a port free for
// one protocol is often taken on the other. The port is released before
// returning, so another process may still take it first; the Start
// functions retry with fresh ports when a component fails to start on ports
// they picked.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	return p
}

// FreeAddr returns "127.0.0.1:<FreePort>".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return HostPort(FreePort(t))
}

// HostPort returns "127.0.0.1:port".
func HostPort(port int) string {
	return net.JoinHostPort(Loopback, strconv.Itoa(port))
}

// freePort picks a random port below the kernel's ephemeral range and keeps
// it only if both TCP and UDP can bind it. Ports the kernel hands out for :0
// and for outgoing connections come from the ephemeral range, so a port from
// below it is not taken by some other test's client socket in the moment
// between our check and the component's bind, which happened in CI.
func freePort() (int, error) {
	low := ephemeralLow()
	var lastErr error
	for range 50 {
		port := unprivilegedFloor + rand.IntN(low-unprivilegedFloor)
		tl, err := net.Listen("tcp", HostPort(port))
		if err != nil {
			lastErr = err
			continue
		}
		ul, err := net.ListenPacket("udp", HostPort(port))
		_ = tl.Close()
		if err != nil {
			lastErr = err
			continue
		}
		_ = ul.Close()
		return port, nil
	}
	return 0, fmt.Errorf("free port: no port below %d free for both tcp and udp after 50 tries: %w", low, lastErr)
}

// unprivilegedFloor keeps picks clear of the well-known and commonly
// configured service ports.
const unprivilegedFloor = 15000

// ephemeralLow is the first port of the kernel's ephemeral range, 32768 when
// it cannot be read.
func ephemeralLow() int {
	const fallback = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return fallback
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low <= unprivilegedFloor+1000 {
		return fallback
	}
	return low
}

// requireLoopback checks that addr is "host:port" with a loopback IP host.
func requireLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if !ip.IsLoopback() {
		return fmt.Errorf("address %q is not loopback", addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("address %q: port: %w", addr, err)
	}
	return nil
}

// shortTempDir returns a new directory for unix sockets, removed at the end
// of the test. t.TempDir() embeds the test name and can exceed the 108-byte
// limit of a socket path (sun_path).
func shortTempDir(t testing.TB) string {
	t.Helper()
	base := os.TempDir()
	if len(base) > 60 {
		base = "/tmp"
	}
	d, err := os.MkdirTemp(base, "e2e")
	if err != nil {
		t.Fatalf("harness: socket dir: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// pickPort returns p when it is non-zero (the caller chose it) and a free
// port otherwise.
func pickPort(p int) (int, error) {
	if p != 0 {
		return p, nil
	}
	return freePort()
}
