package dnsserver

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestUDPAnswerPathDoesNotAllocate: answering TXT queries over a real UDP
// socket allocates nothing per query, socket calls included. Garbage at
// this rate is what grows RSS: a million-name zone queried at full speed
// went from 196 to 287 MB before collections caught up.
func TestUDPAnswerPathDoesNotAllocate(t *testing.T) {
	env := newTestEnv(t, Options{})
	m := new(dns.Msg)
	m.SetQuestion(subValues+"."+testOrigin, dns.TypeTXT)
	query, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", env.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reply := make([]byte, 4096)
	roundTrips := func(n int) {
		for range n {
			if err := conn.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Write(query); err != nil {
				t.Fatal(err)
			}
			k, err := conn.Read(reply)
			if err != nil {
				t.Fatal(err)
			}
			if k < len(query) || reply[3]&0x0f != dns.RcodeSuccess {
				t.Fatalf("bad reply %x", reply[:k])
			}
		}
	}
	roundTrips(200) // the readers' buffers and the poller's state are set up

	const queries = 2000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	roundTrips(queries)
	runtime.ReadMemStats(&after)
	// The client side (Write, Read, SetDeadline on a connected socket)
	// allocates nothing either; a few stray allocations from the runtime
	// or the store's goroutines are tolerated, one per query is not.
	if perQuery := float64(after.Mallocs-before.Mallocs) / queries; perQuery > 0.05 {
		t.Fatalf("%.2f allocations per query over UDP, want none", perQuery)
	}
}
