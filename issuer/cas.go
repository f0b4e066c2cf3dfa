package issuer

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/acme/api"
	"github.com/go-acme/lego/v4/certcrypto"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/operator"
	"github.com/delegated/delegated/store"
)

// CA is one certificate authority the issuer may order from.
type CA struct {
	// Name identifies the CA (issue --ca, the store, logs, metrics).
	Name string
	// Directory is the CA's ACME directory URL. Required.
	Directory string
	// Email is the ACME account contact; may be empty.
	Email string
	// CARoots, when set, are the only roots trusted for the CA's HTTPS;
	// nil means the system's.
	CARoots *x509.CertPool
	// EABKID and EABHMAC (base64url) bind the account to an external one.
	EABKID, EABHMAC string
	// PreferredChain is the common name of the root the chain should end
	// at, when the CA offers alternates.
	PreferredChain string
	// Profile is the ACME profile asked for when the certificate names
	// none; empty means the CA's default.
	Profile string
	// KeyType of certificate keys from this CA: EC256 (default), EC384,
	// RSA2048, RSA3072 or RSA4096.
	KeyType string
	// CAAIdentities are the issuer domain names CAA records name this CA
	// by; empty means the directory's meta.caaIdentities.
	CAAIdentities []string
}

// caClient is a CA with its HTTP client, ACME client and counters.
type caClient struct {
	CA
	keyType    certcrypto.KeyType
	httpClient *http.Client

	coreMu   sync.Mutex
	acmeCore *api.Core
	// acmeAccount is the account URL of acmeCore (dns-account-01 labels,
	// dns-persist-01 records).
	acmeAccount string
	// tap lets the issuer read ACME fields lego drops (tap.go).
	tap *bodyTap

	stats caStats
}

// caStateStore is the CA state every instance on one database shares.
type caStateStore interface {
	CAStates(ctx context.Context) ([]store.CAState, error)
	SaveCAState(ctx context.Context, st store.CAState) error
	PauseCA(ctx context.Context, st store.CAState, now time.Time) (started bool, err error)
}

// Progress steps of the CA choice.
const (
	// StepCA reports which CA an order goes to, and why a CA is skipped
	// or left for the next one.
	StepCA Step = "ca"
	// StepCAA reports the customer's CAA records when they decide.
	StepCAA Step = "caa"
)

// newCAClients builds the CAs of opts (the single-CA fields when CAs is
// empty) and applies the defaults of the CA settings.
func newCAClients(opts *Options) ([]*caClient, error) {
	if opts.CABackoff <= 0 {
		opts.CABackoff = 5 * time.Minute
	}
	cas := opts.CAs
	if len(cas) == 0 {
		cas = []CA{{
			Name: "default", Directory: opts.Directory, Email: opts.Email, CARoots: opts.CARoots,
			EABKID: opts.EABKID, EABHMAC: opts.EABHMAC, PreferredChain: opts.PreferredChain, KeyType: opts.KeyType,
		}}
	}
	var out []*caClient
	for _, ca := range cas {
		if ca.Name == "" {
			return nil, errors.New("a CA has no name")
		}
		if ca.Directory == "" {
			return nil, fmt.Errorf("CA %s: no ACME directory configured", ca.Name)
		}
		if slices.ContainsFunc(out, func(c *caClient) bool { return c.Name == ca.Name }) {
			return nil, fmt.Errorf("two CAs are named %s", ca.Name)
		}
		kt, err := config.CertKeyType(ca.KeyType)
		if err != nil {
			return nil, fmt.Errorf("CA %s: %w", ca.Name, err)
		}
		ca.KeyType = string(kt)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if ca.CARoots != nil {
			tr.TLSClientConfig = &tls.Config{RootCAs: ca.CARoots, MinVersion: tls.VersionTLS12}
		}
		tap := newBodyTap(tr)
		out = append(out, &caClient{CA: ca, keyType: kt, tap: tap, httpClient: &http.Client{Timeout: 30 * time.Second, Transport: tap}})
	}
	return out, nil
}

// caNamed returns the CA called name, or nil.
func (i *Issuer) caNamed(name string) *caClient {
	for _, ca := range i.cas {
		if ca.Name == name {
			return ca
		}
	}
	return nil
}

