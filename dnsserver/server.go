// Package dnsserver is the authoritative DNS server for the one zone
// delegated serves. Answers come from the static zone built at start and
// from a View that the store keeps current; a query never touches the
// database and never takes a lock a writer holds.
//
// UDP is served by our own reader loops (udp.go), which answer the hot
// query — a registered subdomain's TXT values — straight from the view into
// a reused buffer (fastpath.go) and hand everything else to miekg/dns's
// message path (answer, below). TCP is served by miekg/dns's server, which
// calls the same answer.
package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/delegated/delegated/store"
	"github.com/miekg/dns"
	"golang.org/x/net/netutil"
)

// ednsBufferSize is what we advertise and the most we send over UDP: the
// DNS Flag Day 2020 value, which avoids IP fragmentation.
const ednsBufferSize = 1232

// Options tunes a Server. Zero values mean the documented defaults.
type Options struct {
	// Listen are host:port addresses served over both UDP and TCP. Port 0
	// picks one free port for both (tests); Addrs reports it.
	Listen []string
	// TCPIdleTimeout closes a TCP connection idle this long. Default 10s.
	TCPIdleTimeout time.Duration
	// MaxTCPConnections bounds open TCP connections per address. Default 1000.
	MaxTCPConnections int
	// UDPReaders is the number of UDP sockets (SO_REUSEPORT on Linux) and
	// reader goroutines per address. Default GOMAXPROCS.
	UDPReaders int
	// RRLRate enables response rate limiting over UDP: at most this many
	// responses per second to one source prefix (/24 IPv4, /56 IPv6).
	// Default 0: off.
	RRLRate int
	// RRLSlip: every RRLSlip-th response over the limit is sent truncated
	// (TC=1, no records) so a real resolver retries over TCP; the others
	// are dropped. 0 drops them all; 1 truncates them all. Default 0
	// (config applies 2, as NSD and Knot do).
	RRLSlip int
	// DNSSECKeys, when not empty, turn online signing on (dnssec.go): one
	// key must be active. SetDNSSECKeys replaces them while serving.
	DNSSECKeys []store.DNSSECKey
	// Now is the clock for rate limiting, signatures and cookies; default
	// time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// Updates, when not nil, accepts TSIG-signed RFC 2136 UPDATE
	// (update.go). Nil: UPDATE is REFUSED.
	Updates *UpdateOptions
}

// Server answers DNS queries for one zone.
type Server struct {
	opts   Options
	zone   *zone
	view   *View
	log    *slog.Logger
	rrl    *rrl // nil when rate limiting is off
	counts queryCounts
	upd    *updater // nil when updates are off
	// signer is nil when DNSSEC is off; cookies always serve (cookie.go).
	signer  *signer
	cookies *cookieJar

	mu    sync.Mutex
	tcp   []*dns.Server
	udp   []*udpListener
	addrs []string
}

