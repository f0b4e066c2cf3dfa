package dnsserver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// fuzzSeeds are the golden queries (both fast and full path) and the
// malformed packets, so fuzzing starts from every branch the tests know.
func fuzzSeeds(f *testing.F) {
	for i, c := range goldenCases {
		b, err := c.query(uint16(i)).Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, c := range malformedCases {
		f.Add(c.pkt)
	}
}

// FuzzHandlePacket feeds arbitrary datagrams to the UDP answer path (fast
// path, then unpack → answer → pack): it must not panic (handlePacket
// recovers, so a recovered panic is caught here by the SERVFAIL check), and
// any reply must parse, be a response with the query's ID, and fit the UDP
// limit.
func FuzzHandlePacket(f *testing.F) {
	fuzzSeeds(f)
	env := newTestEnv(f, Options{})
	out := make([]byte, maxUDPMessage)
	src := netip.MustParseAddr("192.0.2.1")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		reply := env.srv.handlePacket(pkt, out, src)
		checkDatagramReply(t, pkt, reply)
		if len(reply) > ednsBufferSize {
			t.Fatalf("UDP reply of %d bytes", len(reply))
		}
	})
}

// checkDatagramReply: a reply (if any) parses, answers pkt's ID, and is
// not SERVFAIL, which is what a recovered panic becomes.
func checkDatagramReply(t *testing.T, pkt, reply []byte) {
	t.Helper()
	if reply == nil {
		return
	}
	var r dns.Msg
	if err := r.Unpack(reply); err != nil {
		t.Fatalf("reply does not parse: %v\nquery %x\nreply %x", err, pkt, reply)
	}
	if !r.Response || r.Id != uint16(pkt[0])<<8|uint16(pkt[1]) {
		t.Fatalf("reply is not a response to the query:\n%v", &r)
	}
	if r.Rcode == dns.RcodeServerFailure {
		t.Fatalf("SERVFAIL (a recovered panic) for %x", pkt)
	}
}

// FuzzAnswerTCP is the TCP path without the socket: whatever miekg/dns
// unpacks, answer must build a reply that packs.
func FuzzAnswerTCP(f *testing.F) {
	fuzzSeeds(f)
	env := newTestEnv(f, Options{})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var r dns.Msg
		if err := r.Unpack(pkt); err != nil {
			return
		}
		if r.Response {
			return // acceptQuery drops these
		}
		m, _ := env.srv.answer(&r, true, netip.MustParseAddr("127.0.0.1"))
		if _, err := m.Pack(); err != nil {
			t.Fatalf("reply does not pack: %v\n%v", err, m)
		}
		if m.Id != r.Id || !m.Response {
			t.Fatalf("reply is not a response to the query:\n%v", m)
		}
	})
}
