package httpapi

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ran is where a test job ran.
type ran struct {
	tid    int
	policy uint32
}

func whereItRuns(t *testing.T) func() ran {
	return func() ran { return ran{unix.Gettid(), threadPolicy(t)} }
}

// TestLowPriorityPool: fn runs on another thread under SCHED_IDLE, and
// neither the caller's thread nor a later goroutine inherits it.
func TestLowPriorityPool(t *testing.T) {
	pool := newLowPriorityPool(2)
	pool.setStallAfter(time.Hour) // the policy is the lowered workers'; no rescue
	defer pool.close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	callerTID := unix.Gettid()
	before := threadPolicy(t)

	got, err := runPool(context.Background(), pool, whereItRuns(t))
	if err != nil {
		t.Fatal(err)
	}
	if got.tid == callerTID {
		t.Fatal("fn ran on the caller's thread")
	}
	if got.policy != unix.SCHED_IDLE {
		t.Fatalf("fn ran under scheduling policy %d, want SCHED_IDLE (%d)", got.policy, unix.SCHED_IDLE)
	}
	if p := threadPolicy(t); p != before {
		t.Fatalf("caller's policy changed from %d to %d", before, p)
	}

	// Many goroutines afterwards: none may land on a lowered thread,
	// because the workers keep theirs locked.
	for range 50 {
		ch := make(chan uint32)
		go func() { ch <- threadPolicy(t) }()
		if p := <-ch; p != before {
			t.Fatalf("a later goroutine ran under policy %d, want %d", p, before)
		}
	}
}

// threadPolicy is the calling thread's scheduling policy.
func threadPolicy(t *testing.T) uint32 {
	t.Helper()
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Error(err)
		return 0
	}
	return attr.Policy
}

// TestLowPriorityPoolBoundsAndStops: no more functions run at once than
// there are workers, a caller waiting for a worker gives up with its
// context, and after close nothing more runs.
func TestLowPriorityPoolBoundsAndStops(t *testing.T) {
	pool := newLowPriorityPool(1)
	pool.setStallAfter(time.Hour) // the bound is the lowered workers'; no rescue
	release := make(chan struct{})
	firstDone := hold(pool, release)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var ran atomic.Bool
	if _, err := runPool(ctx, pool, func() bool { ran.Store(true); return true }); !errors.Is(err, context.Canceled) || ran.Load() {
		t.Fatalf("with the only worker busy: err %v, ran %v; want context.Canceled, not run", err, ran.Load())
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}

	pool.close()
	if _, err := runPool(context.Background(), pool, func() bool { ran.Store(true); return true }); !errors.Is(err, errPoolClosed) || ran.Load() {
		t.Fatalf("after close: err %v, ran %v; want errPoolClosed, not run", err, ran.Load())
	}
}

