package dnsserver

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delegated/delegated/store"
	"github.com/miekg/dns"
)

// Online signing. The zone's answers change every few seconds, so RRSIGs
// are made when an answer is first needed and kept in a cache keyed by the
// RRset's canonical content: a TXT set is signed once per change however
// often it is asked for, and an old entry is re-signed once it is older
// than signatureRefresh, long before it expires. One ECDSA P-256 key
// (algorithm 13) is a combined signing key; during a rollover the DNSKEY
// RRset carries two keys and is signed by both, so a validator holding
// either key's DS validates at every step.

// Algorithm is the one DNSSEC algorithm delegated signs with.
const Algorithm = dns.ECDSAP256SHA256

const (
	// signatureInception backdates signatures against clock skew.
	signatureInception = time.Hour
	// signatureValidity is how long a signature is valid.
	signatureValidity = 7 * 24 * time.Hour
	// signatureRefresh is the age at which a cached signature is replaced:
	// a cached answer (TTLs here are at most days) never outlives it.
	signatureRefresh = 24 * time.Hour
	// sigCacheSize bounds one generation of the signature cache; two
	// generations are kept (see sigCache). A flood of queries for names
	// that do not exist makes one entry per name (about 400 bytes), so
	// this bounds what it costs in memory; the live TXT sets asked for
	// again stay, as a hit moves an entry to the current generation.
	sigCacheSize = 1 << 14
)

// GenerateDNSSECKey makes a new private key for Algorithm, as PKCS#8 DER.
func GenerateDNSSECKey() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dnsserver: generate dnssec key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("dnsserver: encode dnssec key: %w", err)
	}
	return der, nil
}

// DNSKEY returns the public DNSKEY record of a stored key, for origin with
// ttl. It is a combined signing key: flags 257 (zone key, SEP).
func DNSKEY(origin string, ttl uint32, k store.DNSSECKey) (*dns.DNSKEY, error) {
	priv, err := parseKey(k)
	if err != nil {
		return nil, err
	}
	return dnskeyOf(origin, ttl, &priv.PublicKey), nil
}

func parseKey(k store.DNSSECKey) (*ecdsa.PrivateKey, error) {
	if k.Algorithm != Algorithm {
		return nil, fmt.Errorf("dnsserver: dnssec key %d: algorithm %d, only %d (ECDSAP256SHA256) is supported", k.ID, k.Algorithm, Algorithm)
	}
	pk, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("dnsserver: dnssec key %d: %w", k.ID, err)
	}
	priv, ok := pk.(*ecdsa.PrivateKey)
	if !ok || priv.Curve != elliptic.P256() {
		return nil, fmt.Errorf("dnsserver: dnssec key %d: not an ECDSA P-256 key", k.ID)
	}
	return priv, nil
}

func dnskeyOf(origin string, ttl uint32, pub *ecdsa.PublicKey) *dns.DNSKEY {
	raw, err := pub.Bytes() // 0x04 | X | Y
	if err != nil {
		panic(err) // a P-256 key always encodes
	}
	return &dns.DNSKEY{
		Hdr:       dns.RR_Header{Name: origin, Rrtype: dns.TypeDNSKEY, Class: dns.ClassINET, Ttl: ttl},
		Flags:     dns.ZONE | dns.SEP,
		Protocol:  3,
		Algorithm: Algorithm,
		PublicKey: base64.StdEncoding.EncodeToString(raw[1:]),
	}
}

// zoneKey is one key of the DNSKEY RRset.
type zoneKey struct {
	tag  uint16
	priv crypto.Signer
	// signs is true for the active key: it signs every RRset; the others
	// sign only the DNSKEY RRset.
	signs bool
}

// keySet is the immutable signing state; a rollover step swaps it whole.
type keySet struct {
	gen    uint64
	keys   []zoneKey
	active *zoneKey
	// dnskey, cds and cdnskey are the apex RRsets; CDS/CDNSKEY (RFC 7344)
	// name the keys the parent should hold a DS for: all but a retired one.
	dnskey, cds, cdnskey []dns.RR
}

