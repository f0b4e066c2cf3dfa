// Package issuer obtains certificates from an ACME CA through CNAME
// delegation to delegated's own zone. It assigns each base name a challenge
// subdomain, checks the operator's _acme-challenge CNAMEs before any order
// (no CA rate limit is spent on a missing delegation), runs orders with all
// authorizations solved at once, keeps the results in the store and deploys
// them in certbot's file layout.
package issuer

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/acme/api"
	"github.com/google/uuid"
	"github.com/miekg/dns"
	"golang.org/x/crypto/bcrypt"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store"
)

// Store is what the issuer needs from persistence.
type Store interface {
	providers.LocalStore
	CreateAccount(ctx context.Context, a store.Account) error
	DeleteAccount(ctx context.Context, username string) error
	AddChallengeName(ctx context.Context, n store.ChallengeName) error
	DeleteChallengeName(ctx context.Context, baseName string) error
	SaveCertificate(ctx context.Context, c store.Certificate) error
	SaveCertificateFenced(ctx context.Context, c store.Certificate, f store.Fence) error
	CertificateByName(ctx context.Context, name string) (store.Certificate, error)
	Certificates(ctx context.Context) ([]store.Certificate, error)
	DeleteCertificate(ctx context.Context, name string) error
	ACMEAccountFor(ctx context.Context, directory, email string) (store.ACMEAccount, error)
	SaveACMEAccount(ctx context.Context, a store.ACMEAccount) error
	Leaser
}

// Solver presents and removes DNS-01 values; providers.Local is the one the
// daemon uses.
type Solver interface {
	PresentContext(ctx context.Context, domain, keyAuth string) error
	CleanUpContext(ctx context.Context, domain, keyAuth string) error
}

