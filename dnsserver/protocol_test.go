package dnsserver

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func soaQuery(id uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(testOrigin, dns.TypeSOA)
	m.Id = id
	return m
}

func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResponsesDropped: a packet with QR=1 gets no reply (answering answers
// is how reflection loops start). Silence is proven without waiting: the
// next reply on the same socket or connection is the good query's.
func TestResponsesDropped(t *testing.T) {
	env := newTestEnv(t, Options{})
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			c := dial(t, network, env.addr)
			bad := soaQuery(1)
			bad.Response = true
			if _, err := c.Write(pack(t, bad)); err != nil {
				t.Fatal(err)
			}
			r := exchangeRaw(t, c, pack(t, soaQuery(2)), 2)
			if r.Rcode != dns.RcodeSuccess {
				t.Fatalf("good query after a response: %v", r)
			}
		})
	}
}

// TestTCPSeveralQueriesPerConnection: one connection, many queries,
// pipelined, every reply arrives.
func TestTCPSeveralQueriesPerConnection(t *testing.T) {
	env := newTestEnv(t, Options{})
	c := dial(t, "tcp", env.addr)
	const n = 20
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion(subValues+"."+testOrigin, dns.TypeTXT)
		m.Id = uint16(100 + i)
		if err := c.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint16]bool{}
	for range n {
		if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
			t.Fatal(err)
		}
		r, err := c.ReadMsg()
		if err != nil {
			t.Fatalf("after %d replies: %v", len(seen), err)
		}
		if len(r.Answer) != 2 {
			t.Errorf("reply %d: %d answers, want 2", r.Id, len(r.Answer))
		}
		seen[r.Id] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct replies, want %d", len(seen), n)
	}
}

// TestTCPIdleTimeout: an idle connection is closed by the server.
func TestTCPIdleTimeout(t *testing.T) {
	env := newTestEnv(t, Options{TCPIdleTimeout: 200 * time.Millisecond})
	conn, err := net.DialTimeout("tcp", env.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The deadline is far beyond the idle timeout: reaching it means the
	// server never closed the connection.
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("idle connection still open after 5s with a 200ms idle timeout")
		}
		if err == nil {
			t.Fatal("server sent data on an idle connection")
		}
	}
}

// TestTCPConnectionBound: past MaxTCPConnections, a new connection is not
// served until one closes.
func TestTCPConnectionBound(t *testing.T) {
	env := newTestEnv(t, Options{MaxTCPConnections: 2})
	var held []*dns.Conn
	for i := range 2 {
		c := dial(t, "tcp", env.addr)
		exchangeRaw(t, c, pack(t, soaQuery(uint16(i+1))), uint16(i+1))
		held = append(held, c)
	}
	third := dial(t, "tcp", env.addr)
	if _, err := third.Write(pack(t, soaQuery(3))); err != nil {
		t.Fatal(err)
	}
	if err := third.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if r, err := third.ReadMsg(); err == nil {
		t.Fatalf("third connection served while two are open: %v", r)
	}
	held[0].Close()
	if r := readReply(t, third, 3); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("third connection after one closed: %v", r)
	}
}

// TestSerialFollowsData: the SOA serial changes with every data change the
// store publishes, and only then.
func TestSerialFollowsData(t *testing.T) {
	env := newTestEnv(t, Options{})
	serial := func() uint32 {
		r := exchange(t, "udp", env.addr, soaQuery(7))
		return r.Answer[0].(*dns.SOA).Serial
	}
	s0 := serial()
	if s1 := serial(); s1 != s0 {
		t.Fatalf("serial moved without a change: %d then %d", s0, s1)
	}
	if err := env.store.AddValue(context.Background(), subEmpty, value(subEmpty, 0)); err != nil {
		t.Fatal(err)
	}
	s2 := serial()
	if s2 == s0 {
		t.Fatalf("serial %d unchanged after a value was added", s2)
	}
	if err := env.store.ClearValues(context.Background(), subEmpty); err != nil {
		t.Fatal(err)
	}
	if s3 := serial(); s3 == s2 {
		t.Fatalf("serial %d unchanged after values were cleared", s3)
	}
}

// TestSeveralListenAddresses: IPv4 and IPv6 loopback, UDP and TCP on each.
func TestSeveralListenAddresses(t *testing.T) {
	listen := []string{"127.0.0.1:0", "127.0.0.1:0"}
	if hasIPv6Loopback() {
		listen = append(listen, "[::1]:0")
	}
	env := newTestEnv(t, Options{Listen: listen})
	addrs := env.srv.Addrs()
	if len(addrs) != len(listen) {
		t.Fatalf("Addrs() = %v, want %d addresses", addrs, len(listen))
	}
	for _, a := range addrs {
		for _, network := range []string{"udp", "tcp"} {
			r := exchange(t, network, a, soaQuery(9))
			if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
				t.Errorf("%s %s: %v", network, a, r)
			}
		}
	}
}

