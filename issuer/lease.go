package issuer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/delegated/delegated/store"
)

// Leaser is the store's lease: several instances on one database work each
// certificate one at a time. A lease held by an instance that died expires
// after its ttl, and another instance takes the work over.
type Leaser interface {
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (token int64, err error)
	RenewLease(ctx context.Context, name, holder string, token int64, ttl time.Duration) error
	ReleaseLease(ctx context.Context, name, holder string, token int64) error
}

// DefaultLeaseTTL is how long a certificate's lease outlives its holder.
// Holders renew every third of it, and every instance's scheduler looks
// again as often while work is pending, so a dead holder's certificate is
// taken over within about 1⅓ ttl (under 20 s at the default).
const DefaultLeaseTTL = 10 * time.Second

// leaseName is the lease guarding the certificate called name.
func leaseName(cert string) string { return "cert:" + cert }

// hold is this process's claim on one certificate: the lease's fencing
// token and the context of the work it guards, cancelled when the lease is
// lost (the work must stop: another instance may be doing it).
type hold struct {
	token  int64
	ctx    context.Context
	cancel context.CancelFunc
	stop   chan struct{}
	done   chan struct{}
}

// acquire takes name's lease for this instance. It reports false when
// another instance holds it or the store failed (logged): either way the
// caller must not work on name now.
func (i *Issuer) acquire(name string) (*hold, bool) {
	ctx, cancel := context.WithTimeout(i.runCtx, i.opts.LeaseTTL)
	defer cancel()
	token, err := i.leases.AcquireLease(ctx, leaseName(name), i.opts.InstanceID, i.opts.LeaseTTL)
	if err != nil {
		if !errors.Is(err, store.ErrLeaseHeld) && i.runCtx.Err() == nil {
			i.log.Warn("certificate lease unavailable", "cert", name, "err", err)
		}
		return nil, false
	}
	h := &hold{token: token, stop: make(chan struct{}), done: make(chan struct{})}
	h.ctx, h.cancel = context.WithCancel(i.runCtx)
	go i.keep(name, h)
	return h, true
}

// keep renews h's lease every third of its ttl until h is given up. When
// the lease is lost, or cannot be renewed before it would expire (the
// database is unreachable), the guarded work is cancelled: past that
// moment another instance may have taken the certificate over.
func (i *Issuer) keep(name string, h *hold) {
	defer close(h.done)
	ttl := i.opts.LeaseTTL
	t := time.NewTicker(ttl / 3)
	defer t.Stop()
	renewed := time.Now()
	for {
		select {
		case <-h.stop:
			return
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(h.ctx, ttl/3)
		err := i.leases.RenewLease(ctx, leaseName(name), i.opts.InstanceID, h.token, ttl)
		cancel()
		switch {
		case err == nil:
			renewed = time.Now()
		case errors.Is(err, store.ErrLeaseLost) || time.Since(renewed) >= ttl:
			if h.ctx.Err() == nil {
				i.log.Error("certificate lease lost; stopping work on it", "cert", name, "token", h.token, "err", err)
			}
			h.cancel()
			return
		default:
			i.log.Warn("renewing certificate lease failed; retrying", "cert", name, "err", err)
		}
	}
}

// give stops renewing h and releases its lease, so another instance may
// take the certificate at once rather than after the ttl.
func (i *Issuer) give(name string, h *hold) {
	close(h.stop)
	<-h.done
	h.cancel()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(i.runCtx), i.opts.LeaseTTL/3)
	defer cancel()
	if err := i.leases.ReleaseLease(ctx, leaseName(name), i.opts.InstanceID, h.token); err != nil {
		// It expires by itself.
		i.log.Warn("releasing certificate lease failed", "cert", name, "err", err)
	}
}

// leasePoll is how often the scheduler looks again at a certificate whose
// work is due or under way, so a dead holder's lease is taken over soon
// after it expires.
func (i *Issuer) leasePoll() time.Duration { return i.opts.LeaseTTL / 3 }

// due reports whether c is still waiting for an attempt at now: processing
// (and past its retry moment), or a failed renewal whose next attempt has
// come. An attempt re-reads its certificate under the lease and checks this,
// so an instance never orders again what another has just finished.
func due(c store.Certificate, now time.Time) bool {
	switch Status(c.Status) {
	case StatusProcessing:
		return !c.NextAttempt.After(now)
	case StatusFailed:
		return !c.NextAttempt.IsZero() && !c.NextAttempt.After(now)
	}
	return false
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

// busyHere reports whether this process works on name now, or has a
// check result for it not yet written.
func (i *Issuer) busyHere(name string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.busy[name] != nil || i.flushing[name]
}

// withClaim runs fn under name's claim; false when the claim was not had
// (busy here or leased by another instance). An order fn asks for is queued
// once the claim is released, so the worker can take it.
func (i *Issuer) withClaim(name string, fn func(ctx context.Context) (order bool)) bool {
	if !i.claim(name) {
		return false
	}
	i.mu.Lock()
	ctx := i.busy[name].ctx
	i.mu.Unlock()
	order := fn(ctx)
	i.release(name)
	if order {
		i.queueOrder(name)
	}
	return true
}

// save records c, fenced: only while this instance still holds its lease,
// checked in the write's own transaction, which also renews the lease. A
// write must not happen once another instance may have taken the
// certificate over (the lease could have run out since keep's last
// renewal, e.g. while this process was paused or a deploy hook ran). A lost
// lease cancels the guarded work. A shutdown does not stop the write: an
// interrupted order must still be recorded to be resumed. save sets
// c.NextAction, the scheduler's index, from c's state.
func (i *Issuer) save(ctx context.Context, c *store.Certificate) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), i.opts.LeaseTTL/3)
	defer cancel()
	i.mu.Lock()
	h := i.busy[c.Name]
	i.mu.Unlock()
	if h == nil || h.done == nil {
		return fmt.Errorf("issuer: %s: %w (not claimed)", c.Name, store.ErrLeaseLost)
	}
	c.NextAction = i.nextAction(*c, i.opts.Now())
	f := store.Fence{Lease: leaseName(c.Name), Holder: i.opts.InstanceID, Token: h.token, TTL: i.opts.LeaseTTL}
	if err := i.store.SaveCertificateFenced(ctx, *c, f); err != nil {
		if errors.Is(err, store.ErrLeaseLost) {
			h.cancel()
		}
		return err
	}
	return nil
}

// fence is the store fence of this process's claim on name.
func (i *Issuer) fence(name string) (store.Fence, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	h := i.busy[name]
	if h == nil || h.done == nil {
		return store.Fence{}, false
	}
	return store.Fence{Lease: leaseName(name), Holder: i.opts.InstanceID, Token: h.token, TTL: i.opts.LeaseTTL}, true
}
