package dnsserver

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// errIO is a batchIO whose recv returns the queued errors in turn, then
// blocks until the test ends: the kernel errors serveBatches must tell
// apart, without a socket that can produce them on demand.
type errIO struct {
	errs  []error
	calls int
	done  chan struct{}
}

func (e *errIO) recv() (int, error) {
	e.calls++
	if len(e.errs) == 0 {
		<-e.done
		return 0, fmt.Errorf("recvmmsg: %w", syscall.EBADF)
	}
	err := e.errs[0]
	e.errs = e.errs[1:]
	return 0, err
}
func (e *errIO) msg(int) ([]byte, netip.Addr) { return nil, netip.Addr{} }
func (e *errIO) from(int) netip.AddrPort      { return netip.AddrPort{} }
func (e *errIO) outBuf(int) []byte            { return nil }
func (e *errIO) reply(int, []byte)            {}
func (e *errIO) flush() error                 { return nil }

// TestServeBatchesStopsOnPermanentError: a reader that gets an error that
// will not pass (EBADF, ENOTSOCK) returns instead of spinning on it, as
// miekg/dns's serveUDP does; a temporary one (EINTR, ENOBUFS-like EAGAIN)
// is retried.
func TestServeBatchesStopsOnPermanentError(t *testing.T) {
	env := newTestEnv(t, Options{})
	for _, tc := range []struct {
		name      string
		errs      []error
		wantCalls int
	}{
		{"permanent", []error{fmt.Errorf("recvmmsg: %w", syscall.ENOTSOCK)}, 1},
		{"temporary then permanent", []error{fmt.Errorf("recvmmsg: %w", syscall.EINTR), fmt.Errorf("recvmmsg: %w", syscall.EAGAIN), fmt.Errorf("recvmmsg: %w", syscall.EBADF)}, 3},
		{"not a net error", []error{errors.New("something else")}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bio := &errIO{errs: tc.errs, done: make(chan struct{})}
			defer close(bio.done)
			returned := make(chan struct{})
			go func() {
				env.srv.serveBatches(bio, nil)
				close(returned)
			}()
			select {
			case <-returned:
			case <-time.After(5 * time.Second):
				t.Fatalf("reader still running after %d reads", bio.calls)
			}
			if bio.calls != tc.wantCalls {
				t.Errorf("%d reads, want %d", bio.calls, tc.wantCalls)
			}
		})
	}
}
