package httpapi

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLowPriorityPool: fn runs on another thread under SCHED_IDLE, and
// neither the caller's thread nor a later goroutine inherits it.
func TestLowPriorityPool(t *testing.T) {
	pool := newLowPriorityPool(2)
	defer pool.close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	callerTID := unix.Gettid()
	before := threadPolicy(t)

	var fnTID int
	var fnPolicy uint32
	if err := pool.run(context.Background(), func() {
		fnTID = unix.Gettid()
		fnPolicy = threadPolicy(t)
	}); err != nil {
		t.Fatal(err)
	}
	if fnTID == callerTID {
		t.Fatal("fn ran on the caller's thread")
	}
	if fnPolicy != unix.SCHED_IDLE {
		t.Fatalf("fn ran under scheduling policy %d, want SCHED_IDLE (%d)", fnPolicy, unix.SCHED_IDLE)
	}
	if got := threadPolicy(t); got != before {
		t.Fatalf("caller's policy changed from %d to %d", before, got)
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
	started, release := make(chan struct{}), make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- pool.run(context.Background(), func() {
			close(started)
			<-release
		})
	}()
	<-started

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ran := false
	if err := pool.run(ctx, func() { ran = true }); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("with the only worker busy: err %v, ran %v; want context.Canceled, not run", err, ran)
	}
	close(release)
	if err := <-firstDone; err != nil {
		t.Fatal(err)
	}

	pool.close()
	if err := pool.run(context.Background(), func() { ran = true }); !errors.Is(err, errPoolClosed) || ran {
		t.Fatalf("after close: err %v, ran %v; want errPoolClosed, not run", err, ran)
	}
}

// TestLowPriorityPoolConcurrency: with more callers than workers, exactly
// as many functions run at once as there are workers.
func TestLowPriorityPoolConcurrency(t *testing.T) {
	const workers, callers = 2, 6
	pool := newLowPriorityPool(workers)
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
			err := pool.run(context.Background(), func() {
				mu.Lock()
				running++
				maxSeen = max(maxSeen, running)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				mu.Lock()
				running--
				mu.Unlock()
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
