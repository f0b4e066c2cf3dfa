package httpapi

import (
	"context"
	"errors"
	"runtime"
	"sync"
)

// errPoolClosed is returned by run after the API was shut down.
var errPoolClosed = errors.New("httpapi: shutting down")

// lowPriorityPool runs CPU-heavy work, bcrypt, on goroutines that are each
// locked for life to an OS thread whose scheduling priority is lowered. On a
// machine with as many busy cores as Ps, a flood of wrong-key /update calls
// would otherwise compete as an equal with the DNS readers, and the kernel
// would run a DNS answer only after a bcrypt time slice.
//
// The workers live as long as the pool: a thread at the lowest priority that
// exits hands its P over while it can barely get the CPU, and in bench/dns a
// thread per call held a DNS reader up for milliseconds that way.
type lowPriorityPool struct {
	size      int
	jobs      chan func()
	closed    chan struct{}
	closeOnce sync.Once
}

// newLowPriorityPool starts size workers.
func newLowPriorityPool(size int) *lowPriorityPool {
	p := &lowPriorityPool{size: size, jobs: make(chan func()), closed: make(chan struct{})}
	for range size {
		go p.work()
	}
	return p
}

func (p *lowPriorityPool) work() {
	// Never unlocked: a goroutine that exits while locked takes its thread
	// with it, so no other goroutine ever runs on a lowered thread.
	runtime.LockOSThread()
	lowerThreadPriority()
	for {
		select {
		case job := <-p.jobs:
			job()
		case <-p.closed:
			return
		}
	}
}

// run runs fn on a worker and waits for it to finish. Only the wait for a
// free worker can be cut short by ctx: fn writes the caller's variables, so
// run returns only once fn is done or was never started.
func (p *lowPriorityPool) run(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	job := func() {
		defer close(done)
		fn()
	}
	select {
	case p.jobs <- job:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closed:
		return errPoolClosed
	}
	<-done
	return nil
}

// close stops the workers once they finish what they run.
func (p *lowPriorityPool) close() {
	p.closeOnce.Do(func() { close(p.closed) })
}
