package dnsserver

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// DNS Cookies (RFC 7873) with interoperable server cookies (RFC 9018): a
// server cookie is version 1, three reserved bytes, a timestamp and
// SipHash-2-4(client cookie | version | reserved | timestamp | client IP)
// under a secret every instance shares, so a cookie one instance handed
// out is valid at the others (anycast, PostgreSQL clusters).
//
// Policy (RFC 7873 §5.2): a malformed COOKIE option is FORMERR; a query
// with only a client cookie, or with a server cookie we cannot verify (not
// ours, another secret, too old), is answered normally with a fresh server
// cookie; a valid server cookie proves the source address is not spoofed,
// so such a client bypasses response rate limiting; a query without a
// valid server cookie that the rate limiter would slip gets BADCOOKIE with
// a fresh cookie instead of a bare truncation, so a real resolver comes
// back with a cookie rather than over TCP.

const (
	clientCookieLen = 8
	serverCookieLen = 16 // RFC 9018: version, reserved, timestamp, hash
	minServerCookie = 8  // RFC 7873 §4: a server cookie is 8 to 32 bytes
	maxServerCookie = 32
	cookieVersion   = 1
	// A server cookie is valid from 5 minutes in the future to an hour in
	// the past and renewed when older than half an hour (RFC 9018 §4.3).
	cookieMaxAge   = 3600
	cookieMaxAhead = 300
	cookieRenewAge = 1800
)

type cookieVerdict int

const (
	cookieNone       cookieVerdict = iota // no COOKIE option
	cookieClientOnly                      // no server cookie we can verify
	cookieValid                           // a server cookie we made, still fresh
	cookieMalformed                       // FORMERR
)

func (v cookieVerdict) String() string {
	switch v {
	case cookieNone:
		return "none"
	case cookieClientOnly:
		return "client-only"
	case cookieValid:
		return "valid"
	case cookieMalformed:
		return "malformed"
	}
	return "unknown"
}

// cookieSecrets are SipHash keys, the first makes new cookies and all are
// accepted, so a rotation does not invalidate the cookies clients hold.
type cookieSecrets struct {
	keys [][16]byte
}

// cookieJar holds the current secrets; swapping them is one atomic store.
type cookieJar struct {
	secrets atomic.Pointer[cookieSecrets]
}

// newCookieJar starts with a random secret of this process, which serves
// until SetCookieSecrets installs the ones shared through the store.
func newCookieJar() (*cookieJar, error) {
	var k [16]byte
	if _, err := rand.Read(k[:]); err != nil {
		return nil, fmt.Errorf("dnsserver: cookie secret: %w", err)
	}
	j := &cookieJar{}
	j.secrets.Store(&cookieSecrets{keys: [][16]byte{k}})
	return j, nil
}

// SetCookieSecrets installs the DNS cookie secrets (16 bytes each, newest
// first): new server cookies are made with the first, and a cookie made
// with any of them is accepted.
func (s *Server) SetCookieSecrets(secrets [][]byte) error {
	if len(secrets) == 0 {
		return fmt.Errorf("dnsserver: no cookie secret given")
	}
	cs := &cookieSecrets{}
	for i, b := range secrets {
		if len(b) != 16 {
			return fmt.Errorf("dnsserver: cookie secret %d is %d bytes, want 16", i, len(b))
		}
		cs.keys = append(cs.keys, [16]byte(b))
	}
	s.cookies.secrets.Store(cs)
	return nil
}

// serverCookie computes the RFC 9018 server cookie for client at ts.
func serverCookie(key *[16]byte, client []byte, ts uint32, ip netip.Addr) [serverCookieLen]byte {
	var buf [clientCookieLen + 8 + 16]byte
	copy(buf[:clientCookieLen], client)
	buf[8] = cookieVersion
	binary.BigEndian.PutUint32(buf[12:], ts)
	n := 16
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		n += copy(buf[16:], a[:])
	} else {
		a := ip.As16()
		n += copy(buf[16:], a[:])
	}
	var out [serverCookieLen]byte
	copy(out[:8], buf[8:16])
	binary.LittleEndian.PutUint64(out[8:], siphash24(key, buf[:n]))
	return out
}

