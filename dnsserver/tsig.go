package dnsserver

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"hash"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/store"
)

// TSIG (RFC 8945) for UPDATE. miekg/dns builds the MAC input from the wire
// message (TsigVerifyWithProvider, TsigGenerateWithProvider); keyring
// supplies the keys, from memory, and decides BADKEY and BADSIG. miekg
// checks the time after the MAC (RFC 8945 §5.2.3), with the fudge the
// client chose.

// tsigFudge is the fudge of our signed replies, BIND's and RFC 8945's.
const tsigFudge = 300

var (
	errBadKey   = errors.New("tsig: unknown key or algorithm")
	errBadTrunc = errors.New("tsig: truncated MAC")
)

// keyring is a dns.TsigProvider over TSIGKeys. Only full-length MACs are
// accepted (our local policy, RFC 8945 §5.2.2.1): a shorter one is
// BADTRUNC.
type keyring struct{ keys *TSIGKeys }

var _ dns.TsigProvider = keyring{}

func (kr keyring) mac(msg []byte, t *dns.TSIG) ([]byte, *store.TSIGKey, error) {
	key := kr.keys.byName(t.Hdr.Name)
	if key == nil || dns.CanonicalName(t.Algorithm) != key.Algorithm {
		return nil, nil, errBadKey
	}
	var h func() hash.Hash
	switch key.Algorithm {
	case store.HMACSHA256:
		h = sha256.New
	case store.HMACSHA512:
		h = sha512.New
	default:
		return nil, nil, errBadKey
	}
	m := hmac.New(h, key.Secret)
	m.Write(msg)
	return m.Sum(nil), key, nil
}

// Generate signs msg (the MAC input) with the key t names.
func (kr keyring) Generate(msg []byte, t *dns.TSIG) ([]byte, error) {
	sum, _, err := kr.mac(msg, t)
	return sum, err
}

// Verify checks t's MAC over msg in constant time.
func (kr keyring) Verify(msg []byte, t *dns.TSIG) error {
	sum, _, err := kr.mac(msg, t)
	if err != nil {
		return err
	}
	got, err := hex.DecodeString(t.MAC)
	if err != nil {
		return dns.ErrSig
	}
	if len(got) != len(sum) {
		if len(got) >= max(10, len(sum)/2) && len(got) < len(sum) && hmac.Equal(got, sum[:len(got)]) {
			return errBadTrunc
		}
		return dns.ErrSig
	}
	if !hmac.Equal(got, sum) {
		return dns.ErrSig
	}
	return nil
}

// tsigError maps a verification error to the TSIG error field (RFC 8945
// §5.2); ok is false for a message that is malformed rather than badly
// signed.
func tsigError(err error) (code uint16, ok bool) {
	switch {
	case errors.Is(err, errBadKey), errors.Is(err, dns.ErrSecret), errors.Is(err, dns.ErrKeyAlg):
		return dns.RcodeBadKey, true
	case errors.Is(err, dns.ErrSig):
		return dns.RcodeBadSig, true
	case errors.Is(err, dns.ErrTime):
		return dns.RcodeBadTime, true
	case errors.Is(err, errBadTrunc):
		return dns.RcodeBadTrunc, true
	}
	return 0, false
}

// signReply packs m with a TSIG RR for the request's key: signed with it
// (RFC 8945 §5.3) unless tsigErr is BADKEY or BADSIG, which go unsigned
// (§5.3.2). BADTIME carries our clock in Other Data and the request's time
// as Time Signed, so the client can verify it (§5.2.3).
func signReply(m *dns.Msg, req *dns.TSIG, tsigErr uint16, kr keyring, now time.Time) ([]byte, error) {
	t := &dns.TSIG{
		Hdr:        dns.RR_Header{Name: req.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm:  req.Algorithm,
		Fudge:      tsigFudge,
		OrigId:     m.Id,
		Error:      tsigErr,
		TimeSigned: uint64(now.Unix()),
	}
	requestMAC := req.MAC
	switch tsigErr {
	case dns.RcodeBadTime:
		t.TimeSigned = req.TimeSigned
		t.OtherLen = 6
		var b [6]byte
		u := uint64(now.Unix())
		for i := range b {
			b[i] = byte(u >> (8 * (5 - i)))
		}
		t.OtherData = hex.EncodeToString(b[:])
	case dns.RcodeBadKey, dns.RcodeBadSig:
		// Unsigned, but with our time: BIND checks Time Signed even
		// here ("clocks are unsynchronized" otherwise), and miekg's
		// generator would zero it.
		m.Extra = append(m.Extra, t)
		return m.Pack()
	}
	m.Extra = append(m.Extra, t)
	b, _, err := dns.TsigGenerateWithProvider(m, kr, requestMAC, false)
	return b, err
}
