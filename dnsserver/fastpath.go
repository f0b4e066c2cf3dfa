package dnsserver

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"
)

// The fast path answers the query this server exists for — TXT of a
// registered subdomain that has values — by writing the reply's bytes
// straight from the view into the reader's buffer: no dns.Msg, no
// allocation. The answer records' owner is a compression pointer to the
// question (offset 12), so the reply keeps the query's spelling (0x20) for
// free. Anything unusual (other types, EDNS version, pointers in the
// question, trailing bytes, a reply too big for the client) falls back to
// the full message path, which produces the same bytes for the cases both
// handle (TestFastPathMatchesFullPath).

// ptrToQuestion is a compression pointer to the question name.
const ptrToQuestion = 0xC000 | headerLen

// optLen is the length of our OPT record: root owner, type, class (UDP
// size), TTL (extended rcode, version, flags), empty rdata.
const optLen = 11

// cookieOptLen is the COOKIE option in a reply: code, length, client
// cookie, server cookie.
const cookieOptLen = 4 + clientCookieLen + serverCookieLen

// fastAnswer is fastAnswerFrom for a query of unknown source: one with a
// DNS cookie takes the full path.
func (s *Server) fastAnswer(pkt, out []byte) ([]byte, bool) {
	return s.fastAnswerFrom(pkt, out, netip.Addr{})
}

