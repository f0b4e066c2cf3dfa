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
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/bcrypt"

	"github.com/delegated/delegated/providers"
	"github.com/delegated/delegated/store"
)

// Store is what the issuer needs from persistence.
type Store interface {
	providers.LocalStore
	SaveCertificateFenced(ctx context.Context, c store.Certificate, f store.Fence) error
	CertificateByName(ctx context.Context, name string) (store.Certificate, error)
	CertificateSummaries(ctx context.Context, f store.CertificateFilter) ([]store.Certificate, error)
	DueCertificates(ctx context.Context, now time.Time, status string, limit int) ([]store.Due, error)
	NextActionAfter(ctx context.Context, t time.Time) (time.Time, error)
	OldestDue(ctx context.Context, now time.Time) (time.Time, error)
	CertificateCounts(ctx context.Context) (map[string]int, error)
	RecordChecks(ctx context.Context, results []store.CheckResult, pendingStatus string) (int, error)
	ReserveChallengeNames(ctx context.Context, reserve []store.ChallengeAccount) error
	CreateCertificates(ctx context.Context, reserve []store.ChallengeAccount, certs []store.Certificate) error
	DeleteCertificateReleasing(ctx context.Context, name string, f store.Fence, bases []string) ([]store.ChallengeName, error)
	caStateStore
	ACMEAccountFor(ctx context.Context, directory, email string) (store.ACMEAccount, error)
	SaveACMEAccount(ctx context.Context, a store.ACMEAccount) error
	Leaser
	persistStore
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
	// CAs are the certificate authorities in order of preference (see
	// CA). Empty means one CA named "default" from the single-CA fields
	// below (Directory, Email, CARoots, KeyType, EAB*, PreferredChain).
	CAs []CA
	// CABackoff is how long a CA that failed on its side is skipped,
	// doubling with each further failure up to an hour; a rate limit's
	// Retry-After overrides it. Default 5m.
	CABackoff time.Duration
	// Directory is the CA's ACME directory URL (single-CA form).
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
	// Challenge is the validation method of requests that name none:
	// dns-01 (default), dns-account-01 or dns-persist-01 (challenges.go).
	Challenge string
	// Profile is the ACME profile of requests that name none; "" lets the
	// CA choose (profile.go).
	Profile string
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
	// store.NewInstanceID(). Instances sharing a database must differ; cmd
	// passes the store's own, so one process has one name.
	InstanceID string
	// LeaseTTL is how long a certificate's lease outlives a holder that
	// died; default DefaultLeaseTTL.
	LeaseTTL time.Duration
	// CheckWorkers bounds concurrent delegation checks; default 32. A
	// customer whose servers never answer holds one of them for at most
	// a query timeout per server asked.
	CheckWorkers int
	// MaxConcurrentOrders bounds concurrent ACME orders; default 8.
	MaxConcurrentOrders int
	// OrdersPerHour paces new attempts at the CA; default 90 (Let's
	// Encrypt allows 300 new orders per account per 3 hours).
	OrdersPerHour int
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// Issuer is safe for concurrent use. Run must be running for scheduled
// work (re-checks, retries) to happen.
type Issuer struct {
	opts    Options
	store   Store
	solver  Solver
	checker *checker
	log     *slog.Logger
	// cas are the CAs in order of preference.
	cas []*caClient

	// runCtx outlives API requests: an attempt continues when the client
	// that asked for it disconnects.
	runCtx  context.Context
	stopRun context.CancelFunc
	wake    chan struct{}
	wg      sync.WaitGroup

	leases Leaser

	// checks, orders and plans are the bounded pools of background work:
	// delegation re-checks, ACME attempts, and renewal planning (ARI).
	checks, orders, plans *workQueue
	poolsStarted          bool
	// pacer spaces attempts at the CA and holds them while the CA's rate
	// limit pauses the account.
	pacer *pacer
	// results batches the outcomes of re-checks that leave certificates
	// pending, so thousands of checks cost a few commits.
	results chan store.CheckResult
	// noKeyHash is the bcrypt hash of a random secret nobody knows, the
	// key of every challenge account: they are never used through the
	// API, and one hash per process keeps bulk onboarding fast.
	noKeyHash string

	mu sync.Mutex
	// busy holds the certificates this process works on, each under its
	// lease in the store.
	busy map[string]*hold
	// flushing holds certificates whose check result waits to be written.
	flushing map[string]bool
	subs     map[string]map[int]chan Event
	next     int
}

// New builds an issuer. solver places challenge values (providers.Local).
func New(opts Options, st Store, solver Solver) (*Issuer, error) {
	if opts.Zone == "" {
		return nil, errors.New("issuer: no zone configured")
	}
	opts.Zone = dns.Fqdn(strings.ToLower(opts.Zone))
	cas, err := newCAClients(&opts)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	if opts.Challenge, err = ParseChallenge(opts.Challenge); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	opts.Profile = strings.TrimSpace(opts.Profile)
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
		opts.InstanceID = store.NewInstanceID()
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CheckWorkers <= 0 {
		opts.CheckWorkers = 32
	}
	if opts.MaxConcurrentOrders <= 0 {
		opts.MaxConcurrentOrders = 8
	}
	if opts.OrdersPerHour <= 0 {
		opts.OrdersPerHour = DefaultOrdersPerHour
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("issuer: random: %w", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(fmt.Sprintf("%x", secret)), bcrypt.MinCost)
	if err != nil {
		return nil, fmt.Errorf("issuer: hash: %w", err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	i := &Issuer{
		opts:   opts,
		store:  st,
		solver: solver,
		checker: &checker{resolvers: opts.Resolvers, timeout: opts.ResolverTimeout,
			authoritative: !opts.SkipAuthoritative, authPort: opts.AuthoritativePort},
		log:       opts.Logger.With("component", "issuer"),
		cas:       cas,
		runCtx:    runCtx,
		stopRun:   stop,
		wake:      make(chan struct{}, 1),
		leases:    st,
		busy:      map[string]*hold{},
		flushing:  map[string]bool{},
		subs:      map[string]map[int]chan Event{},
		pacer:     newPacer(opts.OrdersPerHour, opts.MaxConcurrentOrders, opts.Now),
		results:   make(chan store.CheckResult, 4096),
		noKeyHash: string(hash),
	}
	i.checks = newWorkQueue("checks", opts.CheckWorkers, 16*opts.CheckWorkers, i.recheckDue)
	i.orders = newWorkQueue("orders", opts.MaxConcurrentOrders, 4*opts.MaxConcurrentOrders, i.orderDue)
	i.plans = newWorkQueue("plans", 4, 256, i.planDue)
	return i, nil
}

// DefaultOrdersPerHour is the default pace of attempts: below Let's
// Encrypt's 300 new orders per account per 3 hours, leaving room for an
// operator's own.
const DefaultOrdersPerHour = 90