// New builds a server for zc whose dynamic names come from view.
func New(opts Options, zc ZoneConfig, view *View) (*Server, error) {
	if opts.TCPIdleTimeout <= 0 {
		opts.TCPIdleTimeout = 10 * time.Second
	}
	if opts.MaxTCPConnections <= 0 {
		opts.MaxTCPConnections = 1000
	}
	if opts.UDPReaders <= 0 {
		opts.UDPReaders = runtime.GOMAXPROCS(0)
	}
	if opts.RRLRate < 0 || opts.RRLSlip < 0 {
		return nil, fmt.Errorf("dnsserver: rate limit %d/s slip %d: must not be negative", opts.RRLRate, opts.RRLSlip)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	z, err := newZone(zc)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, zone: z, view: view, log: opts.Logger.With("component", "dns")}
	if s.cookies, err = newCookieJar(); err != nil {
		return nil, err
	}
	if len(opts.DNSSECKeys) > 0 {
		if s.signer, err = newSigner(z.origin, zc.NSTTL, opts.Now, opts.DNSSECKeys); err != nil {
			return nil, err
		}
	}
	if opts.RRLRate > 0 {
		s.rrl = newRRL(opts.RRLRate, opts.RRLSlip, opts.Now)
	}
	if opts.Updates != nil {
		if s.upd, err = newUpdater(*opts.Updates, opts.Now); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Start binds every listen address (UDP and TCP) and serves in the
// background. Nothing is served unless every address could be bound.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var (
		tcps []*dns.Server
		udps []*udpListener
	)
	fail := func(err error) error {
		for _, srv := range tcps {
			_ = srv.Shutdown()
		}
		for _, u := range udps {
			u.close()
		}
		return err
	}
	for _, addr := range s.opts.Listen {
		pcs, ln, err := bindBoth(addr, s.opts.UDPReaders)
		if err != nil {
			return fail(fmt.Errorf("dnsserver: listen on %s: %w", addr, err))
		}
		idle := s.opts.TCPIdleTimeout
		tcp := &dns.Server{
			Listener:      netutil.LimitListener(ln, s.opts.MaxTCPConnections),
			Handler:       s,
			MsgAcceptFunc: s.acceptQuery,
			IdleTimeout:   func() time.Duration { return idle },
			ReadTimeout:   idle,
			WriteTimeout:  idle,
			MaxTCPQueries: -1,
		}
		if s.upd != nil {
			// miekg/dns verifies a TSIG-signed TCP message against our
			// keys; ServeDNS reads the outcome from TsigStatus.
			tcp.TsigProvider = s.upd.kr
		}
		ready := make(chan struct{})
		tcp.NotifyStartedFunc = func() { close(ready) }
		go func() {
			if err := tcp.ActivateAndServe(); err != nil {
				s.log.Error("dns tcp listener stopped", "addr", addr, "err", err)
			}
		}()
		<-ready
		tcps = append(tcps, tcp)
		u := s.serveUDP(pcs)
		udps = append(udps, u)
		s.addrs = append(s.addrs, pcs[0].LocalAddr().String())
		s.log.Info("dns listening", "addr", pcs[0].LocalAddr().String(), "zone", s.zone.origin, "udp_readers", len(pcs), "rrl_rate", s.opts.RRLRate)
	}
	s.tcp, s.udp = tcps, udps
	return nil
}

// Addrs are the bound addresses (each serves UDP and TCP on that port).
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

// Shutdown stops accepting, lets in-flight queries finish until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	tcps, udps := s.tcp, s.udp
	s.tcp, s.udp = nil, nil
	s.mu.Unlock()
	var errs []error
	for _, u := range udps {
		u.close()
	}
	for _, srv := range tcps {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	for _, u := range udps {
		if err := u.wait(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.upd != nil {
		if err := s.upd.shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dnsserver: shutdown: %w", err)
	}
	return nil
}

// bindBoth binds TCP and n UDP sockets on the same address; with port 0 it
// retries until one port is free for both.
func bindBoth(addr string, n int) ([]net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for range 20 {
		pcs, err := listenUDP(addr, n)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pcs[0].LocalAddr().String())
		if err == nil {
			return pcs, ln, nil
		}
		for _, pc := range pcs {
			pc.Close()
		}
		if port != "0" {
			return nil, nil, err
		}
	}
	return nil, nil, errors.New("no port free for both UDP and TCP")
}

// qrBit is the header's response flag.
const qrBit = 1 << 15

// acceptQuery decides, from the header alone, what reaches ServeDNS over
// TCP: responses are dropped (never answer an answer: reflection loops);
// everything else is unpacked and answered by answer, which gives NOTIMP
// for opcodes we do not serve and FORMERR for a question count other than
// one, keeping RD and the OPT record as over UDP. (miekg/dns's own reject
// replies drop both.)
func (s *Server) acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&qrBit != 0 {
		return dns.MsgIgnore
	}
	return dns.MsgAccept
}

func headerAction(bits, qdcount uint16) dns.MsgAcceptAction {
	if bits&qrBit != 0 {
		return dns.MsgIgnore
	}
	switch int(bits>>11) & 0xF {
	case dns.OpcodeQuery, dns.OpcodeUpdate, dns.OpcodeNotify:
	default:
		return dns.MsgRejectNotImplemented
	}
	if qdcount != 1 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// ServeDNS implements dns.Handler (the TCP path).
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic while answering", "panic", p, "question", r.Question)
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeServerFailure)
			_ = w.WriteMsg(m)
		}
	}()
	var src netip.Addr
	if ap, err := netip.ParseAddrPort(w.RemoteAddr().String()); err == nil {
		src = ap.Addr()
	}
	if r.Opcode == dns.OpcodeUpdate && s.upd != nil {
		if b := s.serveUpdate(r, w.TsigStatus, src); b != nil {
			if _, err := w.Write(b); err != nil {
				s.log.Debug("dns write failed", "err", err)
			}
		}
		return
	}
	m, _ := s.answer(r, true, src)
	if m == nil {
		return
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns write failed", "err", err)
	}
}

