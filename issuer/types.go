package issuer

import (
	"github.com/delegated/delegated/operator"
	"github.com/delegated/delegated/store"
)

// The operator's view of certificates lives in package operator, shared
// with the operator API; these names keep the issuer's own code readable.
type (
	// Status is where a certificate stands.
	Status = operator.Status
	// Step names a progress event.
	Step = operator.Step
	// Event is one progress report of an attempt.
	Event = operator.Event
	// Cert is a certificate as the operator sees it.
	Cert = operator.Cert
	// Paths are the deployed files of one certificate.
	Paths = operator.Paths
	// Request is an operator's request for a certificate.
	Request = operator.Request
	// Delegation is one record to create and what the check found.
	Delegation = operator.Delegation
)

// Statuses, steps and problem kinds (see package operator).
const (
	StatusPendingDelegation = operator.StatusPendingDelegation
	StatusProcessing        = operator.StatusProcessing
	StatusActive            = operator.StatusActive
	StatusFailed            = operator.StatusFailed
	StatusRevoked           = operator.StatusRevoked

	StepDelegation    = operator.StepDelegation
	StepOrder         = operator.StepOrder
	StepAuthorization = operator.StepAuthorization
	StepFinalize      = operator.StepFinalize
	StepDeployed      = operator.StepDeployed
	StepHook          = operator.StepHook
	StepDone          = operator.StepDone

	ProblemMissing     = operator.ProblemMissing
	ProblemWrongTarget = operator.ProblemWrongTarget
	ProblemNotCNAME    = operator.ProblemNotCNAME
	ProblemResolve     = operator.ProblemResolve
)

// ErrNotFound is returned (wrapped) for an unknown certificate name.
var ErrNotFound = operator.ErrNotFound

// ErrInvalid is returned (wrapped) for a request the issuer refuses.
var ErrInvalid = operator.ErrInvalid

// view is c as the operator sees it.
func (i *Issuer) view(c store.Certificate) Cert {
	v := Cert{
		Name: c.Name, Domains: c.Domains, Status: Status(c.Status), LastError: c.LastError,
		Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		NextAttempt: c.NextAttempt, Attempts: c.Attempts, RenewAt: c.RenewAt,
		NextAction: c.NextAction, CheckFailures: c.CheckFailures,
		Paths: pathsFor(i.opts.DeployDir, c.Name), CAPin: c.CAPin,
		Challenge: methodOf(c), Profile: c.Profile,
	}
	if c.Serial != "" {
		v.CA = i.caOf(c).Name
	}
	if Status(c.Status) == StatusActive {
		v.RenewalInfoAt = i.renewInfoAt(c)
	}
	if !c.NotAfter.IsZero() {
		v.DaysLeft = int(c.NotAfter.Sub(i.opts.Now()).Hours() / 24)
	}
	return v
}