// caOf is the CA that issued c's current material: ARI, revocation and
// "replaces" go there. Material from before several CAs existed (no CA
// recorded), or from a CA no longer configured, is attributed to the
// first CA.
func (i *Issuer) caOf(c store.Certificate) *caClient {
	if ca := i.caNamed(c.CA); ca != nil {
		return ca
	}
	if c.CA != "" {
		i.log.Warn("certificate issued by a CA no longer configured; using the first CA for it", "cert", c.Name, "ca", c.CA, "using", i.cas[0].Name)
	}
	return i.cas[0]
}

// checkPin refuses a pin to a CA that is not configured.
func (i *Issuer) checkPin(name string) error {
	if name == "" || i.caNamed(name) != nil {
		return nil
	}
	names := make([]string, len(i.cas))
	for k, ca := range i.cas {
		names[k] = ca.Name
	}
	return fmt.Errorf("%w: no CA named %q; configured: %s", ErrInvalid, name, strings.Join(names, ", "))
}

// needsOtherCA reports whether pinning c to pin calls for a new
// certificate: the current one comes from another CA.
func (i *Issuer) needsOtherCA(c store.Certificate, pin string) bool {
	return pin != "" && c.CertPEM != "" && i.caOf(c).Name != pin
}

// PausedError: every CA the certificate may use is rate-limited (or
// forbidden by CAA). The attempt waits until Until, the first Retry-After
// to pass, without counting as failed: nothing about the certificate
// failed.
type PausedError struct {
	Until   time.Time
	Reasons []string
}

func (e *PausedError) Error() string {
	return fmt.Sprintf("every CA this certificate may use is rate-limited; next attempt at %s: %s", e.Until.UTC().Format(time.RFC3339), strings.Join(e.Reasons, "; "))
}

