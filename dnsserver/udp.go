package dnsserver

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// maxUDPMessage is the largest datagram a reader accepts; reading into a
// buffer this size means the kernel never truncates a query silently.
const maxUDPMessage = 65535

// udpListener is the set of reader goroutines of one listen address.
type udpListener struct {
	conns []*net.UDPConn
	done  chan struct{}
}

// serveUDP starts one reader goroutine per socket. Each reader owns its
// buffers, so answering allocates nothing on the fast path and nothing is
// shared between readers but the immutable zone and the view.
func (s *Server) serveUDP(pcs []net.PacketConn) *udpListener {
	u := &udpListener{done: make(chan struct{})}
	var wg sync.WaitGroup
	for _, pc := range pcs {
		conn := pc.(*net.UDPConn)
		u.conns = append(u.conns, conn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.readLoop(conn)
		}()
	}
	go func() {
		wg.Wait()
		close(u.done)
	}()
	return u
}

// close stops the readers: a closed socket fails the pending read. A query
// being answered when close is called is still answered (or its write fails).
func (u *udpListener) close() {
	for _, c := range u.conns {
		_ = c.Close()
	}
}

func (u *udpListener) wait(ctx context.Context) error {
	select {
	case <-u.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("udp readers: %w", ctx.Err())
	}
}

// udpBatch is how many datagrams one recvmmsg/sendmmsg call moves. Under
// load the syscall, not the answer, is the cost of a query (the answer path
// takes ~150 ns); batching spreads it over up to this many queries, as
// Knot and NSD do.
const udpBatch = 32

// maxQuerySize is the largest query read; a bigger datagram arrives
// truncated (MSG_TRUNC) and is dropped, as no real query is that large.
const maxQuerySize = 4096

// batchIO moves datagrams in batches: recvmmsg/sendmmsg on Linux. Two
// implementations: mmsgIO (udp_mmsg_linux.go: raw syscalls into fixed
// buffers, no allocation per packet) where the kernel ABI is known, and
// xnetIO (x/net's ReadBatch/WriteBatch, which allocates a source address
// per packet) elsewhere.
type batchIO interface {
	// recv reads at least one and up to udpBatch datagrams.
	recv() (int, error)
	// msg returns the i-th datagram of the last recv (nil when truncated)
	// and its source.
	msg(i int) (pkt []byte, src netip.Addr)
	// from is the i-th datagram's source address and port.
	from(i int) netip.AddrPort
	// outBuf is the buffer to build the reply to datagram i in.
	outBuf(i int) []byte
	// reply queues out as the answer to datagram i.
	reply(i int, out []byte)
	// flush sends the queued replies; an error on one datagram drops that
	// one only.
	flush() error
}

func (s *Server) readLoop(conn *net.UDPConn) {
	bio, err := newBatchIO(conn)
	if err != nil {
		s.log.Warn("dns udp batching unavailable, using x/net", "err", err)
		bio = newXnetIO(conn)
	}
	s.serveBatches(bio, conn)
}

// temporary is the part of net.Error (and syscall.Errno) that says an
// error may pass.
type temporary interface{ Temporary() bool }

// serveBatches reads and answers until the socket fails for good. A
// temporary error (EINTR, EMFILE, ENOBUFS...) is retried after a pause that
// grows to a second, so a lasting one does not spin a core; any other
// error ends the reader, as miekg/dns's serveUDP does.
func (s *Server) serveBatches(bio batchIO, conn *net.UDPConn) {
	var delay time.Duration
	for {
		n, err := bio.recv()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var te temporary
			if !errors.As(err, &te) || !te.Temporary() {
				s.log.Error("dns udp reader stopped", "err", err)
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Debug("dns udp read failed; retrying", "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		for i := range n {
			pkt, src := bio.msg(i)
			if pkt == nil {
				continue
			}
			if s.upd != nil && isUpdate(pkt) {
				s.dispatchUDP(func(b []byte, to netip.AddrPort) {
					if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
						s.log.Debug("dns udp write failed", "err", err)
					}
				}, pkt, bio.from(i))
				continue
			}
			if reply := s.handlePacket(pkt, bio.outBuf(i), src); reply != nil {
				bio.reply(i, reply)
			}
		}
		if err := bio.flush(); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Debug("dns udp write failed", "err", err)
		}
	}
}

// xnetIO is batchIO on x/net's ipv4/ipv6 PacketConn.
type xnetIO struct {
	conn interface {
		ReadBatch(ms []ipv4.Message, flags int) (int, error)
		WriteBatch(ms []ipv4.Message, flags int) (int, error)
	}
	in, out []ipv4.Message
	outBufs [][]byte
	queued  int
}

func newXnetIO(conn *net.UDPConn) *xnetIO {
	x := &xnetIO{in: make([]ipv4.Message, udpBatch), out: make([]ipv4.Message, udpBatch), outBufs: make([][]byte, udpBatch)}
	if la, ok := conn.LocalAddr().(*net.UDPAddr); ok && la.IP.To4() == nil {
		x.conn = ipv6.NewPacketConn(conn)
	} else {
		x.conn = ipv4.NewPacketConn(conn)
	}
	for i := range x.in {
		x.in[i].Buffers = [][]byte{make([]byte, maxQuerySize)}
		x.out[i].Buffers = [][]byte{nil}
		x.outBufs[i] = make([]byte, maxUDPMessage)
	}
	return x
}

func (x *xnetIO) recv() (int, error) { return x.conn.ReadBatch(x.in, 0) }