// Options configures the issuer. Zero values mean the documented defaults.
type Options struct {
	// Zone is delegated's zone, e.g. "auth.example.org." (challenge
	// subdomains live under it).
	Zone string
	// Directory is the CA's ACME directory URL. Required.
	Directory string
	// Email is the ACME account contact; may be empty.
	Email string
	// CARoots, when set, are the only roots trusted for the CA's HTTPS
	// (a private CA such as Pebble); nil means the system's.
	CARoots *x509.CertPool
	// KeyType is EC256 (default), EC384, RSA2048, RSA3072 or RSA4096.
	KeyType string
	// EABKID and EABHMAC (base64url) bind the account to an external one.
	EABKID, EABHMAC string
	// PreferredChain is the common name of the root the chain should end
	// at, when the CA offers alternates.
	PreferredChain string
	// Resolvers are host:port recursive resolvers for the delegation
	// check. Required (cmd fills the system's by default).
	Resolvers []string
	// ResolverTimeout bounds each query; default 5s.
	ResolverTimeout time.Duration
	// SkipAuthoritative checks through the resolvers only, not also
	// through the customer zone's own name servers.
	SkipAuthoritative bool
	// AuthoritativePort is the customer name servers' port; default "53".
	AuthoritativePort string
	// DeployDir holds live/<name>/. Required.
	DeployDir string
	// DeployHook runs (sh -c) after each issuance; empty means none.
	DeployHook string
	// DelegationRecheck is how often pending delegations are re-checked;
	// default 5m.
	DelegationRecheck time.Duration
	// RetryInterval spaces failed attempts (doubling from the second on);
	// default 15m. RetryAttempts is how many before status failed; default 5.
	RetryInterval time.Duration
	RetryAttempts int
	// RenewBefore, when set, renews no later than this long before expiry,
	// whatever ARI or the lifetime rule say.
	RenewBefore time.Duration
	// InstanceID names this process in the store's leases; default
	// host/pid/random. Instances sharing a database must differ.
	InstanceID string
	// LeaseTTL is how long a certificate's lease outlives a holder that
	// died; default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Issuer is safe for concurrent use. Run must be running for scheduled
// work (re-checks, retries) to happen.
type Issuer struct {
	opts       Options
	store      Store
	solver     Solver
	checker    *checker
	log        *slog.Logger
	httpClient *http.Client

	coreMu   sync.Mutex
	acmeCore *api.Core

	// runCtx outlives API requests: an attempt continues when the client
	// that asked for it disconnects.
	runCtx  context.Context
	stopRun context.CancelFunc
	wake    chan struct{}
	wg      sync.WaitGroup

	leases Leaser

	mu sync.Mutex
	// busy holds the certificates this process works on, each under its
	// lease in the store.
	busy map[string]*hold
	subs map[string]map[int]chan Event
	next int
}

// New builds an issuer. solver places challenge values (providers.Local).
func New(opts Options, st Store, solver Solver) (*Issuer, error) {
	if opts.Directory == "" {
		return nil, errors.New("issuer: no ACME directory configured")
	}
	if opts.Zone == "" {
		return nil, errors.New("issuer: no zone configured")
	}
	opts.Zone = dns.Fqdn(strings.ToLower(opts.Zone))
	kt, err := config.CertKeyType(opts.KeyType)
	if err != nil {
		return nil, fmt.Errorf("issuer: key type: %w", err)
	}
	opts.KeyType = string(kt)
	if len(opts.Resolvers) == 0 {
		return nil, errors.New("issuer: no resolvers for the delegation check")
	}
	if opts.DeployDir == "" {
		return nil, errors.New("issuer: no deploy directory")
	}
	if opts.ResolverTimeout <= 0 {
		opts.ResolverTimeout = 5 * time.Second
	}
	if opts.AuthoritativePort == "" {
		opts.AuthoritativePort = "53"
	}
	if opts.DelegationRecheck <= 0 {
		opts.DelegationRecheck = 5 * time.Minute
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 15 * time.Minute
	}
	if opts.RetryAttempts <= 0 {
		opts.RetryAttempts = 5
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.InstanceID == "" {
		opts.InstanceID = defaultInstanceID()
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if opts.CARoots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: opts.CARoots, MinVersion: tls.VersionTLS12}
	}
	runCtx, stop := context.WithCancel(context.Background())
	return &Issuer{
		opts:   opts,
		store:  st,
		solver: solver,
		checker: &checker{resolvers: opts.Resolvers, timeout: opts.ResolverTimeout,
			authoritative: !opts.SkipAuthoritative, authPort: opts.AuthoritativePort},
		log:        opts.Logger.With("component", "issuer"),
		httpClient: &http.Client{Timeout: 30 * time.Second, Transport: tr},
		runCtx:     runCtx,
		stopRun:    stop,
		wake:       make(chan struct{}, 1),
		leases:     st,
		busy:       map[string]*hold{},
		subs:       map[string]map[int]chan Event{},
	}, nil
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
	Paths   Paths     `json:"paths"`
	// Delegations are the records to create and, after a check, their state.
	Delegations []Delegation `json:"delegations,omitempty"`
}

func (i *Issuer) view(c store.Certificate) Cert {
	v := Cert{
		Name: c.Name, Domains: c.Domains, Status: Status(c.Status), LastError: c.LastError,
		Serial: c.Serial, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		NextAttempt: c.NextAttempt, Attempts: c.Attempts, RenewAt: c.RenewAt, Paths: pathsFor(i.opts.DeployDir, c.Name),
	}
	if !c.NotAfter.IsZero() {
		v.DaysLeft = int(c.NotAfter.Sub(i.opts.Now()).Hours() / 24)
	}
	return v
}

// ErrNotFound is returned (wrapped) for an unknown certificate name.
var ErrNotFound = errors.New("no such certificate")

// ErrInvalid is returned (wrapped) for a request the issuer refuses.
var ErrInvalid = errors.New("invalid request")

// Request is an operator's request for a certificate.
type Request struct {
	Name    string   `json:"name"`
	Domains []string `json:"domains"`
}

// Issue records the request, assigns challenge subdomains, checks the
// delegation and, when it is in place, starts an order in the background.
// It returns the certificate with its delegation records. A certificate
// already active for the same domains is returned unchanged.
func (i *Issuer) Issue(ctx context.Context, req Request) (Cert, error) {
	name, domains, err := normalize(req)
	if err != nil {
		return Cert{}, err
	}
	if err := checkOutsideZone(domains, i.opts.Zone); err != nil {
		return Cert{}, err
	}
	dels, err := i.assign(ctx, domains)
	if err != nil {
		return Cert{}, err
	}
	if !i.claim(name) {
		// An attempt is in flight: for the same domains the caller may
		// follow it; a change must wait until it ends.
		c, err := i.store.CertificateByName(ctx, name)
		if err != nil || !slices.Equal(c.Domains, domains) {
			return Cert{}, errBusy(name)
		}
		v := i.view(c)
		v.Delegations = dels
		return v, nil
	}
	launched := false
	defer func() {
		if !launched {
			i.release(name)
		}
	}()
	c, err := i.store.CertificateByName(ctx, name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c = store.Certificate{Name: name, Domains: domains}
	case err != nil:
		return Cert{}, err
	case slices.Equal(c.Domains, domains) && Status(c.Status) == StatusActive:
		v := i.view(c)
		v.Delegations = dels
		return v, nil
	}
	// A changed domain list keeps the old material (still deployed) until
	// the new certificate exists.
	c.Domains = domains
	c.Attempts = 0
	c.NextAttempt = time.Time{}
	i.checkDelegations(ctx, dels)
	if err := i.applyDelegation(ctx, &c, dels); err != nil {
		return Cert{}, err
	}
	launched = i.proceed(c)
	v := i.view(c)
	v.Delegations = dels
	return v, nil
}

// applyDelegation sets status from a delegation check and saves c.
func (i *Issuer) applyDelegation(ctx context.Context, c *store.Certificate, dels []Delegation) error {
	derr := delegationError(dels)
	if derr != nil {
		c.Status = string(StatusPendingDelegation)
		c.LastError = derr.Error()
		i.log.Info("certificate pending delegation", "cert", c.Name, "status", StatusPendingDelegation, "reason", derr.Error())
	} else {
		c.Status = string(StatusProcessing)
		c.LastError = ""
	}
	if err := i.store.SaveCertificate(ctx, *c); err != nil {
		return err
	}
	st := Status(c.Status)
	i.publish(c.Name, Event{Step: StepDelegation, OK: derr == nil, Detail: delegationSummary(dels), Error: errString(derr)})
	if derr != nil {
		i.publish(c.Name, Event{Step: StepDone, Status: st, Error: derr.Error()})
	}
	return nil
}

func delegationSummary(dels []Delegation) string {
	var parts []string
	for _, d := range dels {
		if d.OK {
			parts = append(parts, d.Name)
		} else {
			parts = append(parts, d.Explain())
		}
	}
	return strings.Join(parts, "; ")
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func delegationError(dels []Delegation) error {
	for _, d := range dels {
		if !d.OK {
			return &DelegationError{Delegations: dels}
		}
	}
	return nil
}

// normalize lower-cases, de-duplicates and validates the request (the
// rules are in names.go).
func normalize(req Request) (string, []string, error) {
	name := strings.TrimSpace(req.Name)
	if err := checkCertName(name); err != nil {
		return "", nil, err
	}
	if len(req.Domains) == 0 {
		return "", nil, fmt.Errorf("%w: no domains", ErrInvalid)
	}
	var out []string
	for _, d := range req.Domains {
		d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
		if err := checkDomain(d); err != nil {
			return "", nil, err
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return name, out, nil
}

// assign returns the delegation records for domains, creating a challenge
// account (random, unusable credentials; a uuid subdomain) for each base
// name that has none yet, so the name exists in our zone.
func (i *Issuer) assign(ctx context.Context, domains []string) ([]Delegation, error) {
	var dels []Delegation
	seen := map[string]bool{}
	for _, d := range domains {
		base := providers.BaseName(d)
		if seen[base] {
			continue
		}
		seen[base] = true
		if i.isSelf(base) {
			d, err := i.selfDelegation(ctx, base)
			if err != nil {
				return nil, err
			}
			dels = append(dels, d)
			continue
		}
		n, err := i.store.ChallengeNameByBase(ctx, base)
		if errors.Is(err, store.ErrNotFound) {
			n, err = i.createChallengeName(ctx, base)
		}
		if err != nil {
			return nil, err
		}
		dels = append(dels, Delegation{
			BaseName: base,
			Name:     "_acme-challenge." + base + ".",
			Target:   n.Subdomain + "." + i.opts.Zone,
		})
	}
	return dels, nil
}

func (i *Issuer) createChallengeName(ctx context.Context, base string) (store.ChallengeName, error) {
	return i.createChallengeNameWith(ctx, base, uuid.NewString())
}

func (i *Issuer) createChallengeNameWith(ctx context.Context, base, subdomain string) (store.ChallengeName, error) {
	// Nobody ever uses this account's key: the issuer writes values
	// directly. A random one keeps the account unusable through the API.
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return store.ChallengeName{}, fmt.Errorf("issuer: random: %w", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(fmt.Sprintf("%x", secret)), bcrypt.MinCost)
	if err != nil {
		return store.ChallengeName{}, fmt.Errorf("issuer: hash: %w", err)
	}
	acct := store.Account{Username: uuid.NewString(), KeyHash: string(hash), Subdomain: subdomain}
	if err := i.store.CreateAccount(ctx, acct); err != nil {
		if errors.Is(err, store.ErrConflict) && subdomain == selfLabel {
			// A fixed subdomain: a concurrent request created it first.
			return i.store.ChallengeNameByBase(ctx, base)
		}
		return store.ChallengeName{}, err
	}
	n := store.ChallengeName{BaseName: base, Subdomain: acct.Subdomain, Username: acct.Username}
	if err := i.store.AddChallengeName(ctx, n); err != nil {
		if errors.Is(err, store.ErrConflict) {
			// A concurrent request assigned it first: use theirs.
			return i.store.ChallengeNameByBase(ctx, base)
		}
		return store.ChallengeName{}, err
	}
	i.log.Info("challenge subdomain assigned", "base_name", base, "subdomain", acct.Subdomain)
	return n, nil
}

// checkDelegations resolves each record concurrently.
func (i *Issuer) checkDelegations(ctx context.Context, dels []Delegation) {
	var wg sync.WaitGroup
	for k := range dels {
		if selfAnswered(dels[k]) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			i.checker.check(ctx, &dels[k])
		}()
	}
	wg.Wait()
}

// Delegation returns the records to create for a certificate (or all
// certificates when name is empty) with a fresh check of each. A pending
// certificate whose delegation is now in place starts its order.
func (i *Issuer) Delegation(ctx context.Context, name string) ([]Cert, error) {
	var certs []store.Certificate
	if name != "" {
		c, err := i.store.CertificateByName(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		if err != nil {
			return nil, err
		}
		certs = []store.Certificate{c}
	} else {
		var err error
		if certs, err = i.store.Certificates(ctx); err != nil {
			return nil, err
		}
	}
	out := make([]Cert, 0, len(certs))
	for _, c := range certs {
		dels, err := i.recheck(ctx, c)
		if err != nil {
			return nil, err
		}
		c, err = i.store.CertificateByName(ctx, c.Name)
		if err != nil {
			return nil, err
		}
		v := i.view(c)
		v.Delegations = dels
		out = append(out, v)
	}
	return out, nil
}

// recheck checks c's delegation and, when c was pending and is now
// delegated, moves it to processing and starts the order.
func (i *Issuer) recheck(ctx context.Context, c store.Certificate) ([]Delegation, error) {
	dels, err := i.assign(ctx, c.Domains)
	if err != nil {
		return nil, err
	}
	i.checkDelegations(ctx, dels)
	if Status(c.Status) != StatusPendingDelegation || !i.claim(c.Name) {
		return dels, nil
	}
	launched := false
	defer func() {
		if !launched {
			i.release(c.Name)
		}
	}()
	// Re-read under the claim: the row may have changed meanwhile.
	if c, err = i.store.CertificateByName(ctx, c.Name); err != nil || Status(c.Status) != StatusPendingDelegation {
		return dels, err
	}
	if err := i.applyDelegation(ctx, &c, dels); err != nil {
		return nil, err
	}
	if Status(c.Status) == StatusProcessing {
		i.log.Info("delegation in place", "cert", c.Name)
	}
	launched = i.proceed(c)
	return dels, nil
}

// Certificates lists every certificate.
func (i *Issuer) Certificates(ctx context.Context) ([]Cert, error) {
	certs, err := i.store.Certificates(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Cert, 0, len(certs))
	for _, c := range certs {
		out = append(out, i.view(c))
	}
	return out, nil
}

// Certificate returns one certificate.
func (i *Issuer) Certificate(ctx context.Context, name string) (Cert, error) {
	c, err := i.store.CertificateByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return Cert{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Cert{}, err
	}
	return i.view(c), nil
}

// Subscribe delivers name's progress events until cancel is called. The
// channel is buffered; a subscriber that does not keep up misses progress
// events rather than stalling an order, but never the final StepDone (the
// issuer waits up to a second for room), which its waiting client needs.
func (i *Issuer) Subscribe(name string) (<-chan Event, func()) {
	ch := make(chan Event, 256)
	i.mu.Lock()
	id := i.next
	i.next++
	if i.subs[name] == nil {
		i.subs[name] = map[int]chan Event{}
	}
	i.subs[name][id] = ch
	i.mu.Unlock()
	return ch, func() {
		i.mu.Lock()
		delete(i.subs[name], id)
		if len(i.subs[name]) == 0 {
			delete(i.subs, name)
		}
		i.mu.Unlock()
	}
}

func (i *Issuer) publish(name string, ev Event) {
	ev.Cert = name
	// Send outside the lock: waiting for room must not stall claims.
	// Channels are never closed, so a subscriber cancelling meanwhile is
	// harmless.
	i.mu.Lock()
	chans := make([]chan Event, 0, len(i.subs[name]))
	for _, ch := range i.subs[name] {
		chans = append(chans, ch)
	}
	i.mu.Unlock()
	for _, ch := range chans {
		select {
		case ch <- ev:
			continue
		default:
		}
		if ev.Step == StepDone {
			t := time.NewTimer(time.Second)
			select {
			case ch <- ev:
			case <-t.C:
			}
			t.Stop()
		}
	}
}

// start runs an attempt on name in the background unless one is running.
func (i *Issuer) start(name string) { i.background(name, i.attempt) }

// background runs fn for name unless work on name is running.
func (i *Issuer) background(name string, fn func(ctx context.Context, name string)) {
	if i.claim(name) {
		i.launch(name, fn)
	}
}

// claim marks name busy and takes its lease in the store; false when this
// or another instance works on it already (or the issuer stops). Every
// change to a certificate's row happens under its claim, so one
// certificate never has two things in flight, across all instances on one
// database, and no save overwrites another's newer one. Callers re-read
// the certificate after claiming: another instance may have changed it.
func (i *Issuer) claim(name string) bool {
	i.mu.Lock()
	if i.busy[name] != nil || i.runCtx.Err() != nil {
		i.mu.Unlock()
		return false
	}
	// Reserved locally first, so the lease is asked for once per process.
	i.busy[name] = &hold{}
	i.mu.Unlock()
	h, ok := i.acquire(name)
	i.mu.Lock()
	defer i.mu.Unlock()
	if !ok {
		delete(i.busy, name)
		return false
	}
	i.busy[name] = h
	return true
}

func (i *Issuer) release(name string) {
	i.mu.Lock()
	h := i.busy[name]
	i.mu.Unlock()
	if h != nil && h.done != nil {
		i.give(name, h)
	}
	i.mu.Lock()
	delete(i.busy, name)
	i.mu.Unlock()
}

// launch runs fn for the claimed name in the background and releases the
// claim when fn returns.
func (i *Issuer) launch(name string, fn func(ctx context.Context, name string)) {
	i.mu.Lock()
	if i.runCtx.Err() != nil {
		i.mu.Unlock()
		i.release(name)
		return
	}
	i.wg.Add(1)
	h := i.busy[name]
	i.mu.Unlock()
	go func() {
		defer i.wg.Done()
		defer i.release(name)
		fn(h.ctx, name)
	}()
}

// proceed hands the claim on c to an attempt when c is processing and
// reports whether it did; the caller releases the claim otherwise.
func (i *Issuer) proceed(c store.Certificate) bool {
	if Status(c.Status) != StatusProcessing {
		return false
	}
	i.launch(c.Name, i.attempt)
	return true
}

func errBusy(name string) error {
	return fmt.Errorf("%w: %s: an order is in flight; try again when it ends", ErrInvalid, name)
}

// attempt runs one order for name and records the outcome.
func (i *Issuer) attempt(ctx context.Context, name string) {
	c, err := i.store.CertificateByName(ctx, name)
	if err != nil {
		i.log.Error("attempt: load certificate", "cert", name, "err", err)
		return
	}
	if !due(c, i.opts.Now()) {
		// Another instance finished (or rescheduled) it between our look
		// at the list and taking the lease.
		return
	}
	emit := func(ev Event) { i.publish(name, ev) }
	started := i.opts.Now()
	renewed := c.CertPEM != ""
	log := i.log.With("cert", name)
	log.Info("order starting", "domains", c.Domains, "status", StatusProcessing)
	save := func(f inFlight) error {
		c.OrderURL, c.OrderKeyPEM = f.orderURL, f.keyPEM
		return i.saveHolding(ctx, c)
	}
	res, err := i.obtain(ctx, c.Domains, inFlight{orderURL: c.OrderURL, keyPEM: c.OrderKeyPEM}, replacesID(c.CertPEM, c.Domains), save, emit)
	// Whatever happens next, this order is over unless a shutdown
	// interrupted it.
	if err == nil || ctx.Err() == nil {
		c.OrderURL, c.OrderKeyPEM = "", ""
	}
	if err != nil && ctx.Err() != nil && i.runCtx.Err() == nil {
		// The lease is lost: another instance may be working on the
		// certificate now, so this one writes nothing more.
		log.Error("order abandoned: certificate lease lost", "status", StatusProcessing, "err", err)
		return
	}
	if err != nil && ctx.Err() != nil {
		// Shutting down is not a failed attempt: the certificate stays
		// processing with no delay, so the next start resumes at once.
		log.Info("order interrupted by shutdown; will restart", "status", StatusProcessing)
		i.publish(name, Event{Step: StepDone, Status: StatusProcessing, Error: "daemon shutting down; the order restarts when it is back"})
		return
	}
	if err != nil {
		i.fail(ctx, &c, err)
		return
	}
	// The new material is stored first (still processing), so a crash
	// while deploying loses nothing; the status says active only once the
	// files are in place and the hook has run, so whoever sees active
	// finds the files.
	c.CertPEM, c.ChainPEM, c.KeyPEM = res.certPEM, res.chainPEM, res.keyPEM
	c.Serial = serialHex(res.leaf)
	c.NotBefore, c.NotAfter = res.leaf.NotBefore, res.leaf.NotAfter
	c.Attempts, c.NextAttempt = 0, time.Time{}
	c.RenewAt, c.RenewCheckedAt = time.Time{}, time.Time{}
	if err := i.saveHolding(ctx, c); err != nil {
		if errors.Is(err, store.ErrLeaseLost) {
			// Whoever holds the certificate now resumes the recorded
			// order and downloads this same certificate.
			log.Error("issued certificate not recorded here: certificate lease lost", "err", err)
			return
		}
		i.fail(ctx, &c, err)
		return
	}
	c.Status, c.LastError = string(StatusActive), ""
	finish := func() {
		if err := i.store.SaveCertificate(context.WithoutCancel(ctx), c); err != nil {
			log.Error("recording the issued certificate failed", "err", err)
		}
		i.poke() // the scheduler plans the next renewal
		if c.LastError != "" {
			emit(Event{Step: StepDone, Status: StatusActive, Error: c.LastError})
		} else {
			emit(Event{Step: StepDone, OK: true, Status: StatusActive})
		}
	}
	p := pathsFor(i.opts.DeployDir, name)
	if err := deploy(p, c.CertPEM, c.ChainPEM, c.KeyPEM); err != nil {
		emit(Event{Step: StepDeployed, Error: err.Error()})
		c.LastError = err.Error()
		log.Error("deploy failed", "err", err)
		finish()
		return
	}
	emit(Event{Step: StepDeployed, OK: true, Detail: p.Dir})
	log.Info("certificate issued", "status", StatusActive, "serial", c.Serial, "not_after", c.NotAfter, "renewed", renewed, "took", i.opts.Now().Sub(started).Round(time.Millisecond), "dir", p.Dir)
	if i.opts.DeployHook != "" {
		if err := runHook(ctx, i.opts.DeployHook, name, c.Domains, p, renewed); err != nil {
			// The certificate is valid and deployed; the operator must
			// still learn that their server did not reload.
			c.LastError = err.Error()
			log.Error("deploy hook failed", "err", err)
			emit(Event{Step: StepHook, Error: err.Error()})
		} else {
			emit(Event{Step: StepHook, OK: true, Detail: i.opts.DeployHook})
		}
	}
	finish()
}

// fail records a failed attempt: another is scheduled with backoff until
// RetryAttempts are spent, then the status is failed.
func (i *Issuer) fail(ctx context.Context, c *store.Certificate, cause error) {
	if ctx.Err() != nil {
		// Shutdown or a lost lease: not this attempt's outcome to record,
		// and another instance may own the row now.
		i.log.Warn("attempt interrupted", "cert", c.Name, "err", cause)
		return
	}
	c.Attempts++
	c.LastError = cause.Error()
	if c.Attempts >= i.opts.RetryAttempts {
		c.Status = string(StatusFailed)
		c.NextAttempt = time.Time{}
		if c.CertPEM != "" {
			// A renewal must not give up while the current certificate
			// still serves: keep trying, ever more rarely.
			c.NextAttempt = i.opts.Now().Add(RetryDelay(i.opts.RetryInterval, c.Attempts))
		}
		i.log.Error("certificate failed", "cert", c.Name, "status", StatusFailed, "attempts", c.Attempts, "next_attempt", c.NextAttempt, "err", cause)
		if i.opts.DeployHook != "" && c.Attempts == i.opts.RetryAttempts {
			if err := runFailureHook(ctx, i.opts.DeployHook, c.Name, c.Domains, pathsFor(i.opts.DeployDir, c.Name), cause); err != nil {
				i.log.Error("failure hook failed", "cert", c.Name, "err", err)
			}
		}
	} else {
		c.Status = string(StatusProcessing)
		c.NextAttempt = i.opts.Now().Add(RetryDelay(i.opts.RetryInterval, c.Attempts))
		i.log.Warn("attempt failed; will retry", "cert", c.Name, "status", StatusProcessing, "attempts", c.Attempts, "next_attempt", c.NextAttempt, "err", cause)
	}
	if err := i.store.SaveCertificate(context.WithoutCancel(ctx), *c); err != nil {
		i.log.Error("recording failure failed", "cert", c.Name, "err", err)
	}
	i.publish(c.Name, Event{Step: StepDone, Status: Status(c.Status), Error: cause.Error()})
	i.poke()
}

// RetryDelay is the wait after the n-th consecutive failure (n ≥ 1):
// interval, then doubling, capped at a day.
func RetryDelay(interval time.Duration, n int) time.Duration {
	d := interval
	for k := 1; k < n && d < 24*time.Hour; k++ {
		d *= 2
	}
	return min(d, 24*time.Hour)
}

// Retry forces the next attempt on name now (a failed certificate starts
// over with a fresh attempt count; a pending one is re-checked).
func (i *Issuer) Retry(ctx context.Context, name string) (Cert, error) {
	c, err := i.store.CertificateByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return Cert{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Cert{}, err
	}
	if !i.claim(name) {
		// The attempt is running now: the caller may follow it.
		return i.view(c), nil
	}
	launched := false
	defer func() {
		if !launched {
			i.release(name)
		}
	}()
	if c, err = i.store.CertificateByName(ctx, name); err != nil {
		return Cert{}, err
	}
	if Status(c.Status) == StatusActive {
		// Nothing to retry; renew --force replaces an active certificate.
		return i.view(c), nil
	}
	c.Status, c.Attempts, c.NextAttempt = string(StatusPendingDelegation), 0, time.Time{}
	dels, err := i.assign(ctx, c.Domains)
	if err != nil {
		return Cert{}, err
	}
	i.checkDelegations(ctx, dels)
	if err := i.applyDelegation(ctx, &c, dels); err != nil {
		return Cert{}, err
	}
	launched = i.proceed(c)
	v := i.view(c)
	v.Delegations = dels
	return v, nil
}

// RevocationReasons maps the CLI's words to RFC 5280 reason codes.
var revocationReasons = map[string]uint{
	"unspecified": 0, "keycompromise": 1, "affiliationchanged": 3,
	"superseded": 4, "cessationofoperation": 5,
}

// Revoke revokes name's certificate at the CA.
func (i *Issuer) Revoke(ctx context.Context, name, reason string) (Cert, error) {
	code, ok := revocationReasons[strings.ToLower(reason)]
	if reason == "" {
		code, ok = 0, true
	}
	if !ok {
		return Cert{}, fmt.Errorf("%w: reason %q: expected unspecified, keycompromise, superseded, cessationofoperation or affiliationchanged", ErrInvalid, reason)
	}
	if !i.claim(name) {
		return Cert{}, errBusy(name)
	}
	defer i.release(name)
	c, err := i.store.CertificateByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return Cert{}, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Cert{}, err
	}
	if c.CertPEM == "" {
		return Cert{}, fmt.Errorf("%w: %s has no issued certificate to revoke", ErrInvalid, name)
	}
	if err := i.revoke(ctx, c.CertPEM, code); err != nil {
		return Cert{}, err
	}
	c.Status, c.LastError, c.NextAttempt = string(StatusRevoked), "", time.Time{}
	if err := i.store.SaveCertificate(ctx, c); err != nil {
		return Cert{}, err
	}
	i.log.Info("certificate revoked", "cert", name, "status", StatusRevoked, "serial", c.Serial, "reason", reason)
	return i.view(c), nil
}

// Delete removes name's stored material and deployed files, and the
// challenge subdomains of base names no other certificate uses (they stop
// answering; a later request assigns new ones).
func (i *Issuer) Delete(ctx context.Context, name string) error {
	if !i.claim(name) {
		return errBusy(name)
	}
	defer i.release(name)
	c, err := i.store.CertificateByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return err
	}
	if err := i.store.DeleteCertificate(ctx, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return err
	}
	if err := removeDeployed(pathsFor(i.opts.DeployDir, name)); err != nil {
		return err
	}
	if err := i.releaseBaseNames(ctx, c.Domains); err != nil {
		return err
	}
	i.log.Info("certificate deleted", "cert", name)
	return nil
}

// releaseBaseNames deletes the challenge accounts of the base names of
// domains that no remaining certificate uses.
func (i *Issuer) releaseBaseNames(ctx context.Context, domains []string) error {
	certs, err := i.store.Certificates(ctx)
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, c := range certs {
		for _, d := range c.Domains {
			used[providers.BaseName(d)] = true
		}
	}
	for _, d := range domains {
		base := providers.BaseName(d)
		if used[base] {
			continue
		}
		used[base] = true // once
		n, err := i.store.ChallengeNameByBase(ctx, base)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := i.store.DeleteChallengeName(ctx, base); err != nil {
			return err
		}
		if err := i.store.DeleteAccount(ctx, n.Username); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		i.log.Info("challenge subdomain released", "base_name", base, "subdomain", n.Subdomain)
	}
	return nil
}

func (i *Issuer) poke() {
	select {
	case i.wake <- struct{}{}:
	default:
	}
}

// Run re-checks pending delegations every DelegationRecheck and starts
// retries when due, until ctx ends; then it waits for running attempts.
func (i *Issuer) Run(ctx context.Context) {
	defer i.wg.Wait()
	defer func() {
		// Under mu, so no attempt is launched once Wait may run.
		i.mu.Lock()
		i.stopRun()
		i.mu.Unlock()
	}()
	lastRecheck := time.Time{}
	for {
		now := i.opts.Now()
		certs, err := i.store.Certificates(ctx)
		if err != nil && ctx.Err() == nil {
			i.log.Error("scheduler: list certificates", "err", err)
		}
		// In a random order, so instances on one database that wake
		// together for due work take different certificates first and
		// the work spreads across them.
		shuffle(certs)
		recheck := now.Sub(lastRecheck) >= i.opts.DelegationRecheck
		wait := i.opts.DelegationRecheck - now.Sub(lastRecheck)
		if recheck {
			lastRecheck, wait = now, i.opts.DelegationRecheck
		}
		for _, c := range certs {
			switch Status(c.Status) {
			case StatusPendingDelegation:
				if recheck {
					if _, err := i.recheck(ctx, c); err != nil && ctx.Err() == nil {
						i.log.Warn("delegation re-check failed", "cert", c.Name, "err", err)
					}
				}
			case StatusProcessing:
				if !c.NextAttempt.After(now) {
					i.start(c.Name)
					// Look again soon: the attempt may run in an
					// instance that dies, leaving its lease to expire.
					wait = min(wait, i.leasePoll())
				} else {
					wait = min(wait, c.NextAttempt.Sub(now))
				}
			case StatusFailed:
				// Only failed renewals have a next attempt.
				if !c.NextAttempt.IsZero() {
					if !c.NextAttempt.After(now) {
						i.start(c.Name)
						wait = min(wait, i.leasePoll())
					} else {
						wait = min(wait, c.NextAttempt.Sub(now))
					}
				}
			case StatusActive:
				if c.CertPEM == "" {
					break
				}
				if c.RenewAt.IsZero() || now.Sub(c.RenewCheckedAt) >= ariRecheck {
					i.background(c.Name, i.schedule)
					wait = min(wait, i.leasePoll())
					continue
				}
				if !c.RenewAt.After(now) {
					if _, _, err := i.Renew(ctx, c.Name, false); err != nil && ctx.Err() == nil {
						i.log.Warn("starting renewal failed", "cert", c.Name, "err", err)
					}
					wait = min(wait, i.leasePoll())
					continue
				}
				wait = min(wait, c.RenewAt.Sub(now), c.RenewCheckedAt.Add(ariRecheck).Sub(now))
			}
		}
		t := time.NewTimer(max(wait, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-i.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// schedule chooses (or, a day later, re-confirms with the CA) the renewal
// moment of an active certificate and records it, so a restart keeps the
// moment instead of firing every renewal at once.
func (i *Issuer) schedule(ctx context.Context, name string) {
	c, err := i.store.CertificateByName(ctx, name)
	if err != nil || Status(c.Status) != StatusActive || c.CertPEM == "" {
		return
	}
	now := i.opts.Now()
	plan, err := i.planRenewal(ctx, c)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		// The CA's renewal information is unavailable: keep the previous
		// moment if there is one, else fall back to the lifetime rule,
		// and ask again in an hour.
		i.log.Warn("renewal information unavailable", "cert", name, "err", err)
		if plan, err = i.planByLifetime(c); err != nil {
			i.log.Error("planning renewal failed", "cert", name, "err", err)
			return
		}
		if !c.RenewAt.IsZero() {
			plan.at, plan.source = c.RenewAt, "previous"
		}
		now = now.Add(time.Hour - ariRecheck)
	}
	c.RenewAt, c.RenewCheckedAt = plan.at, now
	if err := i.store.SaveCertificate(ctx, c); err != nil {
		i.log.Error("recording renewal plan failed", "cert", name, "err", err)
		return
	}
	attrs := []any{"cert", name, "source", plan.source, "renew_at", plan.at.UTC().Format(time.RFC3339), "not_after", c.NotAfter.UTC().Format(time.RFC3339)}
	if plan.window != nil {
		attrs = append(attrs, "ari_window_start", plan.window.Start.UTC().Format(time.RFC3339), "ari_window_end", plan.window.End.UTC().Format(time.RFC3339))
	}
	i.log.Info("renewal scheduled", attrs...)
	i.poke()
}
