// Package fleet measures the issuer at fleet scale on loopback with Pebble,
// unbound, NSD as the customers' zone and the real delegated binary: N
// certificates created with `delegated issue --batch`, of which D are
// delegated (CNAMEs published after creation), X belong to customers whose
// name servers never answer (a UDP socket that reads nothing, one per
// customer zone), and the rest are never delegated. It reports the batch
// time, the seconds from publication until all D are active, the daemon's
// RSS, its CPU while idle but re-checking, and the time of `certificates
// --json`, once without and once with the dead name servers.
//
// `go test ./bench/fleet/` runs a small fleet (CI); bench/fleet/run.sh runs
// the 10,000 / 1,000 / 500 (see README).
package fleet_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
)

// size is one fleet.
type size struct {
	total, delegated, dead int
	recheck                string
	// wait bounds how long the delegated certificates may take to become
	// active; idle is the CPU measurement window.
	wait, idle time.Duration
}

// fleetSize reads FLEET_CERTS, FLEET_DELEGATED, FLEET_DEAD and
// FLEET_RECHECK; the defaults are the small CI fleet.
func fleetSize(t *testing.T) size {
	sz := size{total: 200, delegated: 20, dead: 20, recheck: "2s", wait: 2 * time.Minute, idle: 5 * time.Second}
	for _, v := range []struct {
		env string
		p   *int
	}{{"FLEET_CERTS", &sz.total}, {"FLEET_DELEGATED", &sz.delegated}, {"FLEET_DEAD", &sz.dead}} {
		if s := os.Getenv(v.env); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				t.Fatalf("%s=%q: expected a count", v.env, s)
			}
			*v.p = n
		}
	}
	if s := os.Getenv("FLEET_RECHECK"); s != "" {
		sz.recheck = s
	}
	if sz.total >= 1000 {
		sz.wait, sz.idle = 10*time.Minute, 30*time.Second
	}
	if sz.delegated+sz.dead > sz.total {
		t.Fatalf("FLEET_DELEGATED + FLEET_DEAD (%d) exceed FLEET_CERTS (%d)", sz.delegated+sz.dead, sz.total)
	}
	return sz
}

// result is one run's figures.
type result struct {
	dead          int
	batch         time.Duration
	rerun         time.Duration
	allActive     time.Duration
	rssKB, hwmKB  int
	idleCPU       float64 // share of one core
	listJSON      time.Duration
	listCPU       time.Duration // the CLI's own CPU time (user+system)
	listed, activ int
	load          string // /proc/loadavg at the end: the machine is shared
}

func TestFleet(t *testing.T) {
	sz := fleetSize(t)
	// The small CI fleet runs once, with its dead name servers; a sized
	// fleet (run.sh) runs without them first, for the comparison.
	runs := []int{sz.dead}
	if os.Getenv("FLEET_CERTS") != "" && sz.dead > 0 {
		runs = []int{0, sz.dead}
	}
	var results []result
	for _, dead := range runs {
		t.Run(fmt.Sprintf("dead=%d", dead), func(t *testing.T) {
			results = append(results, runFleet(t, sz, dead))
		})
	}
	t.Logf("fleet: %d certificates, %d delegated after creation, delegation_recheck = %q", sz.total, sz.delegated, sz.recheck)
	t.Logf("| dead name servers | batch | batch again (no change) | all delegated active after publication | RSS (peak) | idle CPU | certificates --json (CLI CPU) | load average |")
	t.Logf("|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		t.Logf("| %d | %.1f s | %.1f s | %.1f s | %d MB (%d MB) | %.1f%% of a core | %.2f s (%.2f s; %d listed) | %s |",
			r.dead, r.batch.Seconds(), r.rerun.Seconds(), r.allActive.Seconds(), r.rssKB/1024, r.hwmKB/1024, 100*r.idleCPU,
			r.listJSON.Seconds(), r.listCPU.Seconds(), r.listed, r.load)
	}
	if len(results) == 2 {
		// The healthy certificates must not wait for the dead customers:
		// at most one re-check interval (they may just miss a pass) and
		// a margin for a loaded machine.
		recheck, _ := time.ParseDuration(sz.recheck)
		if slack := results[0].allActive + recheck + 30*time.Second; results[1].allActive > slack {
			t.Errorf("with %d dead name servers all %d delegated certificates took %s, without %s: slowed by the dead ones",
				sz.dead, sz.delegated, results[1].allActive.Round(time.Second), results[0].allActive.Round(time.Second))
		}
	}
}

var recordRE = regexp.MustCompile(`(?m)^(_acme-challenge\.(c\d+)\.example\.test\.) CNAME (\S+)$`)

