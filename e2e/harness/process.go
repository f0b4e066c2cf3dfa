package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Defaults for ProcessOptions and the Start functions.
const (
	DefaultStartTimeout = 15 * time.Second
	DefaultStopTimeout  = 10 * time.Second
	// DefaultLogTailLines is how much of a log failure messages quote.
	DefaultLogTailLines = 40
	// startAttempts bounds retries when a component dies on ports the
	// harness picked (another process took one between FreePort and bind).
	startAttempts = 3
)

// Reasons WaitReady gives up early; startWithRetry retries on both when the
// harness picked the ports.
var (
	// errExited marks a process that ended before it became ready.
	errExited = errors.New("process exited")
	// errPortInUse marks a process that logged a failed bind. Pebble and
	// challtestsrv keep running after one, so exit alone does not show it.
	errPortInUse = errors.New("address already in use")
)

// ProcessOptions describes one process to start.
type ProcessOptions struct {
	// Name labels messages and the log file; default: base name of Path.
	Name string
	// Path is the executable (see RequireTool).
	Path string
	Args []string
	// Dir is the working directory; default: a new t.TempDir().
	Dir string
	// Env entries are appended to the test's environment; later entries
	// win, so they override inherited values.
	Env []string
	// LogPath receives stdout and stderr; default: Dir/<Name>.log.
	LogPath string
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL;
	// default DefaultStopTimeout.
	StopTimeout time.Duration
	// GoStacks marks a Go program: when the test fails it is stopped with
	// SIGQUIT, which makes the Go runtime write every goroutine's stack to
	// the log, and the goroutines blocked for a minute or more are quoted.
	// A test that failed on a timeout then shows what was stuck.
	GoStacks bool
}

// Process is a running child process. Its methods are safe for concurrent
// use.
type Process struct {
	Name    string
	PID     int
	Dir     string
	LogPath string

	cmd         *exec.Cmd
	stopTimeout time.Duration
	done        chan struct{} // closed once the process has been reaped
	waitErr     error         // set before done is closed

	goStacks bool

	stopOnce   sync.Once
	stopErr    error
	stopCalled atomic.Bool
}

// StartProcess starts a process, fails the test if it cannot, and registers
// a cleanup that stops it and, if the test failed, logs its log tail. It does
// not wait for readiness: see Process.WaitReady.
func StartProcess(t testing.TB, opts ProcessOptions) *Process {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	p, err := startProcess(opts)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	p.registerCleanup(t)
	return p
}

// registerCleanup stops p at the end of the test and quotes its log when the
// test failed, since the component's own log usually explains the failure.
func (p *Process) registerCleanup(t testing.TB) {
	t.Cleanup(func() {
		if exited, err := p.Exited(); exited && !p.stopCalled.Load() {
			// Not necessarily a failure (a test may kill it on
			// purpose), but a dead dependency explains odd results.
			t.Logf("harness: %s (pid %d) had exited before cleanup: %v\n%s", p.Name, p.PID, err, p.tailForError())
		}
		if t.Failed() {
			// Before stopping: a stack dump would push the log's last
			// lines out of the tail.
			t.Logf("harness: %s (pid %d) log %s, last lines:\n%s", p.Name, p.PID, p.LogPath, p.LogTail(DefaultLogTailLines))
			if p.goStacks {
				t.Logf("harness: %s (pid %d) %s", p.Name, p.PID, p.stuckGoroutines())
			}
		}
		if err := p.Stop(); err != nil {
			t.Errorf("harness: %v", err)
		}
	})
}

// stuckGoroutines stops a Go process with SIGQUIT and returns, from the
// stack dump the runtime writes, the goroutines blocked for a minute or
// more (the runtime states their wait only from one minute on).
func (p *Process) stuckGoroutines() string {
	if exited, _ := p.Exited(); exited {
		return "had exited: no goroutine dump"
	}
	p.stopCalled.Store(true)
	if err := p.Signal(syscall.SIGQUIT); err != nil {
		return err.Error()
	}
	select {
	case <-p.done:
	case <-time.After(p.stopTimeout):
		return fmt.Sprintf("did not exit within %s of SIGQUIT: no goroutine dump", p.stopTimeout)
	}
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("cannot read the goroutine dump: %v", err)
	}
	return blockedGoroutines(string(b), maxDumpLines)
}

// maxDumpLines bounds how much of a goroutine dump a failure quotes.
const maxDumpLines = 300

// blockedGoroutines picks from a Go stack dump the goroutines whose header
// says they have waited for minutes, e.g. "goroutine 7 [sync.RWMutex.Lock,
// 2 minutes]:", at most maxLines lines of them.
func blockedGoroutines(dump string, maxLines int) string {
	start := strings.Index(dump, "\ngoroutine ")
	if start < 0 {
		return "no goroutine dump in the log"
	}
	var picked []string
	total, lines := 0, 0
	for _, block := range strings.Split(dump[start+1:], "\n\n") {
		header, _, _ := strings.Cut(block, "\n")
		if !strings.HasPrefix(header, "goroutine ") {
			continue
		}
		total++
		if !strings.Contains(header, " minutes]") { // the runtime writes "1 minutes" too
			continue
		}
		n := strings.Count(block, "\n") + 1
		if lines+n > maxLines {
			picked = append(picked, "(more left out; the whole dump is in the log)")
			break
		}
		picked = append(picked, block)
		lines += n
	}
	if len(picked) == 0 {
		return fmt.Sprintf("stack dump: none of %d goroutines blocked for a minute or more", total)
	}
	return fmt.Sprintf("stack dump: goroutines blocked for a minute or more (of %d):\n%s", total, strings.Join(picked, "\n\n"))
}

