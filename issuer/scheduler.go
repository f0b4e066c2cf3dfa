package issuer

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/delegated/delegated/store"
)

// The scheduler scales with what is due, not with what exists: it reads
// the store's next_action index (names and statuses only, never key
// material) and hands due certificates to three bounded pools: delegation
// re-checks, ACME attempts (paced, see pacer) and renewal planning. It
// performs no slow work itself, so a customer whose name servers never
// answer costs one check worker, never anyone's renewal.

// minDispatchGap spaces scheduler passes, so workers finishing one by one
// do not each cause a pass.
const minDispatchGap = 100 * time.Millisecond

// Run schedules due work until ctx ends; then it waits for running work.
func (i *Issuer) Run(ctx context.Context) {
	defer i.wg.Wait()
	defer func() {
		// Under mu, so no attempt is launched once Wait may run.
		i.mu.Lock()
		i.stopRun()
		i.mu.Unlock()
	}()
	i.startPools()
	for {
		wait := i.dispatch(ctx)
		t := time.NewTimer(max(wait, minDispatchGap))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-i.wake:
		case <-t.C:
		}
		t.Stop()
		// A burst of pokes makes one pass, not many.
		gap := time.NewTimer(minDispatchGap)
		select {
		case <-ctx.Done():
			gap.Stop()
			return
		case <-gap.C:
		}
	}
}

// startPools starts the workers and the check-result writer once.
func (i *Issuer) startPools() {
	i.mu.Lock()
	if i.runCtx.Err() != nil || i.poolsStarted {
		i.mu.Unlock()
		return
	}
	i.poolsStarted = true
	i.wg.Add(1)
	i.mu.Unlock()
	go func() {
		defer i.wg.Done()
		i.writeResults()
	}()
	i.checks.start(i.runCtx, &i.wg, i.poke)
	i.orders.start(i.runCtx, &i.wg, i.poke)
	i.plans.start(i.runCtx, &i.wg, i.poke)
}

func (i *Issuer) poke() {
	select {
	case i.wake <- struct{}{}:
	default:
	}
}

// dispatch submits due certificates to their pools and returns how long
// to sleep before the next pass.
func (i *Issuer) dispatch(ctx context.Context) time.Duration {
	now := i.opts.Now()
	// Look at least this often: another instance may have added work.
	wait := min(i.opts.DelegationRecheck, time.Minute)
	waiting := false
	for _, k := range []struct {
		status Status
		q      *workQueue
	}{
		{StatusProcessing, i.orders}, {StatusFailed, i.orders},
		{StatusActive, i.plans}, {StatusPendingDelegation, i.checks},
		// Any other status (revoked) is planned to fix its index entry.
		{StatusRevoked, i.plans},
	} {
		free := k.q.free()
		if free == 0 {
			waiting = true
			continue
		}
		queued, running := k.q.depth()
		// Names already queued come back too: ask for enough beyond them.
		due, err := i.store.DueCertificates(ctx, now, string(k.status), free+queued+running)
		if err != nil {
			if ctx.Err() == nil {
				i.log.Error("scheduler: due certificates", "status", k.status, "err", err)
			}
			waiting = true
			continue
		}
		for _, d := range due {
			// Work here or elsewhere (another instance's lease) is
			// looked at again soon: a dead holder's lease expires.
			waiting = true
			if i.busyHere(d.Name) {
				continue
			}
			k.q.submit(d.Name)
		}
	}
	if waiting {
		wait = min(wait, i.leasePoll())
	}
	next, err := i.store.NextActionAfter(ctx, now)
	if err == nil && !next.IsZero() {
		wait = min(wait, next.Sub(now))
	}
	return wait
}

// nextAction is when c next needs work, the scheduler's index.
func (i *Issuer) nextAction(c store.Certificate, now time.Time) time.Time {
	switch Status(c.Status) {
	case StatusPendingDelegation:
		if c.NextAction.After(now) {
			return c.NextAction
		}
		return now.Add(i.recheckDelay(c.CheckFailures))
	case StatusProcessing:
		if c.NextAttempt.IsZero() {
			return now
		}
		return c.NextAttempt
	case StatusFailed:
		return c.NextAttempt
	case StatusActive:
		if c.CertPEM == "" && c.Serial == "" {
			return time.Time{}
		}
		info := i.renewInfoAt(c)
		if c.RenewAt.IsZero() || info.IsZero() {
			return now
		}
		return minTime(c.RenewAt, info)
	}
	return time.Time{}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// maxCheckBackoff caps the re-check interval of a customer whose servers
// keep failing to answer.
const maxCheckBackoff = time.Hour

// recheckDelay is the wait before the next delegation check after
// failures consecutive unanswered ones: DelegationRecheck, doubling per
// failure up to an hour (never below DelegationRecheck), with ±10% jitter
// so checks of a batch created together spread out.
func (i *Issuer) recheckDelay(failures int) time.Duration {
	d := i.opts.DelegationRecheck
	for k := 0; k < failures && d < maxCheckBackoff; k++ {
		d *= 2
	}
	d = max(min(d, maxCheckBackoff), i.opts.DelegationRecheck)
	jitter := time.Duration(rand.Int64N(int64(d/5) + 1))
	return d - d/10 + jitter
}

// planDue is the planning pool's work on an active certificate whose
// next action came: start its renewal, ask the CA's renewal information
// again, or fix its index entry (a certificate planned before the index
// existed, a revoked one).
func (i *Issuer) planDue(_ context.Context, name string) {
	i.withClaim(name, func(ctx context.Context) bool {
		c, err := i.store.CertificateByName(ctx, name)
		if err != nil {
			return false
		}
		now := i.opts.Now()
		if c.NextAction.IsZero() || c.NextAction.After(now) {
			return false // planned meanwhile
		}
		if Status(c.Status) != StatusActive || c.CertPEM == "" {
			if err := i.save(ctx, &c); err != nil {
				i.log.Error("scheduler: recording next action", "cert", name, "err", err)
			}
			return Status(c.Status) == StatusProcessing
		}
		if !c.RenewAt.IsZero() && !c.RenewAt.After(now) {
			c.Status, c.NextAttempt, c.Attempts = string(StatusProcessing), time.Time{}, 0
			if err := i.save(ctx, &c); err != nil {
				i.log.Error("starting renewal failed", "cert", name, "err", err)
				return false
			}
			i.log.Info("renewal starting", "cert", name, "force", false, "renew_at", c.RenewAt)
			return true
		}
		if info := i.renewInfoAt(c); c.RenewAt.IsZero() || info.IsZero() || !info.After(now) {
			i.schedule(ctx, &c)
			return false
		}
		if err := i.save(ctx, &c); err != nil {
			i.log.Error("scheduler: recording next action", "cert", name, "err", err)
		}
		return false
	})
}