func (x *xnetIO) msg(i int) ([]byte, netip.Addr) {
	m := &x.in[i]
	if m.Flags&msgTrunc != 0 {
		return nil, netip.Addr{}
	}
	var src netip.Addr
	if ua, ok := m.Addr.(*net.UDPAddr); ok {
		src = ua.AddrPort().Addr()
	}
	return m.Buffers[0][:m.N], src
}

func (x *xnetIO) from(i int) netip.AddrPort {
	if ua, ok := x.in[i].Addr.(*net.UDPAddr); ok {
		return ua.AddrPort()
	}
	return netip.AddrPort{}
}

func (x *xnetIO) outBuf(i int) []byte { return x.outBufs[i] }

func (x *xnetIO) reply(i int, out []byte) {
	x.out[x.queued].Buffers[0] = out
	x.out[x.queued].Addr = x.in[i].Addr
	x.queued++
}

func (x *xnetIO) flush() error {
	var firstErr error
	for sent := 0; sent < x.queued; {
		k, err := x.conn.WriteBatch(x.out[sent:x.queued], 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Skip the datagram that failed (e.g. an unreachable
			// source); the rest of the batch still goes out.
			firstErr = cmp.Or(firstErr, err)
			k = 1
		}
		sent += k
	}
	x.queued = 0
	return firstErr
}

// handlePacket answers one UDP datagram into out and returns the reply, or
// nil to stay silent. It never panics: a panic while answering becomes
// SERVFAIL, and a malformed packet FORMERR or silence.
func (s *Server) handlePacket(pkt, out []byte, src netip.Addr) (reply []byte) {
	if len(pkt) < headerLen {
		// Not even a header: anything we sent could only amplify.
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic while answering", "panic", p, "packet", fmt.Sprintf("%x", pkt))
			reply = headerOnly(out, pkt, dns.RcodeServerFailure)
		}
	}()
	bits := binary.BigEndian.Uint16(pkt[2:])
	switch headerAction(bits, binary.BigEndian.Uint16(pkt[4:])) {
	case dns.MsgIgnore:
		return nil
	case dns.MsgRejectNotImplemented:
		s.counts.add(qtypeNone, dns.RcodeNotImplemented)
		reply = headerOnly(out, pkt, dns.RcodeNotImplemented)
	case dns.MsgReject:
		// The full path answers FORMERR too, with an OPT record when
		// the query had one (RFC 6891 §7).
		reply, _ = s.slowAnswer(pkt, out, src)
	default:
		var ok bool
		if reply, ok = s.fastAnswerFrom(pkt, out, src); !ok {
			var cv cookieVerdict
			if reply, cv = s.slowAnswer(pkt, out, src); cv == cookieValid {
				// A valid server cookie proves the source is not
				// spoofed: no reflection to limit (RFC 7873 §5.3).
				return reply
			} else if cv == cookieClientOnly && s.rrl != nil {
				return s.limitCookie(pkt, out, src, reply)
			}
		}
	}
	if s.rrl != nil {
		switch s.rrl.decide(src) {
		case rrlDrop:
			return nil
		case rrlSlip:
			return slipReply(reply)
		}
	}
	return reply
}

// slowAnswer is miekg/dns's full message path: unpack, answer, pack.
func (s *Server) slowAnswer(pkt, out []byte, src netip.Addr) ([]byte, cookieVerdict) {
	var r dns.Msg
	if err := r.Unpack(pkt); err != nil {
		s.counts.add(qtypeNone, dns.RcodeFormatError)
		return headerOnly(out, pkt, dns.RcodeFormatError), cookieNone
	}
	m, cv := s.answer(&r, false, src)
	b, err := m.PackBuffer(out)
	if err != nil {
		s.log.Warn("dns reply did not pack", "question", r.Question, "err", err)
		return headerOnly(out, pkt, dns.RcodeServerFailure), cv
	}
	return b, cv
}

const headerLen = 12

// headerOnly writes a reply that is just a header: the query's ID, opcode
// and RD bit, the rcode, and no sections (we may not have been able to read
// the question at all). It matches what miekg/dns sends over TCP.
func headerOnly(out, pkt []byte, rcode int) []byte {
	out = out[:headerLen]
	clear(out)
	copy(out[:2], pkt[:2])
	opcode := pkt[2] & 0x78
	out[2] = 0x80 | opcode | pkt[2]&0x01
	out[3] = byte(rcode & 0xF)
	return out
}

// slipReply turns reply into its question only, with TC=1: the rate
// limiter's "slip", which costs no more than the query did and tells a
// real resolver to come back over TCP, where spoofing is impossible.
func slipReply(reply []byte) []byte {
	if len(reply) < headerLen {
		return nil
	}
	end := headerLen
	if binary.BigEndian.Uint16(reply[4:]) == 1 {
		q, ok := skipName(reply, headerLen)
		if !ok || q+4 > len(reply) {
			return nil
		}
		end = q + 4
	}
	reply = reply[:end]
	reply[2] |= 0x02 // TC
	clear(reply[6:12])
	return reply
}

// skipName returns the offset after the (uncompressed or pointer-ended)
// name at off.
func skipName(b []byte, off int) (int, bool) {
	for off < len(b) {
		l := int(b[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xC0 == 0xC0:
			return off + 2, off+2 <= len(b)
		case l > 63:
			return 0, false
		}
		off += 1 + l
	}
	return 0, false
}
