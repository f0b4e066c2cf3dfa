package httpapi

import "golang.org/x/sys/unix"

// lowestNice is the weakest weight an unprivileged thread can give itself
// under the normal policy: the fallback when SCHED_IDLE is not allowed.
const lowestNice = 19

// lowerThreadPriority moves the calling thread to SCHED_IDLE: the kernel
// preempts such a thread as soon as any normal thread wakes, so a DNS reader
// no longer waits out a bcrypt time slice. Measured in bench/dns with a CPU
// hog beside the server on its one CPU: DNS p99 0.07 ms beside a SCHED_IDLE
// hog, 1.8 ms beside a nice-19 one, 3.3 ms beside a normal one (idle: 0.1).
// Both calls only lower the thread's own priority and need no privilege;
// should both fail (a seccomp filter), bcrypt runs at the normal priority,
// which is how it ran before, so the error is deliberately dropped.
func lowerThreadPriority() {
	// pid 0 is the calling thread, not the process.
	if unix.SchedSetAttr(0, &unix.SchedAttr{Policy: unix.SCHED_IDLE, Nice: lowestNice}, 0) == nil {
		return
	}
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), lowestNice)
}