// TestLowPriorityPoolConcurrency: with more callers than workers, exactly
// as many functions run at once as there are workers.
func TestLowPriorityPoolConcurrency(t *testing.T) {
	const workers, callers = 2, 6
	pool := newLowPriorityPool(workers)
	pool.setStallAfter(time.Hour) // a loaded CI machine may starve the lowered workers
	defer pool.close()
	var (
		mu               sync.Mutex
		running, maxSeen int
		wg               sync.WaitGroup
	)
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := runPool(context.Background(), pool, func() struct{} {
				mu.Lock()
				running++
				maxSeen = max(maxSeen, running)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				mu.Lock()
				running--
				mu.Unlock()
				return struct{}{}
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if maxSeen != workers {
		t.Fatalf("at most %d ran at once, want %d", maxSeen, workers)
	}
}

// TestLowPriorityPoolRescuesWhenStarved: a job that goes stallAfter
// without a result while no lowered worker takes or finishes anything also
// runs on the rescue worker, at the normal priority, and its result is
// returned. A lowered worker held by a job that never ends stands in for
// one the kernel never runs: the pool cannot tell them apart. Once the
// lowered worker makes progress again, jobs run there alone.
func TestLowPriorityPoolRescuesWhenStarved(t *testing.T) {
	for _, tc := range []struct {
		name string
		// busy is how many lowered workers the stuck jobs hold; with
		// fewer than the pool's size, the job itself is taken by a
		// lowered worker that then "starves" on it.
		size, stuck int
	}{
		{"no lowered worker free", 1, 1},
		{"taken by a lowered worker that starves", 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := newLowPriorityPool(tc.size)
			pool.setStallAfter(100 * time.Millisecond)
			defer pool.close()
			release := make(chan struct{})
			var held []<-chan error
			for range tc.stuck {
				held = append(held, hold(pool, release))
			}
			// The one free lowered worker (if any) takes this job and
			// blocks in it, until release, like a thread the kernel
			// never runs.
			started := time.Now()
			var calls atomic.Int32
			got, err := runPool(context.Background(), pool, func() ran {
				if calls.Add(1) == 1 && tc.size > tc.stuck {
					<-release
				}
				return ran{unix.Gettid(), threadPolicy(t)}
			})
			if err != nil {
				t.Fatal(err)
			}
			waited := time.Since(started)
			if got.policy == unix.SCHED_IDLE {
				t.Errorf("the result came from a SCHED_IDLE thread, not the rescue")
			}
			// The holding jobs go without a result too, so the rescue may
			// have run them as well.
			if pool.rescued.Load() < 1 || waited < pool.stallWait() {
				t.Errorf("rescued %d jobs after %s, want ours after at least %s", pool.rescued.Load(), waited, pool.stallWait())
			}
			close(release)
			for _, done := range held {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}

			pool.setStallAfter(time.Hour)
			want := pool.rescued.Load()
			got, err = runPool(context.Background(), pool, whereItRuns(t))
			if err != nil {
				t.Fatal(err)
			}
			if got.policy != unix.SCHED_IDLE || pool.rescued.Load() != want {
				t.Errorf("after the workers recovered: policy %d, %d rescued; want SCHED_IDLE and no new rescue (%d)", got.policy, pool.rescued.Load(), want)
			}
		})
	}
}

// TestLowPriorityPoolStallWaitFollowsJobs: a slow job (a high bcrypt cost)
// lengthens the wait before a rescue, so it is not taken for starvation.
func TestLowPriorityPoolStallWaitFollowsJobs(t *testing.T) {
	pool := newLowPriorityPool(1)
	pool.setStallAfter(10 * time.Millisecond)
	defer pool.close()
	if _, err := runPool(context.Background(), pool, func() bool { time.Sleep(50 * time.Millisecond); return true }); err != nil {
		t.Fatal(err)
	}
	// The worker records the job's time just after handing its result.
	deadline := time.Now().Add(5 * time.Second)
	for pool.stallWait() < 200*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("stallWait %s after a 50 ms job, want at least 4× that", pool.stallWait())
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

// TestLowPriorityPoolCancel: a caller whose context ends gets its error at
// once, whether its job waits for a worker or sits with one that has not
// started it, and that job never runs.
func TestLowPriorityPoolCancel(t *testing.T) {
	pool := newLowPriorityPool(1)
	pool.setStallAfter(time.Hour)
	defer pool.close()
	release := make(chan struct{})
	firstDone := hold(pool, release)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var ran atomic.Bool
	if _, err := runPool(ctx, pool, func() bool { ran.Store(true); return true }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("runPool = %v, want context.DeadlineExceeded", err)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}
	if _, err := runPool(context.Background(), pool, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if ran.Load() {
		t.Fatal("the cancelled job ran")
	}
}

// TestLowPriorityPoolFIFO: jobs start in the order they were queued, however
// long they wait. The pool used to hand jobs over an unbuffered channel from
// a select that the stall timer woke; every wake-up sent the waiting caller
// to the back of the queue, so under a steady load some callers waited many
// times longer than the queue ahead of them needed.
func TestLowPriorityPoolFIFO(t *testing.T) {
	pool := newLowPriorityPool(1)
	// Short enough that every waiter's stall check fires many times while
	// it waits; the worker finishes a job every 20 ms, so it never looks
	// starved (stallWait grows to 4× a job).
	pool.setStallAfter(5 * time.Millisecond)
	defer pool.close()
	const jobs = 24
	var (
		mu      sync.Mutex
		started []int
		seen    = map[int]bool{}
		wg      sync.WaitGroup
		done    atomic.Int32
	)
	for i := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := runPool(context.Background(), pool, func() struct{} {
				mu.Lock()
				if !seen[i] {
					seen[i] = true
					started = append(started, i)
				}
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				return struct{}{}
			})
			if err != nil {
				t.Error(err)
			}
			done.Add(1)
		}()
		// Queue in a known order: the next job only once this one is in.
		for deadline := time.Now().Add(10 * time.Second); ; {
			pool.mu.Lock()
			queued := len(pool.pending) + int(done.Load())
			pool.mu.Unlock()
			if queued > i {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %d not queued", i)
			}
			time.Sleep(100 * time.Microsecond) // polling interval
		}
	}
	wg.Wait()
	if !slices.IsSorted(started) || len(started) != jobs {
		t.Errorf("jobs started in the order %v, want the order they were queued", started)
	}
}
