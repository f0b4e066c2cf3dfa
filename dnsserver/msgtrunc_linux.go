package dnsserver

import "golang.org/x/sys/unix"

// msgTrunc flags a datagram that did not fit the read buffer.
const msgTrunc = unix.MSG_TRUNC
