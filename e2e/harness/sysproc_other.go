//go:build unix && !linux

package harness

import (
	"errors"
	"syscall"
)

// sysProcAttr puts each child in its own process group, so Stop can kill a
// daemon together with the helpers it forks. Pdeathsig is Linux-only.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// killGroup sends SIGKILL to the process group led by pid.
func killGroup(pid int) {
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

// groupLeaves needs /proc; callers treat the error as "cannot tell".
func groupLeaves(int) ([]int, error) {
	return nil, errors.New("process tree inspection needs Linux /proc")
}

// alive reports whether pid exists (zombies count as alive here).
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil
}
