package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-acme/lego/v4/acme"

	"github.com/delegated/delegated/store"
)

// queueOrder hands name to the order pool; when the pool is full the
// scheduler finds it again (it is due).
func (i *Issuer) queueOrder(name string) {
	i.startPools()
	if !i.orders.submit(name) {
		i.poke()
	}
}

// orderDue is the order pool's work: wait for the CA pace, take the
// certificate's lease and run one attempt.
func (i *Issuer) orderDue(ctx context.Context, name string) {
	if err := i.pacer.wait(ctx); err != nil {
		return
	}
	if !i.withClaim(name, func(ctx context.Context) bool { return i.attempt(ctx, name) }) {
		i.pacer.refund()
	}
}

func errBusy(name string) error {
	return fmt.Errorf("%w: %s: an order is in flight; try again when it ends", ErrInvalid, name)
}

// attempt runs one order for name and records the outcome. It reports
// false (the pace token unused) when the certificate was not due.
func (i *Issuer) attempt(ctx context.Context, name string) bool {
	c, err := i.store.CertificateByName(ctx, name)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			i.log.Error("attempt: load certificate", "cert", name, "err", err)
		}
		return false
	}
	if now := i.opts.Now(); !due(c, now) {
		// Another instance finished (or rescheduled) it between our look
		// at the index and taking the lease. An index entry that says due
		// when the row does not (planned before the index existed) is
		// corrected, so it is not handed out again.
		if !c.NextAction.IsZero() && !c.NextAction.After(now) {
			if err := i.save(ctx, &c); err != nil {
				i.log.Error("scheduler: recording next action", "cert", name, "err", err)
			}
		}
		return false
	}
	emit := func(ev Event) { i.publish(name, ev) }
	started := i.opts.Now()
	renewed := c.CertPEM != ""
	log := i.log.With("cert", name)
	log.Info("order starting", "domains", c.Domains, "status", StatusProcessing)
	save := func(f inFlight) error {
		c.OrderURL, c.OrderKeyPEM = f.orderURL, f.keyPEM
		return i.save(ctx, &c)
	}
	res, err := i.obtainAny(ctx, &c, save, emit)
	// Whatever happens next, this order is over unless a shutdown
	// interrupted it.
	if err == nil || ctx.Err() == nil {
		c.OrderURL, c.OrderKeyPEM, c.OrderCA = "", "", ""
	}
	if err != nil && ctx.Err() != nil && i.runCtx.Err() == nil {
		// The lease is lost: another instance may be working on the
		// certificate now, so this one writes nothing more.
		log.Error("order abandoned: certificate lease lost", "status", StatusProcessing, "err", err)
		return true
	}
	if err != nil && ctx.Err() != nil {
		// Shutting down is not a failed attempt: the certificate stays
		// processing with no delay, so the next start resumes at once.
		log.Info("order interrupted by shutdown; will restart", "status", StatusProcessing)
		i.publish(name, Event{Step: StepDone, Status: StatusProcessing, Error: "daemon shutting down; the order restarts when it is back"})
		return true
	}
	if p, ok := errors.AsType[*PausedError](err); ok {
		// Every CA it may use is rate-limited: nothing was ordered, so
		// the pace token goes back.
		i.waitForCAs(ctx, &c, p)
		return false
	}
	if err != nil {
		i.fail(ctx, &c, err)
		return true
	}
	// The new material is stored first (still processing), so a crash
	// while deploying loses nothing; the status says active only once the
	// files are in place, so whoever sees active finds the files.
	c.CertPEM, c.ChainPEM, c.KeyPEM, c.CA = res.certPEM, res.chainPEM, res.keyPEM, res.ca
	c.Serial = serialHex(res.leaf)
	c.NotBefore, c.NotAfter = res.leaf.NotBefore, res.leaf.NotAfter
	c.Attempts, c.NextAttempt = 0, time.Time{}
	c.RenewAt, c.RenewCheckedAt, c.RenewInfoAt = time.Time{}, time.Time{}, time.Time{}
	if err := i.save(ctx, &c); err != nil {
		if errors.Is(err, store.ErrLeaseLost) {
			// Whoever holds the certificate now resumes the recorded
			// order and downloads this same certificate.
			log.Error("issued certificate not recorded here: certificate lease lost", "err", err)
			return true
		}
		i.fail(ctx, &c, err)
		return true
	}
	p := pathsFor(i.opts.DeployDir, name)
	if err := deploy(p, c.CertPEM, c.ChainPEM, c.KeyPEM); err != nil {
		// Never active without its files: a failed attempt, retried.
		emit(Event{Step: StepDeployed, Error: err.Error()})
		i.fail(ctx, &c, err)
		return true
	}
	emit(Event{Step: StepDeployed, OK: true, Detail: p.Dir})
	c.Status, c.LastError = string(StatusActive), ""
	if i.opts.DeployHook != "" {
		if err := runHook(ctx, i.opts.DeployHook, hookRun{Name: name, Domains: c.Domains, Paths: p, Renewed: renewed}); err != nil {
			// The certificate is valid and deployed; the operator must
			// still learn that their server did not reload.
			c.LastError = err.Error()
			log.Error("deploy hook failed", "err", err)
			emit(Event{Step: StepHook, Error: err.Error()})
		} else {
			emit(Event{Step: StepHook, OK: true, Detail: i.opts.DeployHook})
		}
	}
	// Fenced like every write: a lease lost while the hook ran (the hook
	// is stopped then) means another instance may own the row now.
	if err := i.save(ctx, &c); err != nil {
		log.Error("recording the issued certificate failed; its lease holder finishes it", "err", err)
		emit(Event{Step: StepDone, Status: StatusProcessing, Error: err.Error()})
		return true
	}
	log.Info("certificate issued", "status", StatusActive, "serial", c.Serial, "not_after", c.NotAfter, "renewed", renewed, "took", i.opts.Now().Sub(started).Round(time.Millisecond), "dir", p.Dir)
	i.poke() // the scheduler plans the next renewal
	if c.LastError != "" {
		emit(Event{Step: StepDone, Status: StatusActive, Error: c.LastError})
	} else {
		emit(Event{Step: StepDone, OK: true, Status: StatusActive})
	}
	return true
}

// accountMissing reports whether the CA no longer knows our account.
func accountMissing(err error) bool {
	var prob *acme.ProblemDetails
	return errors.As(err, &prob) && prob.Type == "urn:ietf:params:acme:error:accountDoesNotExist"
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
			hctx := context.WithoutCancel(ctx)
			if err := runHook(hctx, i.opts.DeployHook, hookRun{Name: c.Name, Domains: c.Domains, Paths: pathsFor(i.opts.DeployDir, c.Name), Failure: cause}); err != nil {
				i.log.Error("failure hook failed", "cert", c.Name, "err", err)
			}
		}
	} else {
		c.Status = string(StatusProcessing)
		c.NextAttempt = i.opts.Now().Add(RetryDelay(i.opts.RetryInterval, c.Attempts))
		i.log.Warn("attempt failed; will retry", "cert", c.Name, "status", StatusProcessing, "attempts", c.Attempts, "next_attempt", c.NextAttempt, "err", cause)
	}
	if err := i.save(ctx, c); err != nil {
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