// answer builds the reply to r from src; nil means send nothing. It counts
// the reply and reports what the query's DNS cookie proved.
func (s *Server) answer(r *dns.Msg, tcp bool, src netip.Addr) (*dns.Msg, cookieVerdict) {
	m, cv := s.buildAnswer(r, tcp, src)
	qt := uint16(qtypeNone)
	if len(r.Question) == 1 {
		qt = r.Question[0].Qtype
	}
	s.counts.add(qt, m.Rcode)
	return m, cv
}

func (s *Server) buildAnswer(r *dns.Msg, tcp bool, src netip.Addr) (m *dns.Msg, cv cookieVerdict) {
	m = new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = false
	m.Authoritative = false
	m.AuthenticatedData = false
	opt := r.IsEdns0()
	var replyOpt *dns.OPT
	if opt != nil {
		replyOpt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		replyOpt.SetUDPSize(ednsBufferSize)
		replyOpt.SetDo(opt.Do())
		m.Extra = append(m.Extra, replyOpt)
		var cookie *dns.EDNS0_COOKIE
		if cookie, cv = s.cookies.check(opt, src, s.opts.Now()); cv == cookieMalformed {
			m.Rcode = dns.RcodeFormatError
			return m, cv
		} else if cookie != nil {
			replyOpt.Option = append(replyOpt.Option, cookie)
		}
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m, cv
		}
	}
	// RD is copied whatever the opcode, as NSD and Knot do (SetReply
	// copies it for QUERY only).
	m.RecursionDesired = r.RecursionDesired
	switch r.Opcode {
	case dns.OpcodeQuery:
	case dns.OpcodeUpdate, dns.OpcodeNotify:
		m.Rcode = dns.RcodeRefused
		return m, cv
	default:
		// Header only, as over UDP: the body of an opcode we do not
		// know means nothing to us.
		m.Question = nil
		m.Rcode = dns.RcodeNotImplemented
		return m, cv
	}
	if len(r.Question) != 1 {
		// Which question would we echo? None, as over UDP from the
		// header alone.
		m.Question = nil
		m.Rcode = dns.RcodeFormatError
		return m, cv
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		return m, cv
	}
	qname := strings.ToLower(q.Name)
	res, sec := s.lookup(qname, q.Qtype)
	if s.signer != nil && opt != nil && opt.Do() && res != refused {
		var err error
		if res, sec, err = s.signSections(qname, q.Qtype, res, sec, opt.Co()); err != nil {
			s.log.Error("dnssec signing failed", "qname", qname, "err", err)
			m.Rcode = dns.RcodeServerFailure
			return m, cv
		}
		replyOpt.SetCo(opt.Co())
	}
	switch res {
	case success, noData:
		m.Authoritative = true
	case nameError:
		m.Authoritative = true
		m.Rcode = dns.RcodeNameError
	case delegation:
	case refused:
		m.Rcode = dns.RcodeRefused
		return m, cv
	}
	// Answer owners take the query's spelling (0x20 case randomisation).
	for _, rr := range sec.answer {
		if rr.Header().Name == qname {
			rr.Header().Name = q.Name
		}
	}
	m.Answer = sec.answer
	m.Ns = sec.ns
	m.Extra = append(sec.extra, m.Extra...)

	size := dns.MaxMsgSize
	if !tcp {
		size = dns.MinMsgSize
		if opt != nil {
			size = min(max(int(opt.UDPSize()), dns.MinMsgSize), ednsBufferSize)
		}
	}
	m.Truncate(size)
	if m.Truncated {
		// A partial RRset is of no use (RFC 2181 §9): send none, with TC,
		// and the client asks again over TCP.
		m.Answer, m.Ns = nil, nil
		m.Extra = nil
		if replyOpt != nil {
			m.Extra = []dns.RR{replyOpt}
		}
	}
	// Truncate turns compression off when the reply fits uncompressed; we
	// always compress, which keeps replies small and owner names pointing
	// at the question (whose case the client chose).
	m.Compress = true
	return m, cv
}
