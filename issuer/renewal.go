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

// ariRecheck is how often the CA's renewal information is asked again: RFC
// 9773 lets the window move (e.g. ahead of a mass revocation).
const ariRecheck = 24 * time.Hour

// renewalPlan is a chosen renewal moment and why.
type renewalPlan struct {
	at     time.Time
	source string // "ari", "lifetime", "renew_before"
	window *acme.Window
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
	win, err := i.ariWindow(ctx, i.caOf(c), leaf)
	switch {
	case err == nil:
		plan = renewalPlan{at: randomIn(win.Start, win.End), source: "ari", window: win}
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

// ariWindow asks the CA for leaf's suggested renewal window; api.ErrNoARI
// when the CA has no renewalInfo endpoint. It requests the resource itself
// (lego's GetRenewalInfo takes no context and ignores the status).
func (i *Issuer) ariWindow(ctx context.Context, ca *caClient, leaf *x509.Certificate) (*acme.Window, error) {
	core, err := i.core(ctx, ca)
	if err != nil {
		return nil, err
	}
	base := core.GetDirectory().RenewalInfo
	if base == "" {
		return nil, api.ErrNoARI
	}
	id, err := certificate.MakeARICertID(leaf)
	if err != nil {
		return nil, fmt.Errorf("renewal info: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/"+id, nil)
	if err != nil {
		return nil, fmt.Errorf("renewal info: %w", err)
	}
	resp, err := ca.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("renewal info: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("renewal info: %s answered %s", base, resp.Status)
	}
	var info acme.RenewalInfoResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&info); err != nil {
		return nil, fmt.Errorf("renewal info: decode: %w", err)
	}
	w := info.SuggestedWindow
	if w.Start.IsZero() || !w.Start.Before(w.End) {
		return nil, fmt.Errorf("renewal info: invalid window %s – %s", w.Start, w.End)
	}
	return &w, nil
}

// Renew starts a renewal of name now when it is due, or regardless with
// force. It reports whether an attempt started.
func (i *Issuer) Renew(ctx context.Context, name string, force bool) (Cert, bool, error) {
	c, err := i.store.CertificateByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return Cert{}, false, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	if err != nil {
		return Cert{}, false, err
	}
	if c.CertPEM == "" || Status(c.Status) == StatusPendingDelegation {
		return i.view(c), false, fmt.Errorf("%w: %s has no certificate to renew (status %s); use retry", ErrInvalid, name, c.Status)
	}
	if !i.claim(name) {
		// Already renewing: the caller may follow it.
		return i.view(c), true, nil
	}
	if c, err = i.store.CertificateByName(ctx, name); err != nil {
		i.release(name)
		return Cert{}, false, err
	}
	if !force && (c.RenewAt.IsZero() || c.RenewAt.After(i.opts.Now())) {
		i.release(name)
		return i.view(c), false, nil
	}
	c.Status, c.NextAttempt, c.Attempts = string(StatusProcessing), time.Time{}, 0
	if err := i.store.SaveCertificate(ctx, c); err != nil {
		i.release(name)
		return Cert{}, false, err
	}
	i.log.Info("renewal starting", "cert", name, "force", force, "renew_at", c.RenewAt)
	i.launch(name, i.attempt)
	return i.view(c), true, nil
}

// RenewDue starts every certificate that is due (all with force) and
// returns their names.
func (i *Issuer) RenewDue(ctx context.Context, force bool) ([]string, error) {
	certs, err := i.store.Certificates(ctx)
	if err != nil {
		return nil, err
	}
	var started []string
	for _, c := range certs {
		if c.CertPEM == "" || Status(c.Status) != StatusActive {
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
