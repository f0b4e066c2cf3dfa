package issuer

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/acme/api"
	"github.com/go-acme/lego/v4/certcrypto"
	"github.com/go-acme/lego/v4/certificate"

	"github.com/delegated/delegated/store"
)

// ariRecheck is how often the CA's renewal information is asked again
// when the CA names no Retry-After: RFC 9773 lets the window move (e.g.
// ahead of a mass revocation). A Retry-After is followed within
// [ariMinRecheck, ariRecheck] (the RFC's own example bounds) and never
// later than ariLifetimeShare of the remaining lifetime, so a 6-day
// certificate is looked at several times before it must renew.
const (
	ariRecheck       = 24 * time.Hour
	ariMinRecheck    = time.Minute
	ariLifetimeShare = 10
	// ariErrorRecheck is when an unanswered renewal-information request
	// is tried again.
	ariErrorRecheck = time.Hour
)

// nextInfoAt is when to ask the CA's renewal information again after
// asking at now, given its Retry-After (0 when absent).
func nextInfoAt(now time.Time, retryAfter time.Duration, notAfter time.Time) time.Time {
	d := ariRecheck
	if retryAfter > 0 {
		d = min(max(retryAfter, ariMinRecheck), ariRecheck)
	}
	if left := notAfter.Sub(now); left > 0 {
		d = min(d, left/ariLifetimeShare)
	}
	return now.Add(max(d, 10*time.Second))
}

// renewInfoAt is when c's renewal information is due to be asked again.
func (i *Issuer) renewInfoAt(c store.Certificate) time.Time {
	if !c.RenewInfoAt.IsZero() {
		return c.RenewInfoAt
	}
	if c.RenewCheckedAt.IsZero() {
		return time.Time{}
	}
	// Planned before the index existed: a day after, bounded as always.
	return nextInfoAt(c.RenewCheckedAt, 0, c.NotAfter)
}

// renewalPlan is a chosen renewal moment and why.
type renewalPlan struct {
	at     time.Time
	source string // "ari", "lifetime", "renew_before"
	window *acme.Window
	// retryAfter is the CA's Retry-After for its renewal information.
	retryAfter time.Duration
}

// planRenewal chooses when to renew leaf: a uniformly random moment in the
// CA's ARI window (so many certificates never renew at one instant), else
// when a third of the lifetime remains, with jitter of 1% of the lifetime.
// Options.RenewBefore is a floor: never later than NotAfter-RenewBefore.
func (i *Issuer) planRenewal(ctx context.Context, c store.Certificate) (renewalPlan, error) {
	leaf, err := certcrypto.ParsePEMCertificate([]byte(c.CertPEM))
	if err != nil {
		return renewalPlan{}, fmt.Errorf("plan renewal: parse certificate: %w", err)
	}
	var plan renewalPlan
	win, retryAfter, err := i.ariWindow(ctx, i.caOf(c), leaf)
	switch {
	case err == nil:
		plan = renewalPlan{at: randomIn(win.Start, win.End), source: "ari", window: win, retryAfter: retryAfter}
	case errors.Is(err, api.ErrNoARI):
		plan = lifetimePlan(leaf)
	default:
		return renewalPlan{}, err
	}
	return i.floor(plan, leaf), nil
}

// planByLifetime is planRenewal without asking the CA.
func (i *Issuer) planByLifetime(c store.Certificate) (renewalPlan, error) {
	leaf, err := certcrypto.ParsePEMCertificate([]byte(c.CertPEM))
	if err != nil {
		return renewalPlan{}, fmt.Errorf("plan renewal: parse certificate: %w", err)
	}
	return i.floor(lifetimePlan(leaf), leaf), nil
}

// lifetimePlan renews when a third of the lifetime remains, minus a jitter
// of up to 1% of the lifetime.
func lifetimePlan(leaf *x509.Certificate) renewalPlan {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	jitter := time.Duration(rand.Int64N(int64(life/100) + 1))
	return renewalPlan{at: leaf.NotAfter.Add(-life / 3).Add(-jitter), source: "lifetime"}
}

// floor applies RenewBefore and never plans in the past.
func (i *Issuer) floor(plan renewalPlan, leaf *x509.Certificate) renewalPlan {
	now := i.opts.Now()
	if i.opts.RenewBefore > 0 {
		if floor := leaf.NotAfter.Add(-i.opts.RenewBefore); floor.Before(plan.at) {
			plan.at, plan.source = floor, "renew_before"
		}
	}
	if plan.at.Before(now) {
		plan.at = now
	}
	return plan
}

func randomIn(start, end time.Time) time.Time {
	if w := end.Sub(start); w > 0 {
		return start.Add(time.Duration(rand.Int64N(int64(w))))
	}
	return start
}

// ariWindow asks the CA for leaf's suggested renewal window and when to ask
// again (its Retry-After, 0 when absent); api.ErrNoARI when the CA has no
// renewalInfo endpoint. It requests the resource itself (lego's
// GetRenewalInfo takes no context and ignores the status).
func (i *Issuer) ariWindow(ctx context.Context, ca *caClient, leaf *x509.Certificate) (*acme.Window, time.Duration, error) {
	win, resp, err := i.fetchARI(ctx, ca, leaf)
	if err != nil {
		return nil, 0, err
	}
	var retryAfter time.Duration
	if v := resp.Get("Retry-After"); v != "" {
		if d, err := api.ParseRetryAfter(v); err == nil {
			retryAfter = d
		}
	}
	return win, retryAfter, nil
}

