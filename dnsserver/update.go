package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/store"
)

// RFC 2136 dynamic update, TSIG-signed (RFC 8945). A key belongs to one
// account and may change only the TXT values of that account's own name,
// <subdomain>.<zone>: add a value (class IN), delete one (class NONE) or
// delete them all (class ANY). The batch goes to the store as one
// transaction (UpdateValues), whose prerequisite check sees the account's
// values inside it; the reply is sent after the store has committed and
// published the change, so the value is served before the client hears
// "NOERROR", as with /update.

// ValueUpdater is what UPDATE needs from the store (store.Store).
type ValueUpdater interface {
	UpdateValues(ctx context.Context, subdomain string, check func(live []string) error, changes []store.ValueChange) error
}

// UpdateOptions turns RFC 2136 updates on. The zero value of each knob is
// its documented default.
type UpdateOptions struct {
	// Store receives the changes.
	Store ValueUpdater
	// Keys are the accounts' TSIG keys (FollowKeys).
	Keys *TSIGKeys
	// FailuresPerMinute is how many failed signatures (BADKEY, BADSIG,
	// BADTIME, BADTRUNC) one source prefix (/24, /56) may send per minute
	// before its updates are refused unchecked. Default 10.
	FailuresPerMinute int
	// Timeout bounds one update's store write. Default 10s.
	Timeout time.Duration
	// MaxInFlight bounds updates being written at once over UDP; beyond
	// it a datagram is dropped (the client retries). Default 64.
	MaxInFlight int
}

// updater is the UPDATE state of a Server; nil when updates are off.
type updater struct {
	opts   UpdateOptions
	kr     keyring
	fails  *failLimiter
	counts updateCounts
	sem    chan struct{}
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

func newUpdater(o UpdateOptions, now func() time.Time) (*updater, error) {
	if o.Store == nil || o.Keys == nil {
		return nil, errors.New("dnsserver: updates need a store and keys")
	}
	if o.FailuresPerMinute <= 0 {
		o.FailuresPerMinute = 10
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 64
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &updater{
		opts:   o,
		kr:     keyring{keys: o.Keys},
		fails:  newFailLimiter(o.FailuresPerMinute, now),
		sem:    make(chan struct{}, o.MaxInFlight),
		ctx:    ctx,
		cancel: cancel,
	}, nil
}

// isUpdate reports whether pkt is an UPDATE request (not a response):
// those go to the update path, which answers a zone count other than one
// with FORMERR (RFC 2136 §3.1.1) once the signature is checked, as over TCP.
func isUpdate(pkt []byte) bool {
	return len(pkt) >= headerLen && pkt[2]&0x80 == 0 && int(pkt[2]>>3)&0xF == dns.OpcodeUpdate
}

// dispatchUDP answers an UPDATE datagram in its own goroutine: the store
// write takes milliseconds (more if the database is slow), and the reader
// must go on answering queries from memory meanwhile.
func (s *Server) dispatchUDP(write func([]byte, netip.AddrPort), pkt []byte, from netip.AddrPort) {
	u := s.upd
	select {
	case u.sem <- struct{}{}:
	default:
		u.counts.add(resBusy)
		return
	}
	pkt = append([]byte(nil), pkt...)
	u.wg.Add(1)
	go func() {
		defer func() { <-u.sem; u.wg.Done() }()
		if reply := s.updateDatagram(pkt, from.Addr()); reply != nil {
			write(reply, from)
		}
	}()
}

// updateDatagram answers one UDP UPDATE; it never panics.
func (s *Server) updateDatagram(pkt []byte, src netip.Addr) (reply []byte) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic while answering an update", "panic", p, "packet", fmt.Sprintf("%x", pkt))
			s.upd.counts.add(resServFail)
			reply = headerOnly(make([]byte, headerLen), pkt, dns.RcodeServerFailure)
		}
	}()
	var r dns.Msg
	if err := r.Unpack(pkt); err != nil {
		s.upd.counts.add(resFormErr)
		return headerOnly(make([]byte, headerLen), pkt, dns.RcodeFormatError)
	}
	verify := func() error {
		// stripTsig rewrites the buffer it is given.
		return dns.TsigVerifyWithProvider(append([]byte(nil), pkt...), s.upd.kr, "", false)
	}
	return s.serveUpdate(&r, verify, src)
}

