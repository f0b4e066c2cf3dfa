//go:build !(linux && (amd64 || arm64))

package dnsserver

import "net"

func newBatchIO(conn *net.UDPConn) (batchIO, error) { return newXnetIO(conn), nil }
