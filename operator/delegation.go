package operator

import (
	"fmt"
	"strings"
)

// Problem kinds of a delegation check.
const (
	// ProblemMissing: no record at _acme-challenge.<name>.
	ProblemMissing = "missing"
	// ProblemWrongTarget: a CNAME to another target.
	ProblemWrongTarget = "wrong target"
	// ProblemNotCNAME: a TXT or A answer where the CNAME belongs (a DNS host
	// that flattens CNAMEs, or a leftover TXT record).
	ProblemNotCNAME = "not a CNAME"
	// ProblemResolve: the resolver failed (SERVFAIL, REFUSED, timeout).
	ProblemResolve = "resolution failed"
)

// Delegation is one record an operator must create, and what the check
// found for it.
type Delegation struct {
	// BaseName is the domain without "*.", e.g. "example.com".
	BaseName string `json:"base_name"`
	// Name is "_acme-challenge.example.com." and Target
	// "<uuid>.auth.example.org.".
	Name   string `json:"name"`
	Target string `json:"target"`
	// OK is true when the CNAME is in place.
	OK bool `json:"ok"`
	// Problem is one of the Problem* kinds; Found what the resolver
	// returned; Detail more words (the resolver, the rcode).
	Problem string `json:"problem,omitempty"`
	Found   string `json:"found,omitempty"`
	Detail  string `json:"detail,omitempty"`
	// Timeout is set when Problem is ProblemResolve because a server did
	// not answer in time (re-checked with backoff).
	Timeout bool `json:"timeout,omitempty"`
	// Warning is set on a delegation that is in place for every resolver
	// while the zone's own name servers could not be asked.
	Warning string `json:"warning,omitempty"`
}

// Record is the zone-file line to create.
func (d Delegation) Record() string {
	return fmt.Sprintf("%s CNAME %s", d.Name, d.Target)
}

// Explain says what is wrong in one line, or "" when nothing is. When only
// an authoritative server disagrees with the resolvers, it says which.
func (d Delegation) Explain() string {
	if d.Problem != "" && d.Problem != ProblemResolve && strings.HasPrefix(d.Detail, "authoritative: ") {
		e := d
		e.Detail = ""
		return e.Explain() + " (" + d.Detail + ")"
	}
	switch d.Problem {
	case "":
		return ""
	case ProblemMissing:
		return fmt.Sprintf("%s: no record; create %s", d.Name, d.Record())
	case ProblemWrongTarget:
		return fmt.Sprintf("%s: CNAME points to %s, expected %s", d.Name, d.Found, d.Target)
	case ProblemNotCNAME:
		return fmt.Sprintf("%s: found %s where a CNAME belongs (does the DNS host flatten CNAMEs?); create %s", d.Name, d.Found, d.Record())
	default:
		return fmt.Sprintf("%s: %s: %s", d.Name, d.Problem, d.Detail)
	}
}
