// Package dnsserver is the authoritative DNS server for the one zone
// delegated serves. Answers come from the static zone built at start and
// from a View that the store keeps current; a query never touches the
// database and never takes a lock a writer holds.
package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

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
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Server answers DNS queries for one zone.
type Server struct {
	opts Options
	zone *zone
	view *View
	log  *slog.Logger

	mu      sync.Mutex
	servers []*dns.Server
	addrs   []string
}

// New builds a server for zc whose dynamic names come from view.
func New(opts Options, zc ZoneConfig, view *View) (*Server, error) {
	if opts.TCPIdleTimeout <= 0 {
		opts.TCPIdleTimeout = 10 * time.Second
	}
	if opts.MaxTCPConnections <= 0 {
		opts.MaxTCPConnections = 1000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	z, err := newZone(zc)
	if err != nil {
		return nil, err
	}
	return &Server{opts: opts, zone: z, view: view, log: opts.Logger.With("component", "dns")}, nil
}

// Start binds every listen address (UDP and TCP) and serves in the
// background. Nothing is served unless every address could be bound.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var started []*dns.Server
	fail := func(err error) error {
		for _, srv := range started {
			srv.Shutdown()
		}
		return err
	}
	for _, addr := range s.opts.Listen {
		pc, ln, err := bindBoth(addr)
		if err != nil {
			return fail(fmt.Errorf("dnsserver: listen on %s: %w", addr, err))
		}
		idle := s.opts.TCPIdleTimeout
		udp := &dns.Server{PacketConn: pc, Handler: s, MsgAcceptFunc: acceptQuery}
		tcp := &dns.Server{
			Listener:      netutil.LimitListener(ln, s.opts.MaxTCPConnections),
			Handler:       s,
			MsgAcceptFunc: acceptQuery,
			IdleTimeout:   func() time.Duration { return idle },
			ReadTimeout:   idle,
			WriteTimeout:  idle,
			MaxTCPQueries: -1,
		}
		for _, srv := range []*dns.Server{udp, tcp} {
			ready := make(chan struct{})
			srv.NotifyStartedFunc = func() { close(ready) }
			go func() {
				if err := srv.ActivateAndServe(); err != nil {
					s.log.Error("dns listener stopped", "addr", addr, "err", err)
				}
			}()
			<-ready
			started = append(started, srv)
		}
		s.addrs = append(s.addrs, pc.LocalAddr().String())
		s.log.Info("dns listening", "addr", pc.LocalAddr().String(), "zone", s.zone.origin)
	}
	s.servers = started
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
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("dnsserver: shutdown: %w", err)
	}
	return nil
}

// bindBoth binds UDP and TCP on the same address; with port 0 it retries
// until one free port is free for both.
func bindBoth(addr string) (net.PacketConn, net.Listener, error) {
	for range 20 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			return nil, nil, err
		}
	}
	return nil, nil, errors.New("no port free for both UDP and TCP")
}

// acceptQuery decides, from the header alone, what reaches ServeDNS:
// responses are dropped (never answer an answer: reflection loops), a
// question count other than one is FORMERR, and opcodes we do not serve get
// NOTIMP except UPDATE and NOTIFY, which ServeDNS refuses explicitly.
func acceptQuery(dh dns.Header) dns.MsgAcceptAction {
	const qrBit = 1 << 15
	if dh.Bits&qrBit != 0 {
		return dns.MsgIgnore
	}
	switch int(dh.Bits>>11) & 0xF {
	case dns.OpcodeQuery, dns.OpcodeUpdate, dns.OpcodeNotify:
	default:
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic while answering", "panic", p, "question", r.Question)
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeServerFailure)
			_ = w.WriteMsg(m)
		}
	}()
	m := s.answer(r, isTCP(w))
	if m == nil {
		return
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns write failed", "err", err)
	}
}

func isTCP(w dns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

// answer builds the reply to r; nil means send nothing.
func (s *Server) answer(r *dns.Msg, tcp bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = false
	m.Authoritative = false
	opt := r.IsEdns0()
	if opt != nil {
		reply := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		reply.SetUDPSize(ednsBufferSize)
		reply.SetDo(opt.Do())
		m.Extra = append(m.Extra, reply)
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
	}
	if r.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeRefused
		return m
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET {
		m.Rcode = dns.RcodeRefused
		return m
	}
	qname := strings.ToLower(q.Name)
	res, sec := s.lookup(qname, q.Qtype)
	switch res {
	case success, noData:
		m.Authoritative = true
	case nameError:
		m.Authoritative = true
		m.Rcode = dns.RcodeNameError
	case delegation:
	case refused:
		m.Rcode = dns.RcodeRefused
		return m
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
	return m
}