// fastAnswerFrom returns the reply to pkt from src and true when it could
// answer pkt itself. The caller has checked QR=0, a served opcode and
// QDCOUNT=1.
func (s *Server) fastAnswerFrom(pkt, out []byte, src netip.Addr) ([]byte, bool) {
	if pkt[2]&0x78 != 0 || // opcode QUERY only
		pkt[6]|pkt[7]|pkt[8]|pkt[9] != 0 || // no answer or authority records
		pkt[10] != 0 || pkt[11] > 1 { // at most one additional (OPT)
		return nil, false
	}
	z := s.zone
	// Read the question name lower-cased, labels only (a query has no
	// reason to compress its one name).
	var name [255]byte
	off, n := headerLen, 0
	for {
		if off >= len(pkt) {
			return nil, false
		}
		l := int(pkt[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || off+1+l > len(pkt) || n+1+l >= len(name) {
			return nil, false
		}
		name[n] = byte(l)
		for i := range l {
			c := pkt[off+1+i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			name[n+1+i] = c
		}
		n += 1 + l
		off += 1 + l
	}
	if off+4 > len(pkt) ||
		binary.BigEndian.Uint16(pkt[off:]) != dns.TypeTXT ||
		binary.BigEndian.Uint16(pkt[off+2:]) != dns.ClassINET {
		return nil, false
	}
	qend := off + 4
	// <label>.<origin>: exactly one label above the apex.
	if n == 0 {
		return nil, false
	}
	ll := int(name[0])
	if n != 1+ll+len(z.originWire) || !bytes.Equal(name[1+ll:n], z.originWire) {
		return nil, false
	}

	limit, hasOpt, do := dns.MinMsgSize, false, false
	var cookie []byte
	switch pkt[11] {
	case 0:
		if qend != len(pkt) {
			return nil, false
		}
	case 1:
		o := qend
		if o+optLen > len(pkt) || pkt[o] != 0 ||
			binary.BigEndian.Uint16(pkt[o+1:]) != dns.TypeOPT ||
			pkt[o+6] != 0 || // EDNS version 0 only; the full path sends BADVERS
			o+optLen+int(binary.BigEndian.Uint16(pkt[o+9:])) != len(pkt) {
			return nil, false
		}
		hasOpt = true
		do = pkt[o+7]&0x80 != 0
		if do && s.signer != nil {
			return nil, false // signed answers take the full path
		}
		var ok bool
		if cookie, ok = findCookie(pkt[o+optLen:]); !ok {
			return nil, false
		}
		// Where a cookie decides about rate limiting, or its source is
		// unknown, the full path answers.
		if cookie != nil && (s.rrl != nil || !src.IsValid()) {
			return nil, false
		}
		limit = min(max(int(binary.BigEndian.Uint16(pkt[o+3:])), dns.MinMsgSize), ednsBufferSize)
	}

	e, ok := s.view.lookupBytes(name[1 : 1+ll])
	if !ok || !e.hasValues() {
		return nil, false
	}
	// Each value is one RR of 12 bytes (pointer, type, class, TTL, rdlen)
	// and one character-string; e.txt has a 2-byte length per value where
	// the wire has a 1-byte one.
	count := 0
	for off := 0; off < len(e.txt); count++ {
		if e.txt[off] != 0 { // longer than 255: the full path splits it
			return nil, false
		}
		off += 2 + int(e.txt[off+1])
	}
	var server [serverCookieLen]byte
	if cookie != nil {
		var v cookieVerdict
		if server, v = s.cookies.checkRaw(cookie, src, s.opts.Now()); v == cookieMalformed {
			return nil, false // FORMERR from the full path
		}
	}
	size := qend + len(e.txt) + count*(12-1)
	if hasOpt {
		size += optLen
	}
	if cookie != nil {
		size += cookieOptLen
	}
	if size > limit || size > len(out) {
		return nil, false // the full path truncates
	}

	b := out[:size]
	copy(b[0:2], pkt[0:2])
	b[2] = 0x80 | 0x04 | pkt[2]&0x01 // QR, AA, RD echoed
	b[3] = pkt[3] & 0x10             // CD echoed; RA=0, AD=0, NOERROR
	binary.BigEndian.PutUint16(b[4:], 1)
	binary.BigEndian.PutUint16(b[6:], uint16(count))
	binary.BigEndian.PutUint16(b[8:], 0)
	b[10], b[11] = 0, 0
	if hasOpt {
		b[11] = 1
	}
	w := headerLen + copy(b[headerLen:], pkt[headerLen:qend])
	ttl := z.cfg.TXTTTL
	for off := 0; off < len(e.txt); {
		l := int(e.txt[off+1])
		binary.BigEndian.PutUint16(b[w:], ptrToQuestion)
		binary.BigEndian.PutUint16(b[w+2:], dns.TypeTXT)
		binary.BigEndian.PutUint16(b[w+4:], dns.ClassINET)
		binary.BigEndian.PutUint32(b[w+6:], ttl)
		binary.BigEndian.PutUint16(b[w+10:], uint16(1+l))
		// The character-string is the value's length byte and bytes,
		// which is e.txt from the low length byte on.
		w += 12 + copy(b[w+12:], e.txt[off+1:off+2+l])
		off += 2 + l
	}
	if hasOpt {
		b[w] = 0
		binary.BigEndian.PutUint16(b[w+1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(b[w+3:], ednsBufferSize)
		b[w+5], b[w+6], b[w+7], b[w+8] = 0, 0, 0, 0
		if do {
			b[w+7] = 0x80
		}
		binary.BigEndian.PutUint16(b[w+9:], 0)
		if cookie != nil {
			binary.BigEndian.PutUint16(b[w+9:], cookieOptLen)
			binary.BigEndian.PutUint16(b[w+11:], dns.EDNS0COOKIE)
			binary.BigEndian.PutUint16(b[w+13:], clientCookieLen+serverCookieLen)
			copy(b[w+15:], cookie[:clientCookieLen])
			copy(b[w+15+clientCookieLen:], server[:])
		}
	}
	s.counts.add(dns.TypeTXT, dns.RcodeSuccess)
	return b, true
}

// findCookie returns the data of the first COOKIE option among the OPT
// RDATA opts (nil if none), and false when the options do not parse.
func findCookie(opts []byte) ([]byte, bool) {
	var cookie []byte
	for len(opts) > 0 {
		if len(opts) < 4 {
			return nil, false
		}
		code, l := binary.BigEndian.Uint16(opts), int(binary.BigEndian.Uint16(opts[2:]))
		if 4+l > len(opts) {
			return nil, false
		}
		if code == dns.EDNS0COOKIE && cookie == nil {
			cookie = opts[4 : 4+l]
		}
		opts = opts[4+l:]
	}
	return cookie, true
}
