package dnsserver

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenUDP binds n UDP sockets to addr with SO_REUSEPORT, so the kernel
// spreads datagrams over n reader goroutines without a shared socket lock.
// With port 0 the first socket picks the port and the others join it.
func listenUDP(addr string, n int) ([]net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("set SO_REUSEPORT: %w", serr)
		}
		return nil
	}}
	var pcs []net.PacketConn
	for i := range n {
		a := addr
		if i > 0 {
			a = pcs[0].LocalAddr().String()
		}
		pc, err := lc.ListenPacket(context.Background(), "udp", a)
		if err != nil {
			for _, p := range pcs {
				p.Close()
			}
			return nil, err
		}
		pcs = append(pcs, pc)
	}
	return pcs, nil
}
