package dnsserver

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the server's current answers")

// ednsQ describes the OPT record a query carries.
type ednsQ struct {
	size    uint16
	do      bool
	version uint8
	unknown bool // add an option code nobody assigned
}

// goldenCase is one row of dns-behaviour.md (or one protocol rule). rcode
// and aa are asserted in code as well as through the golden file, so that
// -update cannot bless a wrong answer unnoticed.
type goldenCase struct {
	name   string
	qname  string
	qtype  uint16
	qclass uint16 // default IN
	opcode int
	noRD   bool
	edns   *ednsQ
	// questions overrides the question section (QDCOUNT rules).
	questions []dns.Question
	rcode     int
	aa        bool
	// perTransport: UDP and TCP answers differ (truncation), one golden
	// section each.
	perTransport bool
}

var goldenCases = []goldenCase{
	// The table in dns-behaviour.md.
	{name: "outside_zone", qname: "www.example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
	{name: "outside_zone_parent", qname: "example.org.", qtype: dns.TypeSOA, rcode: dns.RcodeRefused},
	{name: "outside_zone_suffix_lookalike", qname: "xauth.example.org.", qtype: dns.TypeTXT, rcode: dns.RcodeRefused},
	{name: "apex_soa", qname: testOrigin, qtype: dns.TypeSOA, aa: true},
	{name: "apex_ns_with_glue", qname: testOrigin, qtype: dns.TypeNS, aa: true},
	{name: "apex_a", qname: testOrigin, qtype: dns.TypeA, aa: true},
	{name: "apex_aaaa", qname: testOrigin, qtype: dns.TypeAAAA, aa: true},
	{name: "apex_txt_case_kept", qname: testOrigin, qtype: dns.TypeTXT, aa: true},
	{name: "apex_caa_nodata", qname: testOrigin, qtype: dns.TypeCAA, aa: true},
	{name: "apex_mx_nodata", qname: testOrigin, qtype: dns.TypeMX, aa: true},
	{name: "apex_0x20", qname: "AuTh.ExAmPlE.oRg.", qtype: dns.TypeSOA, aa: true},
	{name: "sub_txt_values", qname: subValues + "." + testOrigin, qtype: dns.TypeTXT, aa: true},
	{name: "sub_txt_values_0x20", qname: strings.ToUpper(subValues[:8]) + subValues[8:] + ".aUtH.example.ORG.", qtype: dns.TypeTXT, aa: true},
	{name: "sub_txt_no_value_nodata", qname: subEmpty + "." + testOrigin, qtype: dns.TypeTXT, aa: true},
	{name: "sub_a_nodata", qname: subValues + "." + testOrigin, qtype: dns.TypeA, aa: true},
	{name: "sub_aaaa_nodata", qname: subValues + "." + testOrigin, qtype: dns.TypeAAAA, aa: true},
	{name: "sub_cname_nodata", qname: subValues + "." + testOrigin, qtype: dns.TypeCNAME, aa: true},
	{name: "unregistered_nxdomain", qname: "00000000-0000-0000-0000-000000000000." + testOrigin, qtype: dns.TypeTXT, rcode: dns.RcodeNameError, aa: true},
	{name: "below_sub_nxdomain", qname: "x." + subValues + "." + testOrigin, qtype: dns.TypeTXT, rcode: dns.RcodeNameError, aa: true},
	{name: "own_acme_challenge_txt", qname: "_acme-challenge." + testOrigin, qtype: dns.TypeTXT, aa: true},
	{name: "glue_name_a", qname: "ns1." + testOrigin, qtype: dns.TypeA, aa: true},
	{name: "glue_name_txt_nodata", qname: "ns1." + testOrigin, qtype: dns.TypeTXT, aa: true},
	{name: "cname_static", qname: "www." + testOrigin, qtype: dns.TypeA, aa: true},
	{name: "any_apex_minimal", qname: testOrigin, qtype: dns.TypeANY, aa: true},
	{name: "any_sub_minimal", qname: subValues + "." + testOrigin, qtype: dns.TypeANY, aa: true},
	{name: "any_nxdomain", qname: "nope." + testOrigin, qtype: dns.TypeANY, rcode: dns.RcodeNameError, aa: true},
	{name: "axfr_refused", qname: testOrigin, qtype: dns.TypeAXFR, rcode: dns.RcodeRefused},
	{name: "ixfr_refused", qname: testOrigin, qtype: dns.TypeIXFR, rcode: dns.RcodeRefused},

	// Protocol rules.
	{name: "rd_clear_echoed", qname: testOrigin, qtype: dns.TypeSOA, noRD: true, aa: true},
	{name: "class_ch_refused", qname: "version.bind.", qtype: dns.TypeTXT, qclass: dns.ClassCHAOS, rcode: dns.RcodeRefused},
	{name: "class_ch_in_zone_refused", qname: testOrigin, qtype: dns.TypeTXT, qclass: dns.ClassCHAOS, rcode: dns.RcodeRefused},
	{name: "class_hs_refused", qname: testOrigin, qtype: dns.TypeTXT, qclass: dns.ClassHESIOD, rcode: dns.RcodeRefused},
	{name: "opcode_update_refused", qname: testOrigin, qtype: dns.TypeSOA, opcode: dns.OpcodeUpdate, rcode: dns.RcodeRefused},
	{name: "opcode_notify_refused", qname: testOrigin, qtype: dns.TypeSOA, opcode: dns.OpcodeNotify, rcode: dns.RcodeRefused},
	{name: "opcode_iquery_notimp", qname: testOrigin, qtype: dns.TypeSOA, opcode: dns.OpcodeIQuery, rcode: dns.RcodeNotImplemented},
	{name: "opcode_status_notimp", qname: testOrigin, qtype: dns.TypeSOA, opcode: dns.OpcodeStatus, rcode: dns.RcodeNotImplemented},
	{name: "qdcount_0_formerr", questions: []dns.Question{}, rcode: dns.RcodeFormatError},
	// FORMERR to an EDNS query still carries OPT (RFC 6891 §7), as
	// NSD and Knot send.
	{name: "qdcount_0_edns_formerr", questions: []dns.Question{}, edns: &ednsQ{size: 1232, do: true}, rcode: dns.RcodeFormatError},
	{name: "opcode_iquery_notimp_no_rd", qname: testOrigin, qtype: dns.TypeSOA, opcode: dns.OpcodeIQuery, noRD: true, rcode: dns.RcodeNotImplemented},
	{name: "qdcount_2_formerr", questions: []dns.Question{
		{Name: testOrigin, Qtype: dns.TypeSOA, Qclass: dns.ClassINET},
		{Name: testOrigin, Qtype: dns.TypeNS, Qclass: dns.ClassINET}}, rcode: dns.RcodeFormatError},
	{name: "edns_opt_echoed_1232", qname: subValues + "." + testOrigin, qtype: dns.TypeTXT, edns: &ednsQ{size: 4096}, aa: true},
	{name: "edns_do_echoed", qname: subValues + "." + testOrigin, qtype: dns.TypeTXT, edns: &ednsQ{size: 1232, do: true}, aa: true},
	{name: "edns_do_echoed_nxdomain", qname: "nope." + testOrigin, qtype: dns.TypeTXT, edns: &ednsQ{size: 1232, do: true}, rcode: dns.RcodeNameError, aa: true},
	{name: "edns_do_refused", qname: "example.com.", qtype: dns.TypeA, edns: &ednsQ{size: 1232, do: true}, rcode: dns.RcodeRefused},
	{name: "edns_version_1_badvers", qname: testOrigin, qtype: dns.TypeSOA, edns: &ednsQ{size: 1232, version: 1}, rcode: dns.RcodeBadVers},
	{name: "edns_unknown_option_ignored", qname: subValues + "." + testOrigin, qtype: dns.TypeTXT, edns: &ednsQ{size: 1232, unknown: true}, aa: true},
	{name: "edns_small_buffer_is_512", qname: testOrigin, qtype: dns.TypeSOA, edns: &ednsQ{size: 100}, aa: true},
	{name: "big_no_edns_truncated", qname: subBig + "." + testOrigin, qtype: dns.TypeTXT, aa: true, perTransport: true},
	{name: "big_edns_truncated", qname: subBig + "." + testOrigin, qtype: dns.TypeTXT, edns: &ednsQ{size: 4096}, aa: true, perTransport: true},
	{name: "big_edns_600", qname: subBig + "." + testOrigin, qtype: dns.TypeTXT, edns: &ednsQ{size: 600}, aa: true, perTransport: true},
}

func (c goldenCase) query(id uint16) *dns.Msg {
	m := &dns.Msg{}
	m.Id = id
	m.Opcode = c.opcode
	m.RecursionDesired = !c.noRD
	switch {
	case c.questions != nil:
		m.Question = c.questions
	default:
		class := c.qclass
		if class == 0 {
			class = dns.ClassINET
		}
		m.Question = []dns.Question{{Name: c.qname, Qtype: c.qtype, Qclass: class}}
	}
	if e := c.edns; e != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(e.size)
		opt.SetDo(e.do)
		opt.SetVersion(e.version)
		if e.unknown {
			opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("ignore me")})
		}
		m.Extra = append(m.Extra, opt)
	}
	return m
}

