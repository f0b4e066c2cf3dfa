package issuer

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-acme/lego/v4/acme"
	"github.com/go-acme/lego/v4/acme/api"
	"github.com/go-acme/lego/v4/certcrypto"

	"github.com/delegated/delegated/store"
)

const userAgent = "delegated"

// core returns the ACME client for ca, registering the account on first
// use and keeping its key in the store, so it is registered once per CA
// (directory and email).
func (i *Issuer) core(ctx context.Context, ca *caClient) (*api.Core, error) {
	ca.coreMu.Lock()
	defer ca.coreMu.Unlock()
	if ca.acmeCore != nil {
		return ca.acmeCore, nil
	}
	acct, err := i.store.ACMEAccountFor(ctx, ca.Directory, ca.Email)
	switch {
	case err == nil:
		key, err := certcrypto.ParsePEMPrivateKey([]byte(acct.KeyPEM))
		if err != nil {
			return nil, fmt.Errorf("acme account: parse stored key: %w", err)
		}
		c, err := i.newCore(ctx, ca, acct.URI, key)
		if err != nil {
			return nil, err
		}
		ca.acmeCore, ca.acmeAccount = c, acct.URI
		return c, nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	key, err := certcrypto.GeneratePrivateKey(certcrypto.EC256)
	if err != nil {
		return nil, fmt.Errorf("acme account: generate key: %w", err)
	}
	c, uri, err := i.register(ctx, ca, key)
	if err != nil {
		return nil, err
	}
	i.log.Info("acme account registered", "ca", ca.Name, "directory", ca.Directory, "email", ca.Email, "uri", uri)
	return c, nil
}

// newCore fetches ca's directory and returns a client for the account uri
// ("" to register). The first contact with a CA is not retried within the
// attempt: a CA that does not answer it is passed over at once for the
// next one (or the attempt fails and retries on its own schedule); later
// requests to a CA that answered are retried (retryCA).
func (i *Issuer) newCore(_ context.Context, ca *caClient, uri string, key crypto.PrivateKey) (*api.Core, error) {
	c, err := api.New(ca.httpClient, userAgent, ca.Directory, uri, key)
	if err != nil {
		return nil, fmt.Errorf("acme: directory %s: %w", ca.Directory, err)
	}
	return c, nil
}

// register registers key at ca (a new account, or the existing one of
// that key), records it and makes it the client's. ca.coreMu is held.
func (i *Issuer) register(ctx context.Context, ca *caClient, key crypto.PrivateKey) (*api.Core, string, error) {
	c, err := i.newCore(ctx, ca, "", key)
	if err != nil {
		return nil, "", err
	}
	req := acme.Account{TermsOfServiceAgreed: true}
	if ca.Email != "" {
		req.Contact = []string{"mailto:" + ca.Email}
	}
	var ext acme.ExtendedAccount
	if ca.EABKID != "" {
		ext, err = c.Accounts.NewEAB(req, ca.EABKID, ca.EABHMAC)
	} else {
		ext, err = c.Accounts.New(req)
	}
	if err != nil {
		return nil, "", fmt.Errorf("acme account: register %s at %s: %w", ca.Email, ca.Directory, err)
	}
	keyPEM := string(certcrypto.PEMEncode(key))
	if err := i.store.SaveACMEAccount(ctx, store.ACMEAccount{Directory: ca.Directory, Email: ca.Email, KeyPEM: keyPEM, URI: ext.Location}); err != nil {
		return nil, "", err
	}
	ca.acmeCore, ca.acmeAccount = c, ext.Location
	return c, ext.Location, nil
}

// reregister registers ca's stored account key again after the CA
// answered accountDoesNotExist (a CA reset, a new staging environment), so
// issuance carries on without the operator changing anything.
func (i *Issuer) reregister(ctx context.Context, ca *caClient) error {
	ca.coreMu.Lock()
	defer ca.coreMu.Unlock()
	acct, err := i.store.ACMEAccountFor(ctx, ca.Directory, ca.Email)
	if err != nil {
		return err
	}
	key, err := certcrypto.ParsePEMPrivateKey([]byte(acct.KeyPEM))
	if err != nil {
		return fmt.Errorf("acme account: parse stored key: %w", err)
	}
	_, uri, err := i.register(ctx, ca, key)
	if err != nil {
		return err
	}
	i.log.Warn("acme account unknown to the CA; registered it again with the same key", "ca", ca.Name, "directory", ca.Directory, "email", ca.Email, "old_uri", acct.URI, "uri", uri)
	return nil
}

// issued is what an order produced.
type issued struct {
	certPEM, chainPEM, keyPEM string
	leaf                      *x509.Certificate
	// ca names the CA that issued it.
	ca string
}

// obtain runs one ACME order for domains: all authorizations are solved at
// once (each value is served by our zone the moment it is stored, so there
// is no propagation wait) and polled with short, growing intervals.
// inFlight is an order's state kept in the store, so an order interrupted
// by a restart resumes instead of being placed again (a duplicate
// certificate, and CA rate limit spent).
type inFlight struct {
	orderURL string
	// keyPEM is the key whose CSR finalized the order; without it a
	// certificate issued just before the restart would be useless.
	keyPEM string
}

// obtain runs one ACME order for domains: all authorizations are solved at
// once (each value is served by our zone the moment it is stored, so there
// is no propagation wait) and polled with short, growing intervals. prev
// resumes an interrupted order; save records the order's state before each
// step that would be lost in a restart. replaces is the ARI identifier of
// the certificate being renewed, or "".
func (i *Issuer) obtain(ctx context.Context, ca *caClient, o orderSpec, prev inFlight, replaces string, save func(inFlight) error, emit func(Event)) (*issued, error) {
	domains := o.domains
	// The certificate's own profile, else the CA's default.
	profile := o.profile
	if profile == "" {
		profile = ca.Profile
	}
	core, err := i.core(ctx, ca)
	if err != nil {
		return nil, err
	}
	order, resumed := i.resumeOrder(ctx, core, prev)
	if resumed {
		i.log.Info("interrupted order resumed", "order", order.Location, "order_status", order.Status, "domains", domains)
		emit(Event{Step: StepOrder, OK: true, Detail: fmt.Sprintf("%s resumed (%s)", order.Location, order.Status)})
	} else {
		prev = inFlight{}
		// The CA may have dropped the profile since the request: say so
		// before ordering rather than relay its refusal.
		if o.profile != "" {
			if err := profileOffered(core.GetDirectory().Meta.Profiles, o.profile, ca.Directory); err != nil {
				return nil, err
			}
		}
		// A lost answer here leaves an unused order at the CA, which
		// expires on its own: cheaper than failing the attempt.
		err = i.retryCA(ctx, "new order", func() (err error) {
			order, err = core.Orders.NewWithOptions(domains, &api.OrderOptions{ReplacesCertID: replaces, Profile: profile})
			return err
		})
		if err != nil && replaces != "" {
			// Marking the order as an ARI replacement is advisory; a CA
			// that cannot match the old certificate (Pebble fails on some
			// serials) must not block the renewal.
			i.log.Warn("order as ARI replacement refused; ordering without it", "replaces", replaces, "err", err)
			order, err = core.Orders.NewWithOptions(domains, &api.OrderOptions{Profile: profile})
		}
		if err != nil {
			return nil, fmt.Errorf("new order: %w", err)
		}
		if err := save(inFlight{orderURL: order.Location}); err != nil {
			return nil, err
		}
		emit(Event{Step: StepOrder, OK: true, Detail: fmt.Sprintf("%s (%d authorizations)", order.Location, len(order.Authorizations))})
	}

	var key crypto.PrivateKey
	switch order.Status {
	case acme.StatusPending, acme.StatusReady:
		if err := i.solveAll(ctx, ca, core, order.Authorizations, o, emit); err != nil {
			return nil, err
		}
		if key, err = certcrypto.GeneratePrivateKey(ca.keyType); err != nil {
			return nil, fmt.Errorf("generate %s key: %w", ca.keyType, err)
		}
		keyPEM := string(certcrypto.PEMEncode(key))
		if err := save(inFlight{orderURL: order.Location, keyPEM: keyPEM}); err != nil {
			return nil, err
		}
		csr, err := certcrypto.CreateCSR(key, certcrypto.CSROptions{Domain: domains[0], SAN: domains})
		if err != nil {
			return nil, fmt.Errorf("create CSR: %w", err)
		}
		if err := i.finalize(ctx, core, order, csr); err != nil {
			return nil, fmt.Errorf("finalize: %w", err)
		}
	default: // processing or valid: finalized before the restart
		if key, err = certcrypto.ParsePEMPrivateKey([]byte(prev.keyPEM)); err != nil {
			return nil, fmt.Errorf("resume order: stored key: %w", err)
		}
	}
	var final acme.ExtendedOrder
	err = i.poll(ctx, func() (bool, error) {
		o, err := core.Orders.Get(order.Location)
		if err != nil {
			return false, err
		}
		switch o.Status {
		case acme.StatusValid:
			final = o
			return true, nil
		case acme.StatusInvalid:
			return false, fmt.Errorf("order invalid: %v", o.Err())
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("finalize: %w", err)
	}
	var certPEM, chainPEM string
	err = i.retryCA(ctx, "download certificate", func() (err error) {
		certPEM, chainPEM, err = download(core, final.Certificate, ca.PreferredChain)
		return err
	})
	if err != nil {
		return nil, err
	}
	leaf, err := certcrypto.ParsePEMCertificate([]byte(certPEM))
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	emit(Event{Step: StepFinalize, OK: true, Detail: fmt.Sprintf("serial %s, expires %s", serialHex(leaf), leaf.NotAfter.UTC().Format(time.RFC3339))})
	return &issued{certPEM: certPEM, chainPEM: chainPEM, keyPEM: string(certcrypto.PEMEncode(key)), leaf: leaf, ca: ca.Name}, nil
}

// resumeOrder fetches an interrupted order; false when there is none or it
// cannot continue (expired, invalid, or finalized without a stored key).
func (i *Issuer) resumeOrder(ctx context.Context, core *api.Core, prev inFlight) (acme.ExtendedOrder, bool) {
	if prev.orderURL == "" {
		return acme.ExtendedOrder{}, false
	}
	var o acme.ExtendedOrder
	err := i.retryCA(ctx, "resume order", func() (err error) {
		o, err = core.Orders.Get(prev.orderURL)
		return err
	})
	if err != nil {
		i.log.Info("interrupted order cannot be resumed; placing a new one", "order", prev.orderURL, "err", err)
		return acme.ExtendedOrder{}, false
	}
	o.Location = prev.orderURL
	switch o.Status {
	case acme.StatusPending, acme.StatusReady:
		return o, true
	case acme.StatusProcessing, acme.StatusValid:
		if prev.keyPEM != "" {
			return o, true
		}
	}
	i.log.Info("interrupted order cannot be resumed; placing a new one", "order", prev.orderURL, "order_status", o.Status)
	return acme.ExtendedOrder{}, false
}

// download fetches the certificate, choosing the preferred chain among the
// alternates when one is configured.
func download(core *api.Core, url, preferredChain string) (certPEM, chainPEM string, err error) {
	all, err := core.Certificates.GetAll(url, true)
	if err != nil {
		return "", "", fmt.Errorf("download certificate: %w", err)
	}
	chosen := all[url]
	if preferredChain != "" {
		for _, raw := range all {
			if chainIssuedBy(raw.Cert, preferredChain) {
				chosen = raw
				break
			}
		}
	}
	if chosen == nil {
		return "", "", errors.New("download certificate: empty answer")
	}
	block, rest := pem.Decode(chosen.Cert)
	if block == nil {
		return "", "", errors.New("download certificate: no PEM")
	}
	return string(pem.EncodeToMemory(block)), strings.TrimLeft(string(rest), "\n"), nil
}

// chainIssuedBy reports whether the top certificate of the PEM bundle was
// issued by a CA whose common name is cn (lego's and certbot's meaning of
// "preferred chain").
func chainIssuedBy(bundle []byte, cn string) bool {
	certs, err := certcrypto.ParsePEMBundle(bundle)
	if err != nil || len(certs) == 0 {
		return false
	}
	return certs[len(certs)-1].Issuer.CommonName == cn
}

// solveAll presents every authorization's value, then triggers and polls
// them concurrently. Values are removed afterwards even when ctx ended.
func (i *Issuer) solveAll(ctx context.Context, ca *caClient, core *api.Core, authzURLs []string, o orderSpec, emit func(Event)) error {
	var (
		mu      sync.Mutex
		present []solution
	)
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		for _, s := range present {
			if err := i.solver.CleanUpContext(cctx, s.domain, s.keyAuth); err != nil {
				i.log.Warn("challenge cleanup failed", "domain", s.domain, "err", err)
			}
		}
	}()
	errs := make([]error, len(authzURLs))
	var wg sync.WaitGroup
	for n, u := range authzURLs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[n] = func() error {
				started := time.Now()
				var authz acme.Authorization
				err := i.retryCA(ctx, "authorization", func() (err error) {
					authz, err = core.Authorizations.Get(u)
					return err
				})
				if err != nil {
					return fmt.Errorf("authorization %s: %w", u, err)
				}
				domain := authz.Identifier.Value
				if authz.Wildcard {
					domain = "*." + domain
				}
				if authz.Status == acme.StatusValid {
					emit(Event{Step: StepAuthorization, OK: true, Detail: domain + " already valid"})
					return nil
				}
				chal, sol, err := i.present(ctx, ca, core, u, authz, domain, o.method, o.domains)
				if err != nil {
					return fmt.Errorf("authorization %s: %w", domain, err)
				}
				if sol != nil {
					mu.Lock()
					present = append(present, *sol)
					mu.Unlock()
				}
				// A resumed order's challenge may already be under
				// validation: triggering it again is an error, and the
				// value just presented again is what the CA reads.
				if chal.Status == acme.StatusPending {
					if err := i.trigger(ctx, core, u, chal.URL); err != nil {
						return fmt.Errorf("authorization %s: trigger challenge: %w", domain, err)
					}
				}
				err = i.poll(ctx, func() (bool, error) {
					a, err := core.Authorizations.Get(u)
					if err != nil {
						return false, err
					}
					switch a.Status {
					case acme.StatusValid:
						return true, nil
					case acme.StatusPending, acme.StatusProcessing:
						return false, nil
					}
					for _, c := range a.Challenges {
						if c.Error != nil {
							return false, fmt.Errorf("%s: %w", a.Status, c.Err())
						}
					}
					return false, fmt.Errorf("status %s", a.Status)
				})
				if err != nil {
					emit(Event{Step: StepAuthorization, Detail: domain, Error: err.Error()})
					return fmt.Errorf("authorization %s: %w", domain, err)
				}
				emit(Event{Step: StepAuthorization, OK: true, Detail: fmt.Sprintf("%s valid (%s, %s)", domain, o.method, time.Since(started).Round(time.Millisecond))})
				return nil
			}()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// poll calls check until it reports done or fails, waiting 50 ms at first
// and growing to 1 s, since our own zone answers at once and the CA usually
// validates in well under a second. A check that could not reach the CA
// (see transient) is tried again until the deadline: a status read changes
// nothing, and one lost answer must not throw away a whole order.
func (i *Issuer) poll(ctx context.Context, check func() (bool, error)) error {
	wait := 50 * time.Millisecond
	deadline := time.NewTimer(pollDeadline)
	defer deadline.Stop()
	var lastTransient error
	for {
		done, err := check()
		switch {
		case err != nil && transient(err):
			lastTransient = err
			i.freshConnections()
		case err != nil || done:
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-deadline.C:
			t.Stop()
			if lastTransient != nil {
				return fmt.Errorf("%w after %s; last error: %w", errCATooSlow, pollDeadline, lastTransient)
			}
			return fmt.Errorf("%w after %s", errCATooSlow, pollDeadline)
		case <-t.C:
		}
		wait = min(wait*3/2, time.Second)
	}
}

// errCATooSlow: an authorization or order stayed pending or processing
// past pollDeadline, the CA's failure rather than the request's.
var errCATooSlow = errors.New("timed out waiting for the CA")

// pollDeadline bounds how long an authorization or an order may stay
// pending or processing at the CA.
const pollDeadline = 5 * time.Minute

// caRetries is how many more times a request the CA did not answer is
// tried within one attempt. The next attempt comes only after
// RetryInterval (15 minutes by default), far too long to pay for one lost
// answer.
const caRetries = 4

// transient reports whether err says the CA could not be reached or failed
// on its side (a timeout, a refused or reset connection, a 5xx problem),
// rather than the CA's verdict on the request. A TLS verification failure
// is a verdict: trying again cannot fix a wrong ca_roots.
func transient(err error) bool {
	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) {
		return false
	}
	var urlErr *url.Error
	if errors.As(err, &urlErr) {
		return true
	}
	var prob *acme.ProblemDetails
	return errors.As(err, &prob) && prob.HTTPStatus >= http.StatusInternalServerError
}

// retryCA runs step until it succeeds, fails for good, or has failed
// transiently caRetries+1 times, waiting 1 s, 2 s, 4 s, … in between.
// step must be safe to run again after a lost answer: a step that changes
// the CA's state checks first whether its earlier try took effect.
func (i *Issuer) retryCA(ctx context.Context, what string, step func() error) error {
	wait := time.Second
	for try := 1; ; try++ {
		err := step()
		if err == nil || !transient(err) || try > caRetries {
			return err
		}
		i.log.Warn("CA did not answer; trying again", "step", what, "try", try, "in", wait, "err", err)
		i.freshConnections()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		case <-t.C:
		}
		wait *= 2
	}
}

// freshConnections makes the next request open a new connection: the
// connection a request timed out on may be wedged, and HTTP/2 would send
// every retry down it again.
func (i *Issuer) freshConnections() {
	for _, ca := range i.cas {
		ca.httpClient.CloseIdleConnections()
	}
}

// retrySending is retryCA for a request that changes the CA's state. After
// a lost answer the CA may have acted on it anyway, and the same request
// sent again would then be refused, so applied reads first whether it did.
func (i *Issuer) retrySending(ctx context.Context, what string, applied func() (bool, error), send func() error) error {
	sent := false
	return i.retryCA(ctx, what, func() error {
		if sent {
			done, err := applied()
			if err != nil {
				return err
			}
			if done {
				i.log.Info("lost "+what+" answer had been acted on", "step", what)
				return nil
			}
		}
		sent = true
		return send()
	})
}

// trigger asks the CA to validate a challenge; a challenge no longer
// pending was triggered.
func (i *Issuer) trigger(ctx context.Context, core *api.Core, authzURL, chalURL string) error {
	return i.retrySending(ctx, "trigger challenge",
		func() (bool, error) {
			a, err := core.Authorizations.Get(authzURL)
			if err != nil {
				return false, err
			}
			for _, c := range a.Challenges {
				if c.URL == chalURL && c.Status != acme.StatusPending {
					return true, nil
				}
			}
			return false, nil
		},
		func() error {
			_, err := core.Challenges.New(chalURL)
			return err
		})
}

// finalize sends the CSR; an order processing or valid was finalized.
func (i *Issuer) finalize(ctx context.Context, core *api.Core, order acme.ExtendedOrder, csr []byte) error {
	return i.retrySending(ctx, "finalize",
		func() (bool, error) {
			o, err := core.Orders.Get(order.Location)
			return o.Status == acme.StatusProcessing || o.Status == acme.StatusValid, err
		},
		func() error {
			_, err := core.Orders.UpdateForCSR(order.Finalize, csr)
			return err
		})
}

// revoke revokes a certificate at the CA with an RFC 5280 reason code.
func (i *Issuer) revoke(ctx context.Context, ca *caClient, certPEM string, reason uint) error {
	core, err := i.core(ctx, ca)
	if err != nil {
		return err
	}
	leaf, err := certcrypto.ParsePEMCertificate([]byte(certPEM))
	if err != nil {
		return fmt.Errorf("revoke: parse certificate: %w", err)
	}
	r := reason
	if err := core.Certificates.Revoke(acme.RevokeCertMessage{Certificate: base64.RawURLEncoding.EncodeToString(leaf.Raw), Reason: &r}); err != nil {
		return fmt.Errorf("revoke: %w", err)
	}
	return nil
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }
