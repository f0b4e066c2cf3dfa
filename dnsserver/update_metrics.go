package dnsserver

import (
	"sync/atomic"

	"github.com/miekg/dns"
)

// updateResult is how an UPDATE ended, the label of
// delegated_dns_updates_total; a fixed set.
type updateResult int

const (
	resApplied     updateResult = iota // NOERROR: written (or prerequisites held)
	resPrereq                          // a prerequisite failed (YXDOMAIN, NXRRSET, ...)
	resRefused                         // the key may not change that (REFUSED)
	resUnsigned                        // no TSIG (REFUSED)
	resBadKey                          // NOTAUTH/BADKEY
	resBadSig                          // NOTAUTH/BADSIG
	resBadTime                         // NOTAUTH/BADTIME
	resBadTrunc                        // NOTAUTH/BADTRUNC
	resNotAuth                         // not our zone (NOTAUTH)
	resNotZone                         // a record outside the zone (NOTZONE)
	resFormErr                         // malformed (FORMERR)
	resRateLimited                     // too many failed signatures from the source (REFUSED)
	resServFail                        // the store failed (SERVFAIL)
	resBusy                            // too many updates in flight: dropped
	numUpdateResults
)

var updateResultNames = [numUpdateResults]string{
	"applied", "prerequisite_failed", "refused", "unsigned", "badkey", "badsig", "badtime", "badtrunc",
	"notauth", "notzone", "formerr", "rate_limited", "servfail", "busy",
}

func (r updateResult) String() string { return updateResultNames[r] }

type updateCounts struct {
	n [numUpdateResults]atomic.Uint64
}

func (c *updateCounts) add(r updateResult) { c.n[r].Add(1) }

func tsigResult(code uint16) updateResult {
	switch code {
	case dns.RcodeBadKey:
		return resBadKey
	case dns.RcodeBadSig:
		return resBadSig
	case dns.RcodeBadTime:
		return resBadTime
	}
	return resBadTrunc
}

func rcodeResult(rcode int) updateResult {
	switch rcode {
	case dns.RcodeNotZone:
		return resNotZone
	case dns.RcodeNotAuth:
		return resNotAuth
	case dns.RcodeRefused:
		return resRefused
	}
	return resFormErr
}

// UpdateCounts calls fn with the number of UPDATE requests so far per
// result (see updateResultNames); nothing when updates are off.
func (s *Server) UpdateCounts(fn func(result string, n uint64)) {
	if s.upd == nil {
		return
	}
	for i := range s.upd.counts.n {
		fn(updateResultNames[i], s.upd.counts.n[i].Load())
	}
}
