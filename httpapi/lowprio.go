package httpapi

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// errPoolClosed is returned by run after the API was shut down.
var errPoolClosed = errors.New("httpapi: shutting down")

// defaultStallAfter is the shortest time a job may go without a result,
// while no low-priority worker takes or finishes anything, before the pool
// is taken to be starved. bcrypt at cost 10 takes 50–100 ms on a worker
// that gets the CPU at all; the wait grows with slower jobs (4× the last
// one a lowered worker finished).
const defaultStallAfter = 500 * time.Millisecond

// lowPriorityPool runs CPU-heavy work, bcrypt, on goroutines that are each
// locked for life to an OS thread whose scheduling priority is lowered. On a
// machine with as many busy cores as Ps, a flood of wrong-key /update calls
// would otherwise compete as an equal with the DNS readers, and the kernel
// would run a DNS answer only after a bcrypt time slice.
//
// The workers live as long as the pool: a thread at the lowest priority that
// exits hands its P over while it can barely get the CPU, and in bench/dns a
// thread per call held a DNS reader up for milliseconds that way.
//
// A lowered thread runs only when nothing else wants the CPU, so another
// process that keeps every core busy starves it: with one busy loop beside
// the server on its CPU, a /register took 16 s, its bcrypt getting about
// 0.3% of the CPU. So when a job has gone without a result for stallAfter
// while no lowered worker took or finished anything, a rescue worker at the
// normal priority runs it too, and the first result wins (the lowered
// thread cannot be raised again without CAP_SYS_NICE, nor its goroutine
// moved). A flood on an otherwise quiet machine never calls the rescue
// (the lowered workers keep finishing jobs), and it runs one job at a
// time, so it costs DNS at most one thread's fair share.
type lowPriorityPool struct {
	size      int
	jobs      chan *poolJob // to the lowered workers
	rescue    chan *poolJob // to the rescue worker
	closed    chan struct{}
	closeOnce sync.Once

	// stallAfter is the least wait before a rescue; tests change it
	// before the first run.
	stallAfter time.Duration
	// lastActivity is when a lowered worker last took or finished a job
	// (UnixNano): proof that the lowered threads get the CPU.
	lastActivity atomic.Int64
	// lastJob is how long the last job a lowered worker finished took.
	lastJob atomic.Int64
	// rescued counts jobs the rescue worker ran.
	rescued atomic.Int64
}

// poolJob is a computation and where its results go. It may run twice
// (lowered and rescue workers), so it must not write shared state.
type poolJob struct {
	exec func()
	// settled is set once the caller has its result or gave up; a worker
	// that reaches the job afterwards skips it.
	settled atomic.Bool
}

// newLowPriorityPool starts size lowered workers and the rescue worker.
func newLowPriorityPool(size int) *lowPriorityPool {
	p := &lowPriorityPool{
		size:       size,
		stallAfter: defaultStallAfter,
		jobs:       make(chan *poolJob),
		rescue:     make(chan *poolJob),
		closed:     make(chan struct{}),
	}
	p.lastActivity.Store(time.Now().UnixNano())
	for range size {
		go p.work()
	}
	go p.rescueWork()
	return p
}

func (p *lowPriorityPool) work() {
	// Never unlocked: a goroutine that exits while locked takes its thread
	// with it, so no other goroutine ever runs on a lowered thread.
	runtime.LockOSThread()
	lowerThreadPriority()
	for {
		select {
		case j := <-p.jobs:
			started := time.Now()
			p.lastActivity.Store(started.UnixNano())
			if j.settled.Load() {
				continue
			}
			j.exec()
			p.lastJob.Store(int64(time.Since(started)))
			p.lastActivity.Store(time.Now().UnixNano())
		case <-p.closed:
			return
		}
	}
}

// rescueWork runs on an ordinary goroutine: a thread of its own at a
// lowered priority would, when starved mid-job, hold its P, and the
// runtime's stop-the-world phases wait for every P. In bench/dns with a busy
// loop beside the server, a rescue locked to a nice-19 thread gave DNS a
// p99 of 233 ms under a wrong-key flood (nice 10: 51 ms, this: 24 ms).
func (p *lowPriorityPool) rescueWork() {
	for {
		select {
		case j := <-p.rescue:
			if !j.settled.Load() {
				p.rescued.Add(1)
				j.exec()
			}
		case <-p.closed:
			return
		}
	}
}

// stallWait is how long a job waits for a result before the starvation
// check: at least stallAfter, and 4× the last job a lowered worker did, so
// that a high bcrypt cost is not mistaken for starvation.
func (p *lowPriorityPool) stallWait() time.Duration {
	return max(p.stallAfter, 4*time.Duration(p.lastJob.Load()))
}

// starved reports whether no lowered worker has taken or finished a job
// within stallWait.
func (p *lowPriorityPool) starved() bool {
	return time.Since(time.Unix(0, p.lastActivity.Load())) >= p.stallWait()
}

// runPool runs fn on a pool worker and returns its result. ctx and close
// end the wait; a computation already running then finishes unseen. fn
// must only compute (bcrypt does): under starvation it runs twice.
func runPool[T any](ctx context.Context, p *lowPriorityPool, fn func() T) (T, error) {
	results := make(chan T, 2) // one per worker that may run it: none blocks
	j := &poolJob{exec: func() { results <- fn() }}
	defer j.settled.Store(true)
	var zero T
	stall := time.NewTimer(p.stallWait())
	defer stall.Stop()
	handed, rescued := false, false
	for {
		var jobs chan *poolJob
		if !handed {
			jobs = p.jobs
		}
		select {
		case jobs <- j:
			handed = true
		case r := <-results:
			return r, nil
		case <-stall.C:
			if !rescued && p.starved() {
				// No more offers to the lowered workers: they are held up.
				handed, rescued = true, true
				select {
				case p.rescue <- j:
				case r := <-results:
					return r, nil
				case <-ctx.Done():
					return zero, ctx.Err()
				case <-p.closed:
					return zero, errPoolClosed
				}
				continue
			}
			stall.Reset(p.stallWait())
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-p.closed:
			return zero, errPoolClosed
		}
	}
}

// close stops the workers once they finish what they run.
func (p *lowPriorityPool) close() {
	p.closeOnce.Do(func() { close(p.closed) })
}
