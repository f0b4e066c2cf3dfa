package dnsserver

import (
	"testing"

	"github.com/delegated/delegated/e2e/harness"
	"github.com/delegated/delegated/store"
	"github.com/miekg/dns"
)

// knotOnlineSign is the knot.conf that makes Knot sign the reference zone
// online as we do: one ECDSA P-256 combined signing key (single-type
// signing), mod-onlinesign with that policy.
var knotOnlineSign = []string{
	"policy:",
	"  - id: csk",
	"    algorithm: ecdsap256sha256",
	"    single-type-signing: on",
	"mod-onlinesign:",
	"  - id: csk",
	"    policy: csk",
}

// signedBattery is the DO=1 battery sent to delegated and to Knot's
// mod-onlinesign, over UDP then TCP.
func signedBattery() []batteryQuery {
	sub := subValues + "." + testOrigin
	empty := subEmpty + "." + testOrigin
	big := subBig + "." + testOrigin
	do := &ednsQ{size: 1232, do: true}
	var b []batteryQuery
	for _, network := range []string{"udp", "tcp"} {
		for _, q := range []batteryQuery{
			{qname: testOrigin, qtype: dns.TypeSOA},
			{qname: testOrigin, qtype: dns.TypeNS},
			{qname: testOrigin, qtype: dns.TypeA},
			{qname: testOrigin, qtype: dns.TypeAAAA},
			{qname: testOrigin, qtype: dns.TypeTXT},
			{qname: testOrigin, qtype: dns.TypeMX},
			{qname: testOrigin, qtype: dns.TypeCAA},
			{qname: testOrigin, qtype: dns.TypeDNSKEY},
			{qname: testOrigin, qtype: dns.TypeDS},
			{qname: "aUtH.eXaMpLe.OrG.", qtype: dns.TypeSOA},
			{qname: sub, qtype: dns.TypeTXT},
			{qname: "D420c923-BBD7-4056-ab64-C3CA54C9B3CF.AUTH.example.org.", qtype: dns.TypeTXT},
			{qname: sub, qtype: dns.TypeA},
			{qname: sub, qtype: dns.TypeAAAA},
			{qname: empty, qtype: dns.TypeTXT},
			{qname: "00000000-0000-0000-0000-000000000000." + testOrigin, qtype: dns.TypeTXT},
			{qname: "x." + sub, qtype: dns.TypeTXT},
			{qname: "a.b.c." + testOrigin, qtype: dns.TypeA},
			{qname: "_acme-challenge." + testOrigin, qtype: dns.TypeTXT},
			{qname: "ns1." + testOrigin, qtype: dns.TypeA},
			{qname: "ns1." + testOrigin, qtype: dns.TypeTXT},
			{qname: "www." + testOrigin, qtype: dns.TypeA},
			{qname: "www." + testOrigin, qtype: dns.TypeCNAME},
			{qname: big, qtype: dns.TypeTXT},
			{qname: big, qtype: dns.TypeTXT, edns: &ednsQ{size: 4096, do: true}},
			{qname: sub, qtype: dns.TypeTXT, edns: &ednsQ{size: 512, do: true}},
			{qname: sub, qtype: dns.TypeTXT, noRD: true},
			{qname: "www.example.com.", qtype: dns.TypeA},
		} {
			q.network = network
			if q.edns == nil {
				q.edns = do
			}
			b = append(b, q)
		}
	}
	return b
}

// TestReferenceKnotOnlineSign sends the DO=1 battery to delegated signing
// online and to Knot's mod-onlinesign serving the same zone, and fails on
// any difference in rcode, flags or section counts. Both deny existence
// with one NSEC at the query name (NOERROR for names that do not exist);
// the bitmaps differ by design (Knot lists A AAAA where RFC 9824 has
// NXNAME) and are checked in TestSignedAnswers.
func TestReferenceKnotOnlineSign(t *testing.T) {
	env := newTestEnv(t, Options{DNSSECKeys: []store.DNSSECKey{testKey(t, 1, store.KeyActive)}})
	knot := harness.StartKnotWith(t, harness.KnotOptions{
		Zones: []harness.Zone{{Name: testOrigin, Content: referenceZone(t, env, env.view.Serial()),
			KnotExtra: []string{"module: mod-onlinesign/csk"}}},
		KnotTopLevel: knotOnlineSign,
		ExtraServer:  []string{`identity: ""`, `version: ""`},
	})
	// Knot generates its key on the first signed answer's way; make sure
	// it signs before comparing.
	probe := exchange(t, "udp", knot.Addr, goldenCase{qname: testOrigin, qtype: dns.TypeDNSKEY, edns: &ednsQ{size: 1232, do: true}}.query(1))
	if len(probe.Answer) != 2 {
		t.Fatalf("knot does not sign online (mod-onlinesign missing?):\n%v", probe)
	}
	battery := signedBattery()
	diffs, _ := compareBattery(t, battery, env.addr, knot.Addr, 0x3000)
	t.Logf("signed reference battery: %d queries compared, %d differences", len(battery), diffs)
}