// serveUpdate answers the UPDATE r, whose TSIG verify checks, and returns
// the packed reply.
func (s *Server) serveUpdate(r *dns.Msg, verify func() error, src netip.Addr) []byte {
	u := s.upd
	now := s.opts.Now()
	m := new(dns.Msg)
	m.SetReply(r)
	unsigned := func(rcode int, res updateResult) []byte {
		u.counts.add(res)
		m.Rcode = rcode
		b, err := m.Pack()
		if err != nil {
			return nil
		}
		return b
	}
	// The TSIG must be the last additional record, and the only one
	// (RFC 8945 §5.1).
	var treq *dns.TSIG
	n := 0
	for i, rr := range r.Extra {
		if t, ok := rr.(*dns.TSIG); ok {
			n++
			if i == len(r.Extra)-1 {
				treq = t
			}
		}
	}
	switch {
	case n > 1 || n == 1 && treq == nil:
		return unsigned(dns.RcodeFormatError, resFormErr)
	case treq != nil && !dns.IsFqdn(treq.Algorithm):
		// A TSIG without RDATA: nothing to echo back (an empty name
		// does not even pack).
		return unsigned(dns.RcodeFormatError, resFormErr)
	case treq == nil:
		return unsigned(dns.RcodeRefused, resUnsigned)
	case u.fails.blocked(src):
		return unsigned(dns.RcodeRefused, resRateLimited)
	}
	if err := verify(); err != nil {
		code, ok := tsigError(err)
		if !ok {
			return unsigned(dns.RcodeFormatError, resFormErr)
		}
		u.fails.fail(src)
		u.counts.add(tsigResult(code))
		m.Rcode = dns.RcodeNotAuth
		b, err := signReply(m, treq, code, u.kr, now)
		if err != nil {
			// BADTIME or BADTRUNC for a key removed meanwhile.
			m.Extra = nil
			return unsigned(dns.RcodeNotAuth, resServFail)
		}
		return b
	}
	key := u.opts.Keys.byName(treq.Hdr.Name)
	if key == nil {
		return unsigned(dns.RcodeNotAuth, resBadKey)
	}
	ctx, cancel := context.WithTimeout(u.ctx, u.opts.Timeout)
	rcode, res := s.applyUpdate(ctx, r, key)
	cancel()
	// A store failure was logged where it happened (applyUpdate).
	s.log.Debug("update answered", "key", key.Name, "rcode", dns.RcodeToString[rcode], "src", src)
	u.counts.add(res)
	m.Rcode = rcode
	b, err := signReply(m, treq, 0, u.kr, now)
	if err != nil {
		m.Extra = nil
		return unsigned(dns.RcodeServerFailure, resServFail)
	}
	return b
}

// prereqError is a prerequisite that does not hold (RFC 2136 §3.2.5).
type prereqError struct{ rcode int }

func (e prereqError) Error() string { return "prerequisite failed: " + dns.RcodeToString[e.rcode] }

