//go:build !linux

package httpapi

// lowerThreadPriority is Linux-only: elsewhere there is no portable way to
// lower one thread's priority, and bcrypt runs at the normal priority.
func lowerThreadPriority() {}
