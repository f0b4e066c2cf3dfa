package issuer

import (
	"context"
	"sync"
	"sync/atomic"
)

// workQueue is a fixed number of workers taking certificate names from a
// bounded queue, each name at most once at a time (certmagic's jobManager,
// client-go's workqueue). The scheduler only decides and submits; slow
// work (DNS, the CA) runs here, so one slow certificate holds one worker
// and nothing else.
type workQueue struct {
	name    string
	workers int
	fn      func(ctx context.Context, name string)
	ch      chan string
	running atomic.Int64
	poke    func()

	mu      sync.Mutex
	pending map[string]bool // queued or running
	started bool
}

func newWorkQueue(name string, workers, capacity int, fn func(ctx context.Context, name string)) *workQueue {
	return &workQueue{name: name, workers: workers, fn: fn, ch: make(chan string, capacity), pending: map[string]bool{}}
}

// start runs the workers until ctx ends; wg tracks them. Calling it again
// does nothing.
func (q *workQueue) start(ctx context.Context, wg *sync.WaitGroup, poke func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return
	}
	q.started, q.poke = true, poke
	for range q.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case name := <-q.ch:
					q.running.Add(1)
					q.fn(ctx, name)
					q.running.Add(-1)
					q.mu.Lock()
					delete(q.pending, name)
					q.mu.Unlock()
					// Room again: the scheduler may hand out more.
					if len(q.ch) < cap(q.ch)/2 {
						q.poke()
					}
				}
			}
		}()
	}
}

// submit queues name unless it is queued or running already, or the queue
// is full (the scheduler finds it again: it is still due).
func (q *workQueue) submit(name string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.pending[name] {
		return false
	}
	select {
	case q.ch <- name:
		q.pending[name] = true
		return true
	default:
		return false
	}
}

// free is how many more names the queue takes now.
func (q *workQueue) free() int { return cap(q.ch) - len(q.ch) }

// depth returns how many names wait and how many are being worked on.
func (q *workQueue) depth() (queued, running int) {
	return len(q.ch), int(q.running.Load())
}