// applyUpdate checks r against RFC 2136 §3 and key's permissions and
// writes it. The order is the RFC's, except that the update section's
// syntax and zone (§3.4.1, FORMERR and NOTZONE) are checked before
// permission (§3.3): a client learns its mistake rather than "refused".
func (s *Server) applyUpdate(ctx context.Context, r *dns.Msg, key *store.TSIGKey) (int, updateResult) {
	origin := s.zone.origin
	if len(r.Question) != 1 || r.Question[0].Qtype != dns.TypeSOA {
		return dns.RcodeFormatError, resFormErr
	}
	if zq := r.Question[0]; zq.Qclass != dns.ClassINET || !strings.EqualFold(zq.Name, origin) {
		return dns.RcodeNotAuth, resNotAuth // §3.1.1: not a zone of ours
	}
	own := key.Subdomain + "." + origin
	for _, rr := range r.Answer {
		if rc := checkPrereqSyntax(rr, origin); rc != dns.RcodeSuccess {
			return rc, rcodeResult(rc)
		}
	}
	for _, rr := range r.Ns {
		if rc := checkUpdateSyntax(rr, origin); rc != dns.RcodeSuccess {
			return rc, rcodeResult(rc)
		}
	}
	changes := make([]store.ValueChange, 0, len(r.Ns))
	for _, rr := range r.Ns {
		h := rr.Header()
		if !strings.EqualFold(h.Name, own) || h.Rrtype != dns.TypeTXT {
			return dns.RcodeRefused, resRefused
		}
		switch h.Class {
		case dns.ClassANY:
			changes = append(changes, store.ValueChange{Op: store.OpClear})
		default:
			txt, ok := rr.(*dns.TXT)
			if !ok {
				return dns.RcodeFormatError, resFormErr
			}
			v := strings.Join(txt.Txt, "")
			if !allowedValue(v, key.FreeTXT) {
				return dns.RcodeRefused, resRefused
			}
			op := store.OpAdd
			if h.Class == dns.ClassNONE {
				op = store.OpRemove
			}
			changes = append(changes, store.ValueChange{Op: op, Value: v})
		}
	}
	check := func(live []string) error { return s.checkPrereqs(r.Answer, own, live) }
	var err error
	if len(changes) == 0 {
		// Prerequisites only: nothing to write, so the view answers.
		var live []string
		if e, ok := s.view.lookup(key.Subdomain); ok {
			live = e.values()
		}
		err = check(live)
	} else {
		err = s.upd.opts.Store.UpdateValues(ctx, key.Subdomain, check, changes)
	}
	var pe prereqError
	switch {
	case err == nil:
		return dns.RcodeSuccess, resApplied
	case errors.As(err, &pe):
		return pe.rcode, resPrereq
	case errors.Is(err, store.ErrNotFound):
		// The account went away after the key was cached.
		return dns.RcodeRefused, resRefused
	default:
		s.log.Error("update: store write failed", "subdomain", key.Subdomain, "err", err)
		return dns.RcodeServerFailure, resServFail
	}
}