// startProcess starts a process without a testing.TB, so the Start
// functions can retry before committing a cleanup to the test.
func startProcess(opts ProcessOptions) (*Process, error) {
	if opts.Path == "" {
		return nil, errors.New("start process: empty Path")
	}
	if opts.Name == "" {
		opts.Name = filepath.Base(opts.Path)
	}
	if opts.Dir == "" {
		return nil, fmt.Errorf("start %s: empty Dir", opts.Name)
	}
	if opts.LogPath == "" {
		opts.LogPath = filepath.Join(opts.Dir, opts.Name+".log")
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = DefaultStopTimeout
	}
	logf, err := os.OpenFile(opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: open log: %w", opts.Name, err)
	}
	// The child inherits its own copy of the descriptor, so ours can close
	// as soon as it has started.
	defer logf.Close()

	cmd := exec.Command(opts.Path, opts.Args...)
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), opts.Env...)
	if opts.GoStacks {
		cmd.Env = append(cmd.Env, "GOTRACEBACK=all")
	}
	cmd.Stdin = nil
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	fmt.Fprintf(logf, "### harness: %s %q (cwd %s)\n", opts.Path, opts.Args, opts.Dir)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", opts.Name, err)
	}
	p := &Process{
		Name:        opts.Name,
		PID:         cmd.Process.Pid,
		Dir:         opts.Dir,
		LogPath:     opts.LogPath,
		cmd:         cmd,
		stopTimeout: opts.StopTimeout,
		goStacks:    opts.GoStacks,
		done:        make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited and, if so, how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Signal sends sig to the process if it is still running (for example
// SIGHUP to make a daemon reload).
func (p *Process) Signal(sig os.Signal) error {
	if exited, _ := p.Exited(); exited {
		return fmt.Errorf("signal %s (pid %d): %w", p.Name, p.PID, errExited)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s (pid %d): %w", p.Name, p.PID, err)
	}
	return nil
}

// Stop sends SIGTERM, waits up to the stop timeout for the process to exit,
// then SIGKILLs its process group (daemons such as nsd fork helpers) and
// waits again. It returns once the process has been reaped, so its ports are
// free. Later calls return the first result. An exit caused by our own
// signal is not an error.
func (p *Process) Stop() error {
	p.stopCalled.Store(true)
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *Process) stop() error {
	if exited, _ := p.Exited(); exited {
		// It ended on its own; whoever cares has seen that via Done or
		// WaitReady, and the log holds the reason.
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(p.stopTimeout):
	}
	// Still running, hence not reaped, so its PID (the group ID) cannot
	// have been reused by someone else's process.
	killGroup(p.PID)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return fmt.Errorf("stop %s (pid %d): ignored SIGTERM for %s, killed", p.Name, p.PID, p.stopTimeout)
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop %s (pid %d): still running 5s after SIGKILL", p.Name, p.PID)
	}
}

// WaitReady calls probe every 25 ms until it returns nil. It fails early
// when the process exits or logs "address already in use", and after
// timeout (default DefaultStartTimeout); the errors carry the last probe
// error and the log tail.
func (p *Process) WaitReady(timeout time.Duration, probe func() error) error {
	if timeout == 0 {
		timeout = DefaultStartTimeout
	}
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = probe(); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s (pid %d) exited before it was ready (%v; last probe: %v): %w\n%s",
				p.Name, p.PID, p.waitErr, last, errExited, p.tailForError())
		case <-tick.C:
		}
		if strings.Contains(strings.ToLower(p.LogTail(DefaultLogTailLines)), "address already in use") {
			return fmt.Errorf("%s (pid %d) could not bind (last probe: %v): %w\n%s",
				p.Name, p.PID, last, errPortInUse, p.tailForError())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) not ready after %s: %w\n%s", p.Name, p.PID, timeout, last, p.tailForError())
		}
	}
}

func (p *Process) tailForError() string {
	return fmt.Sprintf("--- %s, last lines ---\n%s", p.LogPath, p.LogTail(DefaultLogTailLines))
}

// LogTail returns the last n lines of the process log.
func (p *Process) LogTail(n int) string {
	return fileTail(p.LogPath, n)
}

// fileTail returns the last n lines of path, reading at most its last 64 KiB.
func fileTail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	defer f.Close()
	const maxRead = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > maxRead {
		_, _ = f.Seek(-maxRead, io.SeekEnd)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startWithRetry runs attempt up to startAttempts times while it fails with a
// process that exited early or could not bind, and retry is true (the ports were picked by the
// harness, so a fresh set may succeed). attempt must stop its own process on
// failure.
func startWithRetry[T any](retry bool, attempt func() (T, error)) (T, error) {
	var errs []error
	for i := 0; i < startAttempts; i++ {
		v, err := attempt()
		if err == nil {
			return v, nil
		}
		errs = append(errs, fmt.Errorf("attempt %d: %w", i+1, err))
		if !retry || !(errors.Is(err, errExited) || errors.Is(err, errPortInUse)) {
			break
		}
	}
	var zero T
	return zero, errors.Join(errs...)
}

// writeFile writes a config file, naming it in the error.
func writeFile(path, content string, perm os.FileMode) error {
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// runTool runs a short-lived helper (a config checker, a control client) and
// returns its output, or an error quoting it when the helper fails.
func runTool(timeout time.Duration, dir, path string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w after %s", ctx.Err(), timeout)
		}
		return string(out), fmt.Errorf("run %s %s: %w\n%s", filepath.Base(path), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
