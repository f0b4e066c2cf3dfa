package harness

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
)

// Loopback is the only address the harness binds or targets.
const Loopback = "127.0.0.1"

// FreePort returns a port on 127.0.0.1 that was free for both TCP and UDP a
// moment ago: DNS servers need the same port on both, and a port free for
// one protocol is often taken on the other. The port is released before
// returning, so another process may take it first; the Start functions retry
// with fresh ports when a component fails to start on ports they picked.
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

// freePort lets the kernel pick a TCP port and keeps it only if UDP can bind
// the same number; otherwise it tries again with a new one.
func freePort() (int, error) {
	var lastErr error
	for range 20 {
		tl, err := net.Listen("tcp", Loopback+":0")
		if err != nil {
			return 0, fmt.Errorf("free port: listen tcp: %w", err)
		}
		port := tl.Addr().(*net.TCPAddr).Port
		ul, err := net.ListenPacket("udp", HostPort(port))
		if err != nil {
			lastErr = err
			_ = tl.Close()
			continue
		}
		_ = ul.Close()
		_ = tl.Close()
		return port, nil
	}
	return 0, fmt.Errorf("free port: no port free for both tcp and udp after 20 tries: %w", lastErr)
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
