package issuer

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

func (s Status) String() string { return string(s) }

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
