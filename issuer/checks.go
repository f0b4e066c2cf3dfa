package issuer

import (
	"context"

	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/delegated/delegated/store"
)

// Delegation checks: the check pool's work, the outcome applied to a
// certificate, and the batched writer of outcomes that change nothing but
// the message and the next check.

// recheckDue is the check pool's work on a pending certificate whose
// re-check came.
func (i *Issuer) recheckDue(ctx context.Context, name string) {
	c, err := i.store.CertificateByName(ctx, name)
	if err != nil {
		return
	}
	now := i.opts.Now()
	if Status(c.Status) != StatusPendingDelegation || c.NextAction.IsZero() || c.NextAction.After(now) {
		return // checked or changed meanwhile
	}
	if _, err := i.checkAndApply(ctx, c, false); err != nil && ctx.Err() == nil {
		i.log.Warn("delegation re-check failed", "cert", name, "err", err)
	}
}

// checkAndApply checks c's delegation. A pending certificate whose
// delegation is now in place moves to processing (under its lease) and its
// order is queued; one still pending records the outcome, with backoff
// when the customer's servers did not answer: at once with wait, else
// through the batched writer.
func (i *Issuer) checkAndApply(ctx context.Context, c store.Certificate, wait bool) ([]Delegation, error) {
	dels, err := i.assignFor(ctx, c.Domains, methodOf(c), c.CAPin)
	if err != nil {
		return nil, err
	}
	i.checkDelegations(ctx, dels)
	if ctx.Err() != nil || Status(c.Status) != StatusPendingDelegation {
		return dels, ctx.Err()
	}
	derr := delegationError(dels)
	if derr == nil {
		var serr error
		i.withClaim(c.Name, func(ctx context.Context) bool {
			// Re-read under the claim: the row may have changed meanwhile.
			cur, err := i.store.CertificateByName(ctx, c.Name)
			if err != nil || Status(cur.Status) != StatusPendingDelegation {
				serr = err
				return false
			}
			if serr = i.applyDelegation(ctx, &cur, dels); serr != nil {
				return false
			}
			i.log.Info("delegation in place", "cert", c.Name)
			return Status(cur.Status) == StatusProcessing
		})
		return dels, serr
	}
	failures := 0
	if unanswered(dels) {
		failures = c.CheckFailures + 1
	}
	delay := i.recheckDelay(failures)
	msg := derr.Error()
	if failures > 0 {
		msg += fmt.Sprintf("\n  no answer for %d check(s) in a row; next check in %s (backing off)", failures, delay.Round(time.Second))
	}
	r := store.CheckResult{Name: c.Name, Seen: c.UpdatedAt, LastError: msg, CheckFailures: failures, NextAction: i.opts.Now().Add(delay)}
	if failures > 0 && failures != c.CheckFailures {
		i.log.Info("delegation check got no answer; backing off", "cert", c.Name, "failures", failures, "next_check", r.NextAction.UTC().Format(time.RFC3339))
	}
	if wait {
		_, err := i.store.RecordChecks(ctx, []store.CheckResult{r}, string(StatusPendingDelegation))
		return dels, err
	}
	i.mu.Lock()
	i.flushing[c.Name] = true
	i.mu.Unlock()
	select {
	case i.results <- r:
	case <-i.runCtx.Done():
	}
	return dels, nil
}

// unanswered reports whether a check failed because a server did not
// answer (or answered SERVFAIL), rather than answering wrong.
func unanswered(dels []Delegation) bool {
	for _, d := range dels {
		if !d.OK && d.Problem == ProblemResolve {
			return true
		}
	}
	return false
}

// resultBatch bounds one commit of check results; resultFlush is the
// longest a result waits for its commit.
const (
	resultBatch = 512
	resultFlush = 50 * time.Millisecond
)

// writeResults commits check results in batches until the issuer stops.
func (i *Issuer) writeResults() {
	var batch []store.CheckResult
	flush := func() {
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(i.runCtx), 30*time.Second)
		if _, err := i.store.RecordChecks(ctx, batch, string(StatusPendingDelegation)); err != nil {
			i.log.Error("recording delegation checks failed", "count", len(batch), "err", err)
		}
		cancel()
		i.mu.Lock()
		for _, r := range batch {
			delete(i.flushing, r.Name)
		}
		i.mu.Unlock()
		batch = batch[:0]
	}
	t := time.NewTicker(resultFlush)
	defer t.Stop()
	for {
		select {
		case r := <-i.results:
			batch = append(batch, r)
			if len(batch) >= resultBatch {
				flush()
			}
		case <-t.C:
			flush()
		case <-i.runCtx.Done():
			for {
				select {
				case r := <-i.results:
					batch = append(batch, r)
				default:
					flush()
					return
				}
			}
		}
	}
}

// applyDelegation sets status from a delegation check and saves c (its
// claim is held).
func (i *Issuer) applyDelegation(ctx context.Context, c *store.Certificate, dels []Delegation) error {
	derr := delegationError(dels)
	c.CheckFailures = 0
	if derr != nil {
		c.Status = string(StatusPendingDelegation)
		c.LastError = derr.Error()
		c.NextAction = time.Time{}
		i.log.Info("certificate pending delegation", "cert", c.Name, "status", StatusPendingDelegation, "reason", derr.Error())
	} else {
		c.Status = string(StatusProcessing)
		c.LastError = ""
		if w := delegationWarnings(dels); w != "" {
			// In place for every resolver (and so for the CA); the
			// operator still learns that the zone's servers are odd.
			c.LastError = "warning: " + w
			i.log.Warn("delegation in place, but not every authoritative server answered", "cert", c.Name, "warning", w)
		}
	}
	if err := i.save(ctx, c); err != nil {
		return err
	}
	st := Status(c.Status)
	i.publish(c.Name, Event{Step: StepDelegation, OK: derr == nil, Detail: delegationSummary(dels), Error: errString(derr)})
	if derr != nil {
		i.publish(c.Name, Event{Step: StepDone, Status: st, Error: derr.Error()})
	}
	return nil
}

func delegationWarnings(dels []Delegation) string {
	var w []string
	for _, d := range dels {
		if d.Warning != "" {
			w = append(w, d.Name+": "+d.Warning)
		}
	}
	return strings.Join(w, "; ")
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