// TestGolden sends every case over UDP and TCP to a started server fed by a
// real store and compares the whole reply with testdata/golden.
func TestGolden(t *testing.T) {
	runGolden(t, newTestEnv(t, Options{}), func(goldenCase) bool { return true })
}

// runGolden runs the golden cases that want accepts against env.
func runGolden(t *testing.T, env *testEnv, want func(goldenCase) bool) {
	for i, c := range goldenCases {
		if !want(c) {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			var got strings.Builder
			answers := map[string]string{}
			for _, network := range []string{"udp", "tcp"} {
				id := uint16(0x4000 + i)
				r := exchange(t, network, env.addr, c.query(id))
				checkInvariants(t, network, c, r, id)
				answers[network] = render(r)
			}
			if c.perTransport {
				got.WriteString("## udp\n" + answers["udp"] + "## tcp\n" + answers["tcp"])
			} else {
				if answers["udp"] != answers["tcp"] {
					t.Errorf("UDP and TCP answers differ:\n--- udp\n%s--- tcp\n%s", answers["udp"], answers["tcp"])
				}
				got.WriteString(answers["udp"])
			}
			compareGolden(t, filepath.Join("testdata", "golden", c.name+".golden"), got.String())
		})
	}
}

// checkInvariants asserts what holds for every reply whatever the golden
// file says: ID echoed, QR set, RA clear, rcode and AA as the table says, RD
// echoed for QUERY, an OPT exactly when the query had one, advertising 1232
// and echoing DO, and UDP replies within the client's buffer.
func checkInvariants(t *testing.T, network string, c goldenCase, r *dns.Msg, id uint16) {
	t.Helper()
	if r.Id != id || !r.Response {
		t.Errorf("%s: id %d response %t, want id %d and QR=1", network, r.Id, r.Response, id)
	}
	if r.Rcode != c.rcode {
		t.Errorf("%s: rcode %s, want %s", network, dns.RcodeToString[r.Rcode], dns.RcodeToString[c.rcode])
	}
	if r.Authoritative != c.aa {
		t.Errorf("%s: AA %t, want %t", network, r.Authoritative, c.aa)
	}
	if r.RecursionAvailable {
		t.Errorf("%s: RA set; we never recurse", network)
	}
	// RD is echoed whatever the opcode, as NSD and Knot do.
	if r.RecursionDesired == c.noRD {
		t.Errorf("%s: RD %t not echoed", network, r.RecursionDesired)
	}
	opt := r.IsEdns0()
	switch {
	case c.edns == nil && opt != nil && c.rcode != dns.RcodeBadVers:
		t.Errorf("%s: OPT in reply to a query without one", network)
	case c.edns != nil && c.rcode != dns.RcodeNotImplemented && opt == nil:
		t.Errorf("%s: no OPT in reply to an EDNS query", network)
	case opt != nil:
		if opt.UDPSize() != ednsBufferSize || opt.Do() != c.edns.do || opt.Version() != 0 || len(opt.Option) != 0 {
			t.Errorf("%s: reply OPT udp=%d do=%t version=%d options=%d, want udp=1232 do=%t version=0 options=0",
				network, opt.UDPSize(), opt.Do(), opt.Version(), len(opt.Option), c.edns.do)
		}
	}
	if network == "udp" {
		limit := 512
		if c.edns != nil {
			limit = min(max(int(c.edns.size), 512), ednsBufferSize)
		}
		r.Compress = true // as sent
		if n := r.Len(); n > limit {
			t.Errorf("udp: reply of %d bytes exceeds the client's %d", n, limit)
		}
	} else if r.Truncated {
		t.Errorf("tcp: TC set")
	}
	// Negative answers carry the SOA with TTL min(SOA TTL, minimum).
	if (r.Rcode == dns.RcodeNameError || (r.Rcode == dns.RcodeSuccess && len(r.Answer) == 0)) && c.aa && !r.Truncated {
		if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA || r.Ns[0].Header().Ttl != 60 {
			t.Errorf("%s: negative answer authority %v, want the SOA with TTL 60", network, r.Ns)
		}
	}
	// Answer owners keep the query's spelling.
	for _, rr := range r.Answer {
		if strings.EqualFold(rr.Header().Name, c.qname) && rr.Header().Name != c.qname {
			t.Errorf("%s: owner %s, want the query's spelling %s", network, rr.Header().Name, c.qname)
		}
	}
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to create it)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("reply differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}