// signer signs RRsets with the current keys and caches the signatures.
type signer struct {
	origin string
	ttl    uint32
	now    func() time.Time
	keys   atomic.Pointer[keySet]
	gen    atomic.Uint64
	cache  sigCache
	// keyBufs are scratch buffers for cache keys (*[]byte).
	keyBufs sync.Pool
}

func newSigner(origin string, ttl uint32, now func() time.Time, keys []store.DNSSECKey) (*signer, error) {
	s := &signer{origin: origin, ttl: ttl, now: now}
	s.keyBufs.New = func() any { b := make([]byte, 0, 512); return &b }
	s.cache.cur = map[string]*dns.RRSIG{}
	if err := s.setKeys(keys); err != nil {
		return nil, err
	}
	return s, nil
}

// setKeys installs a new key set. It fails, changing nothing, unless
// exactly one key is active.
func (s *signer) setKeys(keys []store.DNSSECKey) error {
	ks := &keySet{gen: s.gen.Add(1)}
	for _, k := range keys {
		priv, err := parseKey(k)
		if err != nil {
			return err
		}
		dk := dnskeyOf(s.origin, s.ttl, &priv.PublicKey)
		zk := zoneKey{tag: dk.KeyTag(), priv: priv, signs: k.State == store.KeyActive}
		ks.keys = append(ks.keys, zk)
		ks.dnskey = append(ks.dnskey, dk)
		if k.State != store.KeyRetired {
			cds := dk.ToDS(dns.SHA256).ToCDS()
			cds.Hdr.Ttl = s.ttl
			ks.cds = append(ks.cds, cds)
			ks.cdnskey = append(ks.cdnskey, dk.ToCDNSKEY())
		}
	}
	for i := range ks.keys {
		if ks.keys[i].signs {
			if ks.active != nil {
				return fmt.Errorf("dnsserver: dnssec: two keys are active")
			}
			ks.active = &ks.keys[i]
		}
	}
	if ks.active == nil {
		return fmt.Errorf("dnsserver: dnssec: no active key (run delegated serve once to create one)")
	}
	s.keys.Store(ks)
	return nil
}

// apexRRs returns the DNSSEC RRsets the apex holds for qtype, or nil.
func (s *signer) apexRRs(qtype uint16) []dns.RR {
	ks := s.keys.Load()
	switch qtype {
	case dns.TypeDNSKEY:
		return copyRRs(ks.dnskey)
	case dns.TypeCDS:
		return copyRRs(ks.cds)
	case dns.TypeCDNSKEY:
		return copyRRs(ks.cdnskey)
	}
	return nil
}

// sign returns the RRSIGs of rrset (one RRset, all RRs of one owner and
// type): by the active key, and for the DNSKEY RRset by every key. The
// RRSIGs are fresh copies owned by the caller, named as rrset[0] is.
func (s *signer) sign(rrset []dns.RR) ([]dns.RR, error) {
	ks := s.keys.Load()
	hdr := rrset[0].Header()
	bp := s.keyBufs.Get().(*[]byte)
	defer s.keyBufs.Put(bp)
	key := appendCacheKey((*bp)[:0], ks.gen, rrset)
	base := len(key)
	now := s.now()
	var out []dns.RR
	for i := range ks.keys {
		zk := &ks.keys[i]
		if !zk.signs && hdr.Rrtype != dns.TypeDNSKEY {
			continue
		}
		key = append(key[:base], byte(zk.tag>>8), byte(zk.tag)) // an entry per key
		sig := s.cache.get(key)
		if sig == nil || now.Sub(time.Unix(int64(sig.Inception), 0)) > signatureRefresh+signatureInception {
			var err error
			if sig, err = s.makeSig(zk, rrset, now); err != nil {
				return nil, err
			}
			s.cache.put(string(key), sig)
		}
		c := dns.Copy(sig).(*dns.RRSIG)
		c.Hdr.Name = hdr.Name
		c.Hdr.Ttl = hdr.Ttl
		out = append(out, c)
	}
	*bp = key
	return out, nil
}