// TestFastPathMatchesFullPath: for the queries the wire-format fast path
// answers, its bytes equal what miekg/dns's message path packs.
func TestFastPathMatchesFullPath(t *testing.T) {
	env := newTestEnv(t, Options{})
	names := []string{subValues + "." + testOrigin, "D420C923-BBD7-4056-AB64-C3CA54C9B3CF.Auth.Example.Org.", ownLabel + "." + testOrigin}
	optVariants := []func(*dns.Msg){
		func(*dns.Msg) {},
		func(m *dns.Msg) { m.SetEdns0(1232, false) },
		func(m *dns.Msg) { m.SetEdns0(4096, true) },
		func(m *dns.Msg) { m.SetEdns0(512, false) },
	}
	fast, full := make([]byte, maxUDPMessage), make([]byte, maxUDPMessage)
	for _, name := range names {
		for i, variant := range optVariants {
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeTXT)
			m.CheckingDisabled = i%2 == 0
			variant(m)
			pkt := pack(t, m)
			got, ok := env.srv.fastAnswer(pkt, fast)
			if !ok {
				t.Fatalf("%s variant %d: fast path declined", name, i)
			}
			var r dns.Msg
			if err := r.Unpack(pkt); err != nil {
				t.Fatal(err)
			}
			reply, _ := env.srv.answer(&r, false, netip.MustParseAddr("127.0.0.1"))
			want, err := reply.PackBuffer(full)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%s variant %d:\nfast %x\nfull %x", name, i, got, want)
			}
		}
	}
	// And what it must decline.
	declined := map[string]*dns.Msg{}
	m := new(dns.Msg)
	m.SetQuestion(subEmpty+"."+testOrigin, dns.TypeTXT)
	declined["no values"] = m
	m = new(dns.Msg)
	m.SetQuestion(subBig+"."+testOrigin, dns.TypeTXT)
	declined["too big for 512"] = m
	m = new(dns.Msg)
	m.SetQuestion(subValues+"."+testOrigin, dns.TypeTXT)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	declined["edns version 1"] = m
	m = new(dns.Msg)
	m.SetQuestion(subValues+"."+testOrigin, dns.TypeA)
	declined["type A"] = m
	for what, m := range declined {
		if _, ok := env.srv.fastAnswer(pack(t, m), fast); ok {
			t.Errorf("%s: fast path answered", what)
		}
	}
}

// TestQueryCounts: replies are counted by type and rcode, bounded labels.
func TestQueryCounts(t *testing.T) {
	env := newTestEnv(t, Options{})
	send := func(network, name string, qtype uint16) {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		exchange(t, network, env.addr, m)
	}
	send("udp", subValues+"."+testOrigin, dns.TypeTXT) // fast path
	send("tcp", subValues+"."+testOrigin, dns.TypeTXT) // full path
	send("udp", "nope."+testOrigin, dns.TypeA)
	send("udp", "example.com.", dns.TypeA)
	send("udp", testOrigin, dns.TypeNSEC3PARAM) // not counted individually
	v1 := new(dns.Msg)
	v1.SetQuestion(testOrigin, dns.TypeSOA)
	v1.SetEdns0(1232, false)
	v1.IsEdns0().SetVersion(1)
	exchange(t, "udp", env.addr, v1)
	bad := soaQuery(5)
	bad.Question = append(bad.Question, bad.Question[0])
	exchange(t, "udp", env.addr, bad)

	got := map[string]uint64{}
	env.srv.QueryCounts(func(qtype, rcode string, n uint64) { got[qtype+"/"+rcode] = n })
	want := map[string]uint64{"TXT/NOERROR": 2, "A/NXDOMAIN": 1, "A/REFUSED": 1, "other/NOERROR": 1, "other/FORMERR": 1, "SOA/BADVERS": 1}
	if len(got) != len(want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s = %d, want %d (all: %v)", k, got[k], n, got)
		}
	}
}

// TestAnswerPathAllocations: the fast path allocates nothing; the metric
// counters on it are plain atomics.
func TestAnswerPathAllocations(t *testing.T) {
	env := newTestEnv(t, Options{})
	m := new(dns.Msg)
	m.SetQuestion(subValues+"."+testOrigin, dns.TypeTXT)
	m.SetEdns0(1232, true)
	pkt := pack(t, m)
	out := make([]byte, maxUDPMessage)
	src := netip.MustParseAddr("127.0.0.1")
	if n := testing.AllocsPerRun(100, func() { env.srv.handlePacket(pkt, out, src) }); n != 0 {
		t.Errorf("fast path: %.1f allocations per query, want 0", n)
	}
}

// TestPanicDoesNotKillServer: a server built without a view panics on every
// in-zone query; each gets SERVFAIL and the server keeps answering.
func TestPanicDoesNotKillServer(t *testing.T) {
	srv, err := New(Options{Listen: []string{"127.0.0.1:0"}, Logger: discardLogger()}, testZoneConfig(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	addr := srv.Addrs()[0]
	for _, network := range []string{"udp", "tcp"} {
		for i := range 3 {
			m := new(dns.Msg)
			m.SetQuestion(subValues+"."+testOrigin, dns.TypeTXT)
			if r := exchange(t, network, addr, m); r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("%s query %d: rcode %s, want SERVFAIL", network, i, dns.RcodeToString[r.Rcode])
			}
		}
		m := new(dns.Msg)
		m.SetQuestion("example.com.", dns.TypeA)
		if r := exchange(t, network, addr, m); r.Rcode != dns.RcodeRefused {
			t.Fatalf("%s after panics: %v", network, r)
		}
	}
}

// TestConcurrentUpdatesAndQueries: queries racing with store writes always
// see a consistent answer (run with -race).
func TestConcurrentUpdatesAndQueries(t *testing.T) {
	env := newTestEnv(t, Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := env.store.AddValue(ctx, subEmpty, value(subEmpty, i%50)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	c := dial(t, "udp", env.addr)
	for i := range 200 {
		m := new(dns.Msg)
		m.SetQuestion(strings.ToUpper(subEmpty)+"."+testOrigin, dns.TypeTXT)
		m.Id = uint16(i)
		r := exchangeRaw(t, c, pack(t, m), m.Id)
		if r.Rcode != dns.RcodeSuccess || !r.Authoritative {
			t.Fatalf("query %d: %v", i, r)
		}
	}
	close(stop)
	wg.Wait()
}