// check judges the COOKIE option of a query from ip at now and returns the
// option for the reply (nil when the query had none or it was malformed).
func (j *cookieJar) check(opt *dns.OPT, ip netip.Addr, now time.Time) (*dns.EDNS0_COOKIE, cookieVerdict) {
	var in *dns.EDNS0_COOKIE
	for _, o := range opt.Option {
		if c, ok := o.(*dns.EDNS0_COOKIE); ok {
			in = c // RFC 7873 §5.2: only the first COOKIE option counts
			break
		}
	}
	if in == nil {
		return nil, cookieNone
	}
	raw, err := hex.DecodeString(in.Cookie)
	if err != nil {
		return nil, cookieMalformed
	}
	server, verdict := j.checkRaw(raw, ip, now)
	if verdict == cookieMalformed {
		return nil, verdict
	}
	out := make([]byte, 0, clientCookieLen+serverCookieLen)
	out = append(append(out, raw[:clientCookieLen]...), server[:]...)
	return &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hex.EncodeToString(out)}, verdict
}

// checkRaw judges the COOKIE option data raw (client cookie, then the
// server cookie if any) and returns the server cookie for the reply: the
// one presented while it is fresh, a new one otherwise. It allocates
// nothing (the UDP fast path calls it).
func (j *cookieJar) checkRaw(raw []byte, ip netip.Addr, now time.Time) (server [serverCookieLen]byte, verdict cookieVerdict) {
	if len(raw) < clientCookieLen {
		return server, cookieMalformed
	}
	client, presented := raw[:clientCookieLen], raw[clientCookieLen:]
	if len(presented) != 0 && (len(presented) < minServerCookie || len(presented) > maxServerCookie) {
		return server, cookieMalformed
	}
	secrets := j.secrets.Load()
	ts := uint32(now.Unix())
	verdict = cookieClientOnly
	if len(presented) == serverCookieLen && presented[0] == cookieVersion {
		issued := binary.BigEndian.Uint32(presented[4:])
		// Serial-number arithmetic (RFC 1982): the timestamp wraps in 2106.
		age := int32(ts - issued)
		if age <= cookieMaxAge && age >= -cookieMaxAhead {
			for i := range secrets.keys {
				want := serverCookie(&secrets.keys[i], client, issued, ip)
				if subtle.ConstantTimeCompare(want[:], presented) == 1 {
					verdict = cookieValid
					break
				}
			}
			if verdict == cookieValid && age < cookieRenewAge && age >= 0 {
				copy(server[:], presented)
				return server, verdict
			}
		}
	}
	return serverCookie(&secrets.keys[0], client, ts, ip), verdict
}

// limitCookie applies response rate limiting to a query that sent a client
// cookie without a valid server cookie: where the limiter would slip a
// truncated reply, the client gets BADCOOKIE and a fresh server cookie
// instead (RFC 7873 §5.2.3), no larger than its query, so a real resolver
// retries at once with a cookie that lets it through.
func (s *Server) limitCookie(pkt, out []byte, src netip.Addr, reply []byte) []byte {
	switch s.rrl.decide(src) {
	case rrlDrop:
		return nil
	case rrlSlip:
	default:
		return reply
	}
	var r dns.Msg
	if err := r.Unpack(pkt); err != nil {
		return slipReply(reply)
	}
	opt := r.IsEdns0()
	if opt == nil {
		return slipReply(reply)
	}
	cookie, _ := s.cookies.check(opt, src, s.opts.Now())
	m := new(dns.Msg)
	m.SetReply(&r)
	m.RecursionAvailable, m.Authoritative = false, false
	replyOpt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	replyOpt.SetUDPSize(ednsBufferSize)
	replyOpt.SetDo(opt.Do())
	if cookie != nil {
		replyOpt.Option = []dns.EDNS0{cookie}
	}
	m.Extra = []dns.RR{replyOpt}
	m.Rcode = dns.RcodeBadCookie
	b, err := m.PackBuffer(out)
	if err != nil {
		return slipReply(reply)
	}
	return b
}