// obtainAny runs the attempt's order at the first CA that can take it:
// the CAs in order of preference (only the pinned one when c is pinned;
// the CA of an interrupted order first, so it resumes).
//
// A CA the customer's CAA records forbid is skipped, and so is a paused
// one. A failure on the CA's side (unreachable, 5xx after the in-attempt
// retries, rate limited, a badNonce storm) pauses that CA for every
// certificate and moves on to the next CA within this attempt. A verdict
// about the request (rejectedIdentifier, caa, a failed validation) ends
// the attempt: it would fail everywhere and spend the other CAs' limits.
//
// A CA paused because it was down is still asked when no other CA could
// issue: its back-off is a guess, and an attempt runs on its own retry
// schedule. A rate limit is the CA's word: when every CA the certificate
// may use is rate-limited, the result is a *PausedError and the attempt
// waits for the first Retry-After to pass without counting as failed.
func (i *Issuer) obtainAny(ctx context.Context, c *store.Certificate, save func(inFlight) error, emit func(Event)) (*issued, error) {
	if c.OrderURL != "" && c.OrderCA == "" {
		// An order recorded before several CAs existed went to the only
		// CA there was.
		c.OrderCA = i.cas[0].Name
	}
	cands := i.cas
	if c.CAPin != "" {
		ca := i.caNamed(c.CAPin)
		if ca == nil {
			return nil, fmt.Errorf("certificate pinned to CA %q, which is not configured; issue it again with --ca NAME or without --ca", c.CAPin)
		}
		cands = []*caClient{ca}
	} else if methodOf(*c) == ChallengeDNSAccount01 {
		// The customer's records name the first CA's account: no other
		// CA could validate them (recordsCA).
		cands = cands[:1]
	} else if c.OrderURL != "" {
		if k := slices.IndexFunc(cands, func(ca *caClient) bool { return ca.Name == c.OrderCA }); k > 0 {
			cands = append([]*caClient{cands[k]}, slices.Delete(slices.Clone(cands), k, k+1)...)
		}
	}
	states := i.loadCAStates(ctx)
	var (
		caa      *caaPolicy
		limited  *PausedError // rate-limited CAs: skipped, or limited now
		down     []*caClient  // CAs skipped because they were down
		failures []string     // CAs that failed on their side now
		refusals []string     // CAs the CAA records forbid
	)
	// try orders from ca; it returns the certificate, or a verdict that
	// ends the attempt, or nil, nil when the attempt goes on elsewhere.
	try := func(ca *caClient) (*issued, error) {
		if caa == nil {
			caa = i.lookupCAA(ctx, c.Domains)
			if len(caa.unknown) > 0 && ctx.Err() == nil {
				i.log.Info("CAA records unreadable; no CA skipped for CAA", "cert", c.Name, "problems", caa.unknown)
			}
		}
		// Without the directory (the CA is unreachable) its identities
		// are unknown: that is the CA's failure, handled below.
		ids, err := i.caaIdentities(ctx, ca)
		if why := caa.forbids(c.Domains, ids); err == nil && why != "" {
			ca.stats.skip("caa")
			msg := fmt.Sprintf("%s skipped: %s", ca.Name, why)
			emit(Event{Step: StepCAA, Error: msg})
			i.log.Info("CA skipped: CAA forbids it", "cert", c.Name, "ca", ca.Name, "reason", why)
			refusals = append(refusals, msg)
			return nil, nil
		}
		ca.stats.attempt()
		if err == nil {
			emit(Event{Step: StepCA, OK: true, Detail: "ordering from " + ca.Name})
			var res *issued
			res, err = i.obtainAt(ctx, ca, c, save, emit)
			if err == nil {
				i.caSucceeded(ctx, ca, states[ca.Name])
				return res, nil
			}
		}
		if ctx.Err() != nil {
			return nil, err
		}
		f := classify(err, i.opts.Now())
		ca.stats.fail(f.kind)
		if !f.caSide {
			return nil, fmt.Errorf("%s: %w", ca.Name, err)
		}
		// The CA's own failure: pause it for everyone; this attempt goes
		// on at the next CA with a fresh order.
		c.OrderURL, c.OrderKeyPEM, c.OrderCA = "", "", ""
		until := i.caFailed(ctx, ca, states[ca.Name], f, err)
		msg := fmt.Sprintf("%s failed on its side (%s), paused until %s: %v", ca.Name, f.kind, until.UTC().Format(time.RFC3339), err)
		emit(Event{Step: StepCA, Error: msg})
		if f.kind == kindRateLimited {
			limited = limited.add(until, msg)
		} else {
			failures = append(failures, msg)
		}
		return nil, nil
	}
	for _, ca := range cands {
		if st, ok := states[ca.Name]; ok && st.PausedUntil.After(i.opts.Now()) {
			why := fmt.Sprintf("%s paused until %s (%s: %s)", ca.Name, st.PausedUntil.UTC().Format(time.RFC3339), st.Kind, st.LastError)
			ca.stats.skip("paused")
			emit(Event{Step: StepCA, Error: "skipped: " + why})
			i.log.Info("CA skipped: paused", "cert", c.Name, "ca", ca.Name, "paused_until", st.PausedUntil, "kind", st.Kind)
			if st.Kind == kindRateLimited {
				limited = limited.add(st.PausedUntil, why)
			} else {
				down = append(down, ca)
			}
			continue
		}
		if res, err := try(ca); res != nil || err != nil {
			return res, err
		}
	}
	for _, ca := range down {
		emit(Event{Step: StepCA, Detail: "no other CA could issue; asking " + ca.Name + " despite its pause"})
		if res, err := try(ca); res != nil || err != nil {
			return res, err
		}
	}
	switch {
	case len(failures) > 0:
		return nil, fmt.Errorf("no CA could issue: %s", strings.Join(slices.Concat(failures, limited.reasons(), refusals), "; "))
	case limited != nil:
		limited.Reasons = append(limited.Reasons, refusals...)
		return nil, limited
	default:
		return nil, fmt.Errorf("no CA may issue for these names: %s", strings.Join(refusals, "; "))
	}
}

// obtainAt runs one order for c at ca. An ARI replacement names a
// certificate of the same CA; another CA cannot know it. When the CA no
// longer knows the account (a reset, a new environment), the same key is
// registered again and the order placed once more.
func (i *Issuer) obtainAt(ctx context.Context, ca *caClient, c *store.Certificate, save func(inFlight) error, emit func(Event)) (*issued, error) {
	prev := inFlight{}
	if c.OrderCA == ca.Name {
		prev = inFlight{orderURL: c.OrderURL, keyPEM: c.OrderKeyPEM}
	}
	replaces := ""
	if c.CertPEM != "" && i.caOf(*c) == ca {
		replaces = replacesID(c.CertPEM, c.Domains)
	}
	c.OrderCA = ca.Name
	o := orderSpec{domains: c.Domains, method: methodOf(*c), profile: c.Profile}
	res, err := i.obtain(ctx, ca, o, prev, replaces, save, emit)
	if err != nil && ctx.Err() == nil && accountMissing(err) {
		if rerr := i.reregister(ctx, ca); rerr != nil {
			return nil, fmt.Errorf("%w; registering the account again failed: %w", err, rerr)
		}
		c.OrderURL, c.OrderKeyPEM = "", ""
		res, err = i.obtain(ctx, ca, o, inFlight{}, replaces, save, emit)
	}
	return res, err
}