func (s *signer) makeSig(zk *zoneKey, rrset []dns.RR, now time.Time) (*dns.RRSIG, error) {
	sig := &dns.RRSIG{
		Hdr:        dns.RR_Header{Ttl: rrset[0].Header().Ttl},
		Algorithm:  Algorithm,
		SignerName: s.origin,
		KeyTag:     zk.tag,
		Inception:  uint32(now.Add(-signatureInception).Unix()),
		Expiration: uint32(now.Add(signatureValidity).Unix()),
	}
	if err := sig.Sign(zk.priv, rrset); err != nil {
		return nil, fmt.Errorf("dnsserver: sign %s %s: %w", rrset[0].Header().Name, dns.TypeToString[rrset[0].Header().Rrtype], err)
	}
	// Keep the owner in canonical (lower) case in the cache; the caller
	// names each copy after the answer's spelling.
	sig.Hdr.Name = strings.ToLower(sig.Hdr.Name)
	return sig, nil
}

// appendCacheKey appends the identity of an RRset by content to b: the key
// generation, the owner in lower case, then each RR's type, class, TTL and
// RDATA in wire form (its packed form without the owner). Equal content,
// equal signature. It reuses b's storage, so a cache hit allocates nothing
// here.
func appendCacheKey(b []byte, gen uint64, rrset []dns.RR) []byte {
	b = binary.BigEndian.AppendUint64(b, gen)
	for _, c := range []byte(rrset[0].Header().Name) {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b = append(b, c)
	}
	for _, rr := range rrset {
		start := len(b)
		b = slices.Grow(b, dns.Len(rr)+len(rr.Header().Name)+2)
		end, err := dns.PackRR(rr, b[:cap(b)], start, nil, false)
		if err != nil {
			b = append(b, rr.String()...) // cannot happen for our RRs; still unique
			continue
		}
		// Drop the owner (uncompressed labels), keep the rest.
		off, ok := skipName(b[:end], start)
		if !ok {
			off = start
		}
		b = append(b[:start], b[off:end]...)
	}
	return b
}

// sigCache is a bounded map in two generations: when the current one is
// full it becomes the previous one, which is dropped at the next turn. A
// hit in the previous generation moves forward. Simple, O(1), and what is
// asked for often stays.
type sigCache struct {
	mu       sync.Mutex
	cur, old map[string]*dns.RRSIG
}

func (c *sigCache) get(k []byte) *dns.RRSIG {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sig, ok := c.cur[string(k)]; ok { // no allocation: the compiler sees a lookup
		return sig
	}
	if sig, ok := c.old[string(k)]; ok {
		c.putLocked(string(k), sig)
		return sig
	}
	return nil
}

func (c *sigCache) put(k string, sig *dns.RRSIG) {
	c.mu.Lock()
	c.putLocked(k, sig)
	c.mu.Unlock()
}

func (c *sigCache) putLocked(k string, sig *dns.RRSIG) {
	if len(c.cur) >= sigCacheSize {
		c.old, c.cur = c.cur, make(map[string]*dns.RRSIG, sigCacheSize/4)
	}
	c.cur[k] = sig
}

// SetDNSSECKeys replaces the signing keys (a rollover step, read back from
// the store). It fails, changing nothing, when the server was built without
// DNSSEC or unless exactly one key is active.
func (s *Server) SetDNSSECKeys(keys []store.DNSSECKey) error {
	if s.signer == nil {
		return fmt.Errorf("dnsserver: dnssec is off ([zone] dnssec = false)")
	}
	return s.signer.setKeys(keys)
}
