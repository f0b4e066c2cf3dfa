package httpapi

import (
	"context"
	"errors"
	"runtime"
	"slices"
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
//
// Jobs wait in one queue in arrival order, and every worker, the rescue
// included, takes the oldest job it may run: a job keeps its place
// whatever happens around it. The first version handed jobs over an
// unbuffered channel from a select that a stall timer woke every half
// second; each wake-up sent the waiting caller to the back of the channel's
// queue, and 50 concurrent registrations saw a p50 of 0.56 s but a p95 of
// 21.8 s.
type lowPriorityPool struct {
	mu   sync.Mutex
	cond *sync.Cond // signalled when a job is queued or the pool closes
	// pending are the jobs without a result, oldest first.
	pending  []*poolJob
	isClosed bool
	closed   chan struct{}
	// rescueWake wakes the rescue worker when a job is queued.
	rescueWake chan struct{}

	// stallAfter is the least wait before a rescue (nanoseconds).
	stallAfter atomic.Int64
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
	// queued is when the job was queued; the rescue waits stallWait from
	// it before running a job.
	queued time.Time
	// taken and rescued say which workers ran or run it; settled is set
	// once the caller has its result or gave up. All under the pool's mu.
	taken, rescued, settled bool
}

// newLowPriorityPool starts size lowered workers and the rescue worker.
func newLowPriorityPool(size int) *lowPriorityPool {
	p := &lowPriorityPool{
		closed:     make(chan struct{}),
		rescueWake: make(chan struct{}, 1),
	}
	p.cond = sync.NewCond(&p.mu)
	p.stallAfter.Store(int64(defaultStallAfter))
	p.lastActivity.Store(time.Now().UnixNano())
	for range size {
		go p.work()
	}
	go p.rescueWork()
	return p
}

// setStallAfter changes the least wait before a rescue (tests).
func (p *lowPriorityPool) setStallAfter(d time.Duration) { p.stallAfter.Store(int64(d)) }

// next waits for the oldest job no lowered worker has taken and takes it;
// nil once the pool is closed.
func (p *lowPriorityPool) next() *poolJob {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if p.isClosed {
			return nil
		}
		for _, j := range p.pending {
			if !j.taken && !j.settled {
				j.taken = true
				return j
			}
		}
		p.cond.Wait()
	}
}

func (p *lowPriorityPool) work() {
	// Never unlocked: a goroutine that exits while locked takes its thread
	// with it, so no other goroutine ever runs on a lowered thread.
	runtime.LockOSThread()
	lowerThreadPriority()
	for {
		j := p.next()
		if j == nil {
			return
		}
		started := time.Now()
		p.lastActivity.Store(started.UnixNano())
		j.exec()
		p.lastJob.Store(int64(time.Since(started)))
		p.lastActivity.Store(time.Now().UnixNano())
	}
}

// rescueWork runs on an ordinary goroutine: a thread of its own at a
// lowered priority would, when starved mid-job, hold its P, and the
// runtime's stop-the-world phases wait for every P. In bench/dns with a busy
// loop beside the server, a rescue locked to a nice-19 thread gave DNS a
// p99 of 233 ms under a wrong-key flood (nice 10: 51 ms, this: 24 ms).
//
// It runs the oldest job it has not run yet, whether waiting or held by a
// lowered worker, once that job has waited stallWait while no lowered
// worker took or finished anything; the first result wins.
func (p *lowPriorityPool) rescueWork() {
	for {
		j, wait := p.rescuable()
		if j != nil {
			p.rescued.Add(1)
			j.exec()
			continue
		}
		var t *time.Timer
		var timer <-chan time.Time
		if wait > 0 {
			t = time.NewTimer(wait)
			timer = t.C
		}
		select {
		case <-p.rescueWake:
		case <-timer:
		case <-p.closed:
			return
		}
		if t != nil {
			t.Stop()
		}
	}
}

// rescuable takes the job the rescue should run now, or says how long to
// wait before looking again (0: until a job is queued).
func (p *lowPriorityPool) rescuable() (*poolJob, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, j := range p.pending {
		if j.rescued || j.settled {
			continue
		}
		stall := p.stallWait()
		if waited := time.Since(j.queued); waited < stall {
			return nil, stall - waited
		}
		if !p.starved() {
			// The lowered workers are moving; look again later.
			return nil, stall
		}
		j.rescued = true
		return j, 0
	}
	return nil, 0
}

// stallWait is how long a job waits for a result before the starvation
// check: at least stallAfter, and 4× the last job a lowered worker did, so
// that a high bcrypt cost is not mistaken for starvation.
func (p *lowPriorityPool) stallWait() time.Duration {
	return max(time.Duration(p.stallAfter.Load()), 4*time.Duration(p.lastJob.Load()))
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
	j := &poolJob{exec: func() { results <- fn() }, queued: time.Now()}
	var zero T
	p.mu.Lock()
	if p.isClosed {
		p.mu.Unlock()
		return zero, errPoolClosed
	}
	p.pending = append(p.pending, j)
	p.cond.Signal()
	p.mu.Unlock()
	select {
	case p.rescueWake <- struct{}{}:
	default:
	}
	defer p.settle(j)
	select {
	case r := <-results:
		return r, nil
	case <-ctx.Done():
		return zero, ctx.Err()
	case <-p.closed:
		return zero, errPoolClosed
	}
}

// settle removes a job that has its result or whose caller gave up; a
// worker that has not started it never will.
func (p *lowPriorityPool) settle(j *poolJob) {
	p.mu.Lock()
	defer p.mu.Unlock()
	j.settled = true
	if i := slices.Index(p.pending, j); i >= 0 {
		p.pending = slices.Delete(p.pending, i, i+1)
	}
}

// close stops the workers once they finish what they run.
func (p *lowPriorityPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed {
		return
	}
	p.isClosed = true
	close(p.closed)
	p.cond.Broadcast()
}