// add records a rate-limited CA on p (nil: none yet).
func (p *PausedError) add(until time.Time, why string) *PausedError {
	if p == nil {
		return &PausedError{Until: until, Reasons: []string{why}}
	}
	if until.Before(p.Until) {
		p.Until = until
	}
	p.Reasons = append(p.Reasons, why)
	return p
}

func (p *PausedError) reasons() []string {
	if p == nil {
		return nil
	}
	return p.Reasons
}

// loadCAStates reads the shared CA states; without them no CA is skipped.
func (i *Issuer) loadCAStates(ctx context.Context) map[string]store.CAState {
	out := map[string]store.CAState{}
	states, err := i.store.CAStates(ctx)
	if err != nil {
		i.log.Warn("reading CA states failed; no CA skipped as paused", "err", err)
		return out
	}
	for _, st := range states {
		out[st.Name] = st
	}
	return out
}

// caStates is every CA in order of preference with its pause, if any.
func (i *Issuer) caStates(ctx context.Context) []operator.CAState {
	states := i.loadCAStates(ctx)
	now := i.opts.Now()
	out := make([]operator.CAState, 0, len(i.cas))
	for _, ca := range i.cas {
		v := operator.CAState{Name: ca.Name, Directory: ca.Directory}
		if st, ok := states[ca.Name]; ok && st.PausedUntil.After(now) {
			v.PausedUntil, v.Kind, v.Reason = st.PausedUntil, st.Kind, st.LastError
		}
		out = append(out, v)
	}
	return out
}

// allPaused returns when the first pause ends and why, when every CA is
// paused; zero otherwise.
func allPaused(cas []operator.CAState) (time.Time, string) {
	var (
		until time.Time
		why   []string
	)
	for _, ca := range cas {
		if ca.PausedUntil.IsZero() {
			return time.Time{}, ""
		}
		if until.IsZero() || ca.PausedUntil.Before(until) {
			until = ca.PausedUntil
		}
		why = append(why, fmt.Sprintf("%s (%s): %s", ca.Name, ca.Kind, ca.Reason))
	}
	return until, strings.Join(why, "; ")
}

// caSucceeded clears a CA's failure record after an order it completed.
func (i *Issuer) caSucceeded(ctx context.Context, ca *caClient, prev store.CAState) {
	if prev.Failures == 0 && prev.PausedUntil.IsZero() {
		return
	}
	if err := i.store.SaveCAState(context.WithoutCancel(ctx), store.CAState{Name: ca.Name}); err != nil {
		i.log.Warn("recording CA state failed", "ca", ca.Name, "err", err)
	}
	i.log.Info("CA back in service", "ca", ca.Name)
}

// caFailed pauses ca for every certificate: until its Retry-After when it
// sent one with a rate limit, else for CABackoff doubling with each
// consecutive failure (at most an hour). It returns the end of the pause.
func (i *Issuer) caFailed(ctx context.Context, ca *caClient, prev store.CAState, f failure, cause error) time.Time {
	n := prev.Failures + 1
	wait := f.retryAfter
	if wait <= 0 && f.kind == kindRateLimited {
		// A rate limit without Retry-After: the CA's limits are counted
		// in hours.
		wait = time.Hour
	}
	if wait <= 0 {
		wait = i.opts.CABackoff
		for k := 1; k < n && wait < time.Hour; k++ {
			wait *= 2
		}
		wait = min(wait, max(time.Hour, i.opts.CABackoff))
	}
	now := i.opts.Now()
	until := now.Add(wait)
	msg := cause.Error()
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	// Concurrent attempts (here or on other instances) meet the same
	// outage: the first pauses the CA and says so, the others extend the
	// pause at most.
	st := store.CAState{Name: ca.Name, PausedUntil: until, Failures: n, Kind: f.kind, LastError: msg}
	started, err := i.store.PauseCA(context.WithoutCancel(ctx), st, now)
	switch {
	case err != nil:
		i.log.Error("recording CA state failed; other instances will not skip the CA", "ca", ca.Name, "err", err)
		fallthrough
	case started:
		i.log.Warn("CA paused after a failure on its side", "ca", ca.Name, "kind", f.kind, "paused_until", until.UTC().Format(time.RFC3339), "consecutive_failures", n, "err", cause)
	default:
		i.log.Info("CA already paused; pause extended at most", "ca", ca.Name, "kind", f.kind, "until", until.UTC().Format(time.RFC3339))
	}
	return until
}