func (i *Issuer) fetchARI(ctx context.Context, ca *caClient, leaf *x509.Certificate) (*acme.Window, http.Header, error) {
	core, err := i.core(ctx, ca)
	if err != nil {
		return nil, nil, err
	}
	base := core.GetDirectory().RenewalInfo
	if base == "" {
		return nil, nil, api.ErrNoARI
	}
	id, err := certificate.MakeARICertID(leaf)
	if err != nil {
		return nil, nil, fmt.Errorf("renewal info: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/"+id, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("renewal info: %w", err)
	}
	resp, err := ca.httpClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("renewal info: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("renewal info: %s answered %s", base, resp.Status)
	}
	var info acme.RenewalInfoResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&info); err != nil {
		return nil, nil, fmt.Errorf("renewal info: decode: %w", err)
	}
	w := info.SuggestedWindow
	if w.Start.IsZero() || !w.Start.Before(w.End) {
		return nil, nil, fmt.Errorf("renewal info: invalid window %s – %s", w.Start, w.End)
	}
	return &w, resp.Header, nil
}

// Renew starts a renewal of name now when it is due, or regardless with
// force. It reports whether an attempt started (it runs on the order pool,
// paced like every attempt).
func (i *Issuer) Renew(ctx context.Context, name string, force bool) (Cert, bool, error) {
	c, err := i.load(ctx, name)
	if err != nil {
		return Cert{}, false, err
	}
	if c.CertPEM == "" || Status(c.Status) == StatusPendingDelegation {
		return i.view(c), false, fmt.Errorf("%w: %s has no certificate to renew (status %s); use retry", ErrInvalid, name, c.Status)
	}
	started := false
	var serr error
	claimed := i.withClaim(name, func(ctx context.Context) bool {
		if c, serr = i.store.CertificateByName(ctx, name); serr != nil {
			return false
		}
		if !force && (c.RenewAt.IsZero() || c.RenewAt.After(i.opts.Now())) {
			return false
		}
		c.Status, c.NextAttempt, c.Attempts = string(StatusProcessing), time.Time{}, 0
		if serr = i.save(ctx, &c); serr != nil {
			return false
		}
		i.log.Info("renewal starting", "cert", name, "force", force, "renew_at", c.RenewAt)
		started = true
		return true
	})
	if !claimed {
		// Already renewing: the caller may follow it.
		return i.view(c), true, nil
	}
	if serr != nil {
		return Cert{}, false, serr
	}
	return i.view(c), started, nil
}

// RenewDue starts every certificate that is due (all with force) and
// returns their names.
func (i *Issuer) RenewDue(ctx context.Context, force bool) ([]string, error) {
	certs, err := i.store.CertificateSummaries(ctx, store.CertificateFilter{Status: string(StatusActive)})
	if err != nil {
		return nil, err
	}
	now := i.opts.Now()
	var started []string
	for _, c := range certs {
		if c.Serial == "" || !force && (c.RenewAt.IsZero() || c.RenewAt.After(now)) {
			continue
		}
		if _, ok, err := i.Renew(ctx, c.Name, force); err != nil {
			return started, err
		} else if ok {
			started = append(started, c.Name)
		}
	}
	return started, nil
}

// schedule chooses (or, when the CA's Retry-After has passed, re-confirms
// with the CA) the renewal moment of the active certificate c, held under
// its claim, and records it, so a restart keeps the moment instead of
// firing every renewal at once.
func (i *Issuer) schedule(ctx context.Context, c *store.Certificate) {
	now := i.opts.Now()
	plan, err := i.planRenewal(ctx, *c)
	infoAt := nextInfoAt(now, plan.retryAfter, c.NotAfter)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		// The CA's renewal information is unavailable: keep the previous
		// moment if there is one, else fall back to the lifetime rule,
		// and ask again in an hour.
		i.log.Warn("renewal information unavailable", "cert", c.Name, "err", err)
		if plan, err = i.planByLifetime(*c); err != nil {
			i.log.Error("planning renewal failed", "cert", c.Name, "err", err)
			return
		}
		if !c.RenewAt.IsZero() {
			plan.at, plan.source = c.RenewAt, "previous"
		}
		infoAt = nextInfoAt(now, ariErrorRecheck, c.NotAfter)
	}
	c.RenewAt, c.RenewCheckedAt, c.RenewInfoAt = plan.at, now, infoAt
	if err := i.save(ctx, c); err != nil {
		i.log.Error("recording renewal plan failed", "cert", c.Name, "err", err)
		return
	}
	attrs := []any{"cert", c.Name, "source", plan.source, "renew_at", plan.at.UTC().Format(time.RFC3339),
		"not_after", c.NotAfter.UTC().Format(time.RFC3339)}
	if plan.window != nil {
		attrs = append(attrs, "ari_window_start", plan.window.Start.UTC().Format(time.RFC3339), "ari_window_end", plan.window.End.UTC().Format(time.RFC3339))
	}
	attrs = append(attrs, "next_check", infoAt.UTC().Format(time.RFC3339))
	if plan.retryAfter > 0 {
		attrs = append(attrs, "retry_after", plan.retryAfter)
	}
	i.log.Info("renewal scheduled", attrs...)
	i.poke()
}

// replacesID is the ARI identifier of the certificate an order replaces,
// or "" when there is none or it shares no name with the new order (RFC
// 9773 lets a CA refuse such a replacement).
func replacesID(certPEM string, domains []string) string {
	if certPEM == "" {
		return ""
	}
	leaf, err := certcrypto.ParsePEMCertificate([]byte(certPEM))
	if err != nil {
		return ""
	}
	overlap := false
	for _, n := range leaf.DNSNames {
		overlap = overlap || slices.Contains(domains, n)
	}
	if !overlap {
		return ""
	}
	id, err := certificate.MakeARICertID(leaf)
	if err != nil {
		return ""
	}
	return id
}
