package httpapi

import (
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how much of X-Forwarded-For is examined; a chain
// of real proxies is a handful of hops, and walking thousands of forged
// entries would only cost CPU.
const maxForwardedHops = 32

// clientAddr is the address a request comes from, used for allowfrom and
// rate limiting. X-Forwarded-For is believed only when the TCP peer is a
// trusted proxy; then the client is the right-most hop that is not itself a
// trusted proxy. Taking the left-most entry, or accepting the request when
// any hop matches allowfrom (acme-dns's behaviour), lets a client name its
// own address. ok is false when the address cannot be known (unparseable
// peer, malformed or over-long chain): callers fail closed.
func (a *API) clientAddr(r *http.Request) (netip.Addr, bool) {
	return clientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), a.trusted)
}

// ClientSourceFunc gives other handlers on the listener (the operator
// console's login limit) the source a request counts against, by the same
// rules as /register's limit: the client address (trusting
// X-Forwarded-For only from trusted), IPv6 grouped by /64.
func ClientSourceFunc(trusted []netip.Prefix) func(*http.Request) (netip.Prefix, bool) {
	return func(r *http.Request) (netip.Prefix, bool) {
		a, ok := clientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), trusted)
		if !ok {
			return netip.Prefix{}, false
		}
		return sourceKey(a), true
	}
}

func clientAddr(remoteAddr string, forwarded []string, trusted []netip.Prefix) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	peer := ap.Addr().Unmap()
	if !inPrefixes(trusted, peer) || len(forwarded) == 0 {
		return peer, true
	}
	// Several X-Forwarded-For lines are one list in order (RFC 9110 §5.3).
	var hops []string
	for _, line := range forwarded {
		for _, h := range strings.Split(line, ",") {
			hops = append(hops, h)
			if len(hops) > maxForwardedHops {
				return netip.Addr{}, false
			}
		}
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		h, ok := parseHop(hops[i])
		if !ok {
			// A trusted proxy passed on something that is not an address;
			// the real client is unknown.
			return netip.Addr{}, false
		}
		client = h
		if !inPrefixes(trusted, h) {
			return h, true
		}
	}
	// Every hop is a trusted proxy: the left-most is the origin.
	return client, true
}

// parseHop reads one X-Forwarded-For entry: an address, optionally with a
// port ("192.0.2.1:1234", "[2001:db8::1]:1234") or in brackets.
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return ap.Addr().Unmap(), true
	}
	if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil && a.Is6() && a.Zone() == "" {
			return a.Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// inPrefixes reports whether a (IPv4-mapped IPv6 read as IPv4) is in any
// of ps.
func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
