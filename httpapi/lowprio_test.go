package httpapi

import (
	"context"
	"sync/atomic"
)

// hold occupies one lowered worker until release is closed, returning once
// the job runs; done receives runPool's error. Should the pool rescue the
// job, the rescue returns at once: only the lowered worker stays held.
func hold(pool *lowPriorityPool, release <-chan struct{}) (done <-chan error) {
	started := make(chan struct{})
	errs := make(chan error, 1)
	var runs atomic.Int32
	go func() {
		_, err := runPool(context.Background(), pool, func() struct{} {
			if runs.Add(1) == 1 {
				close(started)
				<-release
			}
			return struct{}{}
		})
		errs <- err
	}()
	<-started
	return errs
}