// waitForCAs defers c's attempt until a CA it may use is no longer paused.
// It does not count as a failed attempt: nothing about the certificate
// failed.
func (i *Issuer) waitForCAs(ctx context.Context, c *store.Certificate, p *PausedError) {
	c.Status = string(StatusProcessing)
	c.NextAttempt = p.Until
	c.LastError = p.Error()
	i.log.Warn("attempt deferred: every CA is rate-limited", "cert", c.Name, "status", StatusProcessing, "next_attempt", c.NextAttempt, "reasons", p.Reasons)
	if err := i.save(ctx, c); err != nil {
		i.log.Error("recording deferred attempt failed", "cert", c.Name, "err", err)
	}
	i.publish(c.Name, Event{Step: StepDone, Status: StatusProcessing, Error: p.Error()})
	i.poke()
}

// caaIdentities are the names CAA records give ca: configured, else the
// directory's meta.caaIdentities (fetching the directory can fail like any
// request to the CA).
func (i *Issuer) caaIdentities(ctx context.Context, ca *caClient) ([]string, error) {
	if len(ca.CAAIdentities) > 0 {
		return ca.CAAIdentities, nil
	}
	core, err := i.core(ctx, ca)
	if err != nil {
		return nil, err
	}
	ids := core.GetDirectory().Meta.CaaIdentities
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, strings.ToLower(strings.TrimSuffix(id, ".")))
	}
	return out, nil
}

// failure is a classified order failure.
type failure struct {
	// kind labels the metric: unreachable, server_error, rate_limited,
	// bad_nonce, timeout, tls for the CA's side; the ACME problem type
	// (rejectedIdentifier, caa, unauthorized, …) or "other" otherwise.
	kind string
	// caSide: the CA failed, not the request; another CA may succeed.
	caSide bool
	// retryAfter is the rate limit's Retry-After, 0 when absent.
	retryAfter time.Duration
}

// kindRateLimited is the failure kind of a rate limit, the CA's word on
// when to come back.
const kindRateLimited = "rate_limited"

var problemName = regexp.MustCompile(`^[A-Za-z]{1,40}$`)

// classify tells a CA's own failure from a verdict about the request.
func classify(err error, now time.Time) failure {
	if rl, ok := errors.AsType[*acme.RateLimitedError](err); ok {
		return failure{kind: kindRateLimited, caSide: true, retryAfter: parseRetryAfter(rl.RetryAfter, now)}
	}
	if _, ok := errors.AsType[*acme.NonceError](err); ok {
		return failure{kind: "bad_nonce", caSide: true}
	}
	if prob, ok := errors.AsType[*acme.ProblemDetails](err); ok {
		switch {
		case prob.Type == acme.RateLimitedErr:
			return failure{kind: kindRateLimited, caSide: true}
		case prob.Type == "urn:ietf:params:acme:error:accountDoesNotExist":
			// Only after registering the account again failed: the CA
			// lost our account, not a verdict on the names.
			return failure{kind: "account", caSide: true}
		case prob.Type == acme.BadNonceErr:
			return failure{kind: "bad_nonce", caSide: true}
		case prob.HTTPStatus >= http.StatusInternalServerError:
			return failure{kind: "server_error", caSide: true}
		}
		if name := strings.TrimPrefix(prob.Type, "urn:ietf:params:acme:error:"); problemName.MatchString(name) {
			return failure{kind: name}
		}
		return failure{kind: "other"}
	}
	if _, ok := errors.AsType[*tls.CertificateVerificationError](err); ok {
		// The CA's certificate does not verify against its ca_roots: that
		// CA is unusable, the request is not at fault.
		return failure{kind: "tls", caSide: true}
	}
	if _, ok := errors.AsType[*url.Error](err); ok {
		return failure{kind: "unreachable", caSide: true}
	}
	if errors.Is(err, errCATooSlow) {
		return failure{kind: "timeout", caSide: true}
	}
	return failure{kind: "other"}
}

// maxRetryAfter bounds a CA's Retry-After, so a garbled header cannot park
// a CA for years.
const maxRetryAfter = 7 * 24 * time.Hour

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return time.Second
		}
		d = time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = max(t.Sub(now), time.Second)
	} else {
		return 0
	}
	return min(d, maxRetryAfter)
}
