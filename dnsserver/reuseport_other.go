//go:build !linux

package dnsserver

import "net"

// listenUDP binds one UDP socket; several readers share it where
// SO_REUSEPORT load balancing is not available.
func listenUDP(addr string, n int) ([]net.PacketConn, error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, err
	}
	pcs := make([]net.PacketConn, n)
	for i := range pcs {
		pcs[i] = pc
	}
	return pcs, nil
}