func runFleet(t *testing.T, sz size, dead int) result {
	r := result{dead: dead}
	stubs := e2e.DeadServers(t, dead)
	s := e2e.Start(t, e2e.Options{
		DelegationRecheck: sz.recheck,
		ExtraStubs:        stubs,
		// Pebble asks over TCP; unbound's default of 10 connections per
		// thread would refuse the CA's lookups, not ours.
		ResolverExtra: []string{"incoming-num-tcp: 1024", "num-queries-per-thread: 4096", "outgoing-range: 8192"},
		// An attempt the loaded CA fails (its own lookup timed out) is
		// tried again soon, not after the default 15 minutes.
		IssuerExtra: "max_concurrent_orders = 16\nmax_concurrent_checks = 64\norders_per_hour = 1000000\nretry_interval = \"10s\"\n",
	})
	var b strings.Builder
	b.WriteString("# fleet: delegated, never delegated, dead name servers\n")
	for k := range sz.delegated {
		fmt.Fprintf(&b, "c%d c%d.example.test\n", k, k)
	}
	for k := range sz.total - sz.delegated - dead {
		fmt.Fprintf(&b, "n%d n%d.example.test\n", k, k)
	}
	for k := range dead {
		fmt.Fprintf(&b, "d%d d%d.dead.test\n", k, k)
	}
	batch := filepath.Join(s.Dir, "fleet.txt")
	if err := os.WriteFile(batch, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, code := s.CLI("issue", "--batch", batch)
	r.batch = time.Since(start)
	if code != 0 {
		t.Fatalf("issue --batch: exit %d: %.2000s", code, out)
	}
	cnames := map[string]string{}
	for _, m := range recordRE.FindAllStringSubmatch(out, -1) {
		cnames[strings.TrimSuffix(strings.TrimPrefix(m[1], "_acme-challenge."), ".example.test.")] = m[3]
	}
	if len(cnames) != sz.delegated {
		t.Fatalf("issue --batch printed %d records of the delegated names, want %d", len(cnames), sz.delegated)
	}
	// The same file again changes nothing.
	start = time.Now()
	again, code := s.CLI("issue", "--batch", batch)
	r.rerun = time.Since(start)
	if code != 0 || !strings.Contains(again, fmt.Sprintf("%d certificates: 0 created, 0 changed, %d unchanged", sz.total, sz.total)) {
		t.Fatalf("issue --batch again: exit %d: %.500s", code, lastLines(again, 3))
	}
	zone := map[string]string{}
	for owner, target := range cnames {
		zone["_acme-challenge."+owner] = target
	}
	s.SetCNAMEs(zone)
	published := time.Now()
	harness.Eventually(t, sz.wait, time.Second, "all delegated certificates active", func() error {
		n, err := countActive(s)
		if err != nil {
			return err
		}
		r.activ = n
		if n < sz.delegated {
			return fmt.Errorf("%d of %d active after %s", n, sz.delegated, time.Since(published).Round(time.Second))
		}
		return nil
	})
	r.allActive = time.Since(published)
	// Idle but re-checking: the never-delegated and dead ones keep being
	// checked every delegation_recheck.
	t0, err := cpuTicks(s.Daemon.PID)
	if err != nil {
		t.Fatal(err)
	}
	w0 := time.Now()
	time.Sleep(sz.idle)
	t1, err := cpuTicks(s.Daemon.PID)
	if err != nil {
		t.Fatal(err)
	}
	r.idleCPU = float64(t1-t0) / 100 / time.Since(w0).Seconds()
	for range 3 {
		start := time.Now()
		cmd := exec.Command(s.Bin, "certificates", "--config", s.Config, "--json")
		out, err := cmd.Output()
		d := time.Since(start)
		if err != nil {
			t.Fatalf("certificates --json: %v: %.500s", err, out)
		}
		var certs []json.RawMessage
		if err := json.Unmarshal(out, &certs); err != nil {
			t.Fatal(err)
		}
		r.listed = len(certs)
		if d > r.listJSON {
			r.listJSON = d
			r.listCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		r.load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if r.listed != sz.total {
		t.Errorf("certificates --json listed %d, want %d", r.listed, sz.total)
	}
	r.rssKB, r.hwmKB = memKB(t, s.Daemon.PID)
	t.Logf("dead=%d: batch %s, again %s, all %d active %s after publication, RSS %d MB (peak %d MB), idle CPU %.1f%%, certificates --json %s (slowest of 3; CLI CPU %s), load average %s",
		dead, r.batch.Round(time.Millisecond), r.rerun.Round(time.Millisecond), sz.delegated, r.allActive.Round(time.Second),
		r.rssKB/1024, r.hwmKB/1024, 100*r.idleCPU, r.listJSON.Round(time.Millisecond), r.listCPU.Round(time.Millisecond), r.load)
	return r
}

func countActive(s *e2e.Stack) (int, error) {
	out, code := s.CLI("certificates", "--json", "--status", "active")
	if code != 0 {
		return 0, fmt.Errorf("certificates: exit %d: %.300s", code, out)
	}
	var certs []json.RawMessage
	if err := json.Unmarshal([]byte(out), &certs); err != nil {
		return 0, err
	}
	return len(certs), nil
}

// cpuTicks is utime+stime of pid in clock ticks (100 per second).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return u + st, nil
}

// memKB returns VmRSS and VmHWM (peak) of pid.
func memKB(t *testing.T, pid int) (rss, hwm int) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			rss = n
		case "VmHWM:":
			hwm = n
		}
	}
	return rss, hwm
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
