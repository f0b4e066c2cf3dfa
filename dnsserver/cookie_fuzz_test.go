package dnsserver

import (
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// FuzzCookie feeds arbitrary COOKIE option contents to the check: it never
// panics, the length rules of RFC 7873 decide what is malformed, and the
// cookie it hands back verifies on the next query.
func FuzzCookie(f *testing.F) {
	f.Add([]byte{})                                                                   // empty: malformed
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8})                                             // client only
	f.Add(mustHexF("2464c4abcf10c957010000005cf79f111f8130c3eee29480"))               // RFC 9018 A.1 reply
	f.Add(append([]byte{1, 2, 3, 4, 5, 6, 7, 8}, make([]byte, 33)...))                // server part too long
	f.Add(append([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff)) // 8-byte server part
	j := &cookieJar{}
	j.secrets.Store(&cookieSecrets{keys: [][16]byte{{1, 2, 3}}})
	ip := netip.MustParseAddr("2001:db8::1")
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, raw []byte) {
		reply, v := j.check(cookieOpt(hex.EncodeToString(raw)), ip, now)
		wantMalformed := len(raw) < 8 || (len(raw) > 8 && (len(raw) < 16 || len(raw) > 40))
		if (v == cookieMalformed) != wantMalformed {
			t.Fatalf("%d bytes: verdict %s", len(raw), v)
		}
		if v == cookieMalformed {
			if reply != nil {
				t.Fatalf("a reply cookie for a malformed one")
			}
			return
		}
		if reply == nil {
			t.Fatalf("no reply cookie")
		}
		if _, v2 := j.check(cookieOpt(reply.Cookie), ip, now.Add(time.Minute)); v2 != cookieValid {
			t.Fatalf("our own cookie %s is %s a minute later", reply.Cookie, v2)
		}
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}, Option: []dns.EDNS0{reply}}
		if _, err := (&dns.Msg{Extra: []dns.RR{opt}}).Pack(); err != nil {
			t.Fatalf("reply cookie does not pack: %v", err)
		}
	})
}

func mustHexF(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}
