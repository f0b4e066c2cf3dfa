// Package operator holds what the issuer's operator sees: certificates,
// their delegation records, progress events, batch results and the errors
// the operator API maps to HTTP statuses. The issuer produces these values
// and httpapi serves them, so neither imports the other and the API's
// interface has typed results (no adapter in cmd).
package operator

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors the issuer wraps; the operator API chooses the status from them.
var (
	// ErrNotFound: no such certificate (404).
	ErrNotFound = errors.New("no such certificate")
	// ErrInvalid: a request the issuer refuses (400).
	ErrInvalid = errors.New("invalid request")
)

// Status is where a certificate stands. The words are the same in the CLI,
// the operator API and the logs.
type Status string

// The statuses of issuer.md.
const (
	// StatusPendingDelegation: some _acme-challenge CNAME is not in place;
	// no order is placed until it is.
	StatusPendingDelegation Status = "pending delegation"
	// StatusProcessing: an order is running or an attempt is scheduled; the
	// last error, if any, is shown.
	StatusProcessing Status = "processing"
	// StatusActive: a valid certificate is deployed.
	StatusActive Status = "active"
	// StatusFailed: attempts are exhausted; an operator's retry restarts.
	StatusFailed Status = "failed"
	// StatusRevoked: revoked at the CA.
	StatusRevoked Status = "revoked"
)

// Statuses lists every status, for listings and metrics.
var Statuses = []Status{StatusPendingDelegation, StatusProcessing, StatusActive, StatusFailed, StatusRevoked}

func (s Status) String() string { return string(s) }

// ParseStatus accepts a status word (or "pending" for pending delegation).
func ParseStatus(s string) (Status, error) {
	w := strings.ToLower(strings.TrimSpace(s))
	if w == "pending" || w == "pending-delegation" {
		return StatusPendingDelegation, nil
	}
	for _, st := range Statuses {
		if string(st) == w {
			return st, nil
		}
	}
	return "", fmt.Errorf("%w: status %q: expected one of \"pending delegation\" (or \"pending\"), \"processing\", \"active\", \"failed\", \"revoked\"", ErrInvalid, s)
}

// Step names a progress event of an issuance, in the order they happen.
type Step string

// Progress steps.
const (
	StepDelegation    Step = "delegation"
	StepOrder         Step = "order"
	StepAuthorization Step = "authorization"
	StepFinalize      Step = "finalize"
	StepDeployed      Step = "deployed"
	StepHook          Step = "hook"
	// StepDone is the last event of an attempt; Event.Status tells the outcome.
	StepDone Step = "done"
)

// Event is one progress report of an attempt on a certificate.
type Event struct {
	Cert   string `json:"cert"`
	Step   Step   `json:"step"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
	// Status is set on StepDone.
	Status Status `json:"status,omitempty"`
	// Error is set when the step failed.
	Error string `json:"error,omitempty"`
}

// Final reports whether ev ends an attempt.
func (ev Event) Final() bool { return ev.Step == StepDone }

// Paths are the deployed files of one certificate, certbot's layout.
type Paths struct {
	Dir       string `json:"dir"`
	Cert      string `json:"cert"`
	Chain     string `json:"chain"`
	FullChain string `json:"fullchain"`
	PrivKey   string `json:"privkey"`
}

// Cert is a certificate as the operator sees it.
type Cert struct {
	Name      string    `json:"name"`
	Domains   []string  `json:"domains"`
	Status    Status    `json:"status"`
	LastError string    `json:"last_error,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// DaysLeft is whole days until NotAfter (negative once expired).
	DaysLeft    int       `json:"days_left"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Attempts    int       `json:"attempts"`
	// RenewAt is the chosen renewal moment of an active certificate.
	RenewAt time.Time `json:"renew_at,omitzero"`
	// RenewalInfoAt is when the CA's renewal information is asked again.
	RenewalInfoAt time.Time `json:"renewal_info_at,omitzero"`
	// NextAction is when the issuer next works on the certificate (a
	// re-check, an attempt, a renewal).
	NextAction time.Time `json:"next_action,omitzero"`
	// CheckFailures counts consecutive delegation checks that got no
	// answer (re-checked with backoff).
	CheckFailures int `json:"check_failures,omitempty"`
	// CA names the CA that issued the current certificate; CAPin the CA
	// the certificate is pinned to (issue --ca), if any.
	CA    string `json:"ca,omitempty"`
	CAPin string `json:"ca_pin,omitempty"`
	Paths Paths  `json:"paths"`
	// Challenge is the validation method ("dns-01", "dns-account-01",
	// "dns-persist-01"); Profile the ACME profile asked for ("" when the
	// CA's own default applies).
	Challenge string `json:"challenge"`
	Profile   string `json:"profile,omitempty"`
	// Delegations are the records to create and, after a check, their state.
	Delegations []Delegation `json:"delegations,omitempty"`
}

// Request is an operator's request for a certificate.
type Request struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
	// CA pins the certificate to the configured CA of that name: no other
	// is asked, for this issuance and its renewals. Empty: the CAs in
	// order of preference, with fallback.
	CA string `json:"ca,omitempty"`
	// Challenge ("dns-01", "dns-account-01", "dns-persist-01") and
	// Profile (an ACME profile name) are optional; the issuer's
	// configuration supplies the defaults.
	Challenge string `json:"challenge,omitempty"`
	Profile   string `json:"profile,omitempty"`
}

// Filter selects certificates of a listing; zero fields match all.
type Filter struct {
	Status Status
	// Domain matches certificates with this domain or one under it.
	Domain string
}

// BatchResult is the outcome of a batch of requests, in request order.
type BatchResult struct {
	// Certificates are every requested certificate with its records.
	Certificates []Cert `json:"certificates"`
	// Created, Changed and Unchanged count what the batch did; a re-run
	// of the same batch changes nothing.
	Created   int `json:"created"`
	Changed   int `json:"changed"`
	Unchanged int `json:"unchanged"`
}

// BatchError lists every refused line of a batch; nothing was created.
type BatchError struct {
	Problems []LineProblem `json:"problems"`
}

// LineProblem is one refused request of a batch: its line (or position,
// from 1) and why.
type LineProblem struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

func (e *BatchError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "batch refused, nothing created: %d bad line(s):", len(e.Problems))
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  line %d: %s", p.Line, p.Error)
	}
	return b.String()
}

// Unwrap makes a batch error an ErrInvalid.
func (e *BatchError) Unwrap() error { return ErrInvalid }

// IssuerState is the issuer's own state: its work queues and its CAs.
type IssuerState struct {
	// Queued and Running per pool: "checks" (delegation re-checks),
	// "orders" (ACME attempts), "plans" (renewal planning, ARI).
	Queued  map[string]int `json:"queued"`
	Running map[string]int `json:"running"`
	// CAs are the configured CAs, in order of preference.
	CAs []CAState `json:"cas"`
	// PausedUntil is set while every CA is paused (rate-limited or down,
	// for all instances): no order starts before it unless a CA that was
	// down answers again. PauseReason says why.
	PausedUntil time.Time `json:"paused_until,omitzero"`
	PauseReason string    `json:"pause_reason,omitempty"`
}

// CAState is one CA as the issuer sees it.
type CAState struct {
	Name      string `json:"name"`
	Directory string `json:"directory"`
	// PausedUntil is set while the CA is skipped for all certificates,
	// after a failure of Kind ("rate_limited", "unreachable", …); Reason
	// is the failure.
	PausedUntil time.Time `json:"paused_until,omitzero"`
	Kind        string    `json:"kind,omitempty"`
	Reason      string    `json:"reason,omitempty"`
}