// allowedValue: an ACME challenge value (43 base64url characters), or with
// free-form TXT anything from 1 to 255 bytes.
func allowedValue(v string, free bool) bool {
	if free {
		return len(v) >= 1 && len(v) <= 255
	}
	if len(v) != 43 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// metaType reports types that never name an RRset (RFC 2136 §3.4.1.2:
// FORMERR in the update section).
func metaType(t uint16) bool {
	switch t {
	case dns.TypeANY, dns.TypeAXFR, dns.TypeIXFR, dns.TypeMAILA, dns.TypeMAILB, dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY:
		return true
	}
	return false
}

// checkPrereqSyntax is RFC 2136 §3.2: zone, TTL, class and RDLENGTH of a
// prerequisite.
func checkPrereqSyntax(rr dns.RR, origin string) int {
	h := rr.Header()
	if h.Ttl != 0 {
		return dns.RcodeFormatError
	}
	if !dns.IsSubDomain(origin, strings.ToLower(h.Name)) {
		return dns.RcodeNotZone
	}
	switch h.Class {
	case dns.ClassANY, dns.ClassNONE:
		if h.Rdlength != 0 || h.Rrtype != dns.TypeANY && metaType(h.Rrtype) {
			return dns.RcodeFormatError
		}
	case dns.ClassINET:
		if metaType(h.Rrtype) {
			return dns.RcodeFormatError
		}
	default:
		return dns.RcodeFormatError
	}
	return dns.RcodeSuccess
}

// checkUpdateSyntax is RFC 2136 §3.4.1: zone, class, type, TTL and
// RDLENGTH of an update record.
func checkUpdateSyntax(rr dns.RR, origin string) int {
	h := rr.Header()
	if !dns.IsSubDomain(origin, strings.ToLower(h.Name)) {
		return dns.RcodeNotZone
	}
	switch h.Class {
	case dns.ClassINET:
		if metaType(h.Rrtype) {
			return dns.RcodeFormatError
		}
	case dns.ClassANY:
		if h.Ttl != 0 || h.Rdlength != 0 || h.Rrtype != dns.TypeANY && metaType(h.Rrtype) {
			return dns.RcodeFormatError
		}
	case dns.ClassNONE:
		if h.Ttl != 0 || metaType(h.Rrtype) {
			return dns.RcodeFormatError
		}
	default:
		return dns.RcodeFormatError
	}
	return dns.RcodeSuccess
}

// checkPrereqs evaluates the prerequisites (RFC 2136 §3.2.5) against the
// zone: own's TXT values are live (read inside the update's transaction);
// every other name, which the update cannot change, is read from memory.
func (s *Server) checkPrereqs(prereqs []dns.RR, own string, live []string) error {
	at := func(name string) map[uint16][]dns.RR {
		if name == own {
			if len(live) == 0 {
				return nil
			}
			return map[uint16][]dns.RR{dns.TypeTXT: s.txtRRs(own, live)}
		}
		return s.rrsetsAt(name)
	}
	type nameType struct {
		name string
		t    uint16
	}
	var valueDep []nameType
	want := map[nameType][]dns.RR{}
	for _, rr := range prereqs {
		h := rr.Header()
		name := strings.ToLower(h.Name)
		switch {
		case h.Class == dns.ClassANY && h.Rrtype == dns.TypeANY:
			if len(at(name)) == 0 {
				return prereqError{dns.RcodeNameError}
			}
		case h.Class == dns.ClassANY:
			if len(at(name)[h.Rrtype]) == 0 {
				return prereqError{dns.RcodeNXRrset}
			}
		case h.Class == dns.ClassNONE && h.Rrtype == dns.TypeANY:
			if len(at(name)) > 0 {
				return prereqError{dns.RcodeYXDomain}
			}
		case h.Class == dns.ClassNONE:
			if len(at(name)[h.Rrtype]) > 0 {
				return prereqError{dns.RcodeYXRrset}
			}
		default:
			k := nameType{name, h.Rrtype}
			if _, seen := want[k]; !seen {
				valueDep = append(valueDep, k)
			}
			want[k] = append(want[k], rr)
		}
	}
	for _, k := range valueDep {
		if !sameRRset(want[k], at(k.name)[k.t]) {
			return prereqError{dns.RcodeNXRrset}
		}
	}
	return nil
}

// rrsetsAt is what the zone holds at name (lower case): the static records,
// the SOA at the apex, or a subdomain's TXT values.
func (s *Server) rrsetsAt(name string) map[uint16][]dns.RR {
	z := s.zone
	if node, ok := z.nodes[name]; ok {
		if name != z.origin {
			return node.rrsets
		}
		out := map[uint16][]dns.RR{dns.TypeSOA: {z.soa(s.view.Serial())}}
		for t, rrs := range node.rrsets {
			out[t] = rrs
		}
		return out
	}
	if dns.CountLabel(name) == z.originLbls+1 {
		if e, ok := s.view.lookup(name[:strings.IndexByte(name, '.')]); ok && e.hasValues() {
			return map[uint16][]dns.RR{dns.TypeTXT: s.txtRRs(name, e.values())}
		}
	}
	return nil
}

// sameRRset compares two RRsets as sets of RDATA (RFC 2136 §3.2.3: TTLs
// and order do not matter). TXT compares the joined strings, however they
// are split.
func sameRRset(a, b []dns.RR) bool {
	ka, kb := rdataSet(a), rdataSet(b)
	if len(ka) != len(kb) {
		return false
	}
	for k := range ka {
		if !kb[k] {
			return false
		}
	}
	return true
}

func rdataSet(rrs []dns.RR) map[string]bool {
	out := make(map[string]bool, len(rrs))
	for _, rr := range rrs {
		if txt, ok := rr.(*dns.TXT); ok {
			out["TXT "+strings.Join(txt.Txt, "")] = true
			continue
		}
		c := dns.Copy(rr)
		h := c.Header()
		h.Name, h.Ttl, h.Class, h.Rdlength = strings.ToLower(h.Name), 0, dns.ClassINET, 0
		out[c.String()] = true
	}
	return out
}

// shutdownUpdates ends in-flight UDP updates' waits and waits for them.
func (u *updater) shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		u.cancel()
		<-done
		return fmt.Errorf("updates: %w", ctx.Err())
	}
}
