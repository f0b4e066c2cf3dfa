//go:build !linux

package dnsserver

// msgTrunc: outside Linux the flag is not reported; an oversized query is
// read truncated and fails to parse instead.
const msgTrunc = 0
