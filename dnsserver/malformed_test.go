package dnsserver

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// header builds a 12-byte header: id, flags, and the four counts.
func header(id uint16, flags uint16, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	for i, v := range []uint16{id, flags, qd, an, ns, ar} {
		binary.BigEndian.PutUint16(b[2*i:], v)
	}
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

var (
	qnameApex = []byte("\x04auth\x07example\x03org\x00")
	typeSOAIN = []byte{0, 6, 0, 1}
)

type malformedExpect int

const (
	expectSilence malformedExpect = iota
	expectFormErr
	expectReply // some reply with our ID (any rcode) or silence: must not crash or stall
)

// malformedCases are packets a scanner or a broken client sends. The bad
// packet has ID 0xBAD0; after it a good query (ID 0x600D) must answer.
var malformedCases = []struct {
	name   string
	pkt    []byte
	expect malformedExpect
}{
	{"truncated_header_5", []byte{0xBA, 0xD0, 0x01, 0x00, 0x00}, expectSilence},
	{"truncated_header_11", header(0xBAD0, 0x0100, 1, 0, 0, 0)[:11], expectSilence},
	{"header_only_qd1", header(0xBAD0, 0x0100, 1, 0, 0, 0), expectFormErr},
	{"header_only_qd0", header(0xBAD0, 0x0100, 0, 0, 0, 0), expectFormErr},
	{"qd_65535", cat(header(0xBAD0, 0x0100, 0xFFFF, 0, 0, 0), qnameApex, typeSOAIN), expectFormErr},
	{"pointer_loop_self", cat(header(0xBAD0, 0x0100, 1, 0, 0, 0), []byte{0xC0, 0x0C}, typeSOAIN), expectFormErr},
	{"pointer_loop_pair", cat(header(0xBAD0, 0x0100, 1, 0, 0, 0), []byte{0x01, 'a', 0xC0, 0x0C}, typeSOAIN), expectFormErr},
	{"pointer_forward", cat(header(0xBAD0, 0x0100, 1, 0, 0, 0), []byte{0xC0, 0xFF}, typeSOAIN), expectFormErr},
	{"label_64", cat(header(0xBAD0, 0x0100, 1, 0, 0, 0), []byte{64}, make([]byte, 64), []byte{0}, typeSOAIN), expectFormErr},
	{"name_over_255", cat(header(0xBAD0, 0x0100, 1, 0, 0, 0), longName(), typeSOAIN), expectFormErr},
	{"label_past_end", cat(header(0xBAD0, 0x0100, 1, 0, 0, 0), []byte{30, 'a', 'b'}), expectFormErr},
	// miekg/dns reads a missing type and class as 0, and class 0 is REFUSED.
	{"question_without_type", cat(header(0xBAD0, 0x0100, 1, 0, 0, 0), qnameApex), expectReply},
	{"answer_count_lies", cat(header(0xBAD0, 0x0100, 1, 5, 0, 0), qnameApex, typeSOAIN), expectReply},
	{"additional_count_lies", cat(header(0xBAD0, 0x0100, 1, 0, 0, 9), qnameApex, typeSOAIN), expectReply},
	{"garbage_after_question", cat(header(0xBAD0, 0x0100, 1, 0, 0, 0), qnameApex, typeSOAIN, []byte("\xde\xad\xbe\xef garbage")), expectReply},
	{"opt_rdlen_past_end", cat(header(0xBAD0, 0x0100, 1, 0, 0, 1), qnameApex, typeSOAIN, []byte{0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 50}), expectFormErr},
	{"two_opts", cat(header(0xBAD0, 0x0100, 1, 0, 0, 2), qnameApex, typeSOAIN,
		[]byte{0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 0}, []byte{0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 0}), expectReply},
	{"opt_option_past_rdata", cat(header(0xBAD0, 0x0100, 1, 0, 0, 1), qnameApex, typeSOAIN, []byte{0, 0, 41, 4, 0xD0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 40}), expectReply},
	{"response_bit", cat(header(0xBAD0, 0x8100, 1, 0, 0, 0), qnameApex, typeSOAIN), expectSilence},
	{"opcode_15", cat(header(0xBAD0, 0x7900, 1, 0, 0, 0), qnameApex, typeSOAIN), expectReply},
	{"all_flags", cat(header(0xBAD0, 0x7FFF, 1, 0, 0, 0), qnameApex, typeSOAIN), expectReply},
}

func longName() []byte {
	var b []byte
	for range 5 {
		b = append(b, 63)
		b = append(b, make([]byte, 63)...)
	}
	return append(b, 0)
}

// TestMalformedPackets sends each bad packet over real UDP and TCP sockets,
// checks the reply (or its absence), then that the server still answers.
func TestMalformedPackets(t *testing.T) {
	env := newTestEnv(t, Options{})
	good := pack(t, soaQuery(0x600D))
	for _, network := range []string{"udp", "tcp"} {
		for _, c := range malformedCases {
			t.Run(network+"/"+c.name, func(t *testing.T) {
				conn := dial(t, network, env.addr)
				if _, err := conn.Write(c.pkt); err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Write(good); err != nil {
					t.Fatal(err)
				}
				// Replies come in order on one socket or connection; the
				// good one proves the bad one was handled (or dropped).
				var bad *dns.Msg
				for {
					if err := conn.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
						t.Fatal(err)
					}
					r, err := conn.ReadMsg()
					if err != nil {
						t.Fatalf("no reply to the good query after the bad packet: %v", err)
					}
					if r.Id == 0x600D {
						if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
							t.Fatalf("good query answered %v", r)
						}
						break
					}
					if r.Id != 0xBAD0 {
						t.Fatalf("reply with unknown id: %v", r)
					}
					bad = r
				}
				switch c.expect {
				case expectSilence:
					if bad != nil {
						t.Errorf("reply to a packet that deserves silence: %v", bad)
					}
				case expectFormErr:
					if bad == nil || bad.Rcode != dns.RcodeFormatError {
						t.Errorf("got %v, want FORMERR", bad)
					}
				}
				if bad != nil && !bad.Response {
					t.Errorf("reply without QR: %v", bad)
				}
			})
		}
	}
	// A TCP frame of length zero, and a connection closed mid-frame.
	conn := dial(t, "tcp", env.addr)
	if _, err := conn.Conn.Write([]byte{0, 0, 0, 40, 1, 2}); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	if r := exchange(t, "tcp", env.addr, soaQuery(0x600D)); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("after broken TCP frames: %v", r)
	}
}
