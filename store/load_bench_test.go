package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// loadBenchSizes are the account counts BenchmarkLoad measures. The default
// keeps `go test -bench .` quick; the target is measured with
//
//	DELEGATED_BENCH_LOAD_ACCOUNTS=20000,1000000 go test -run '^$' -bench BenchmarkLoad -benchtime 3x -timeout 2h ./store
//
// The fixtures are built once through the store and kept (see
// loadFixture), so a second run measures only the load.
func loadBenchSizes(b *testing.B) []int {
	env := os.Getenv("DELEGATED_BENCH_LOAD_ACCOUNTS")
	if env == "" {
		return []int{2000}
	}
	var sizes []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("DELEGATED_BENCH_LOAD_ACCOUNTS=%q: want comma-separated positive counts", env)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// loadBenchClock is the fixture's fixed time, so its values are still live
// whenever the benchmark runs.
var loadBenchClock = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// BenchmarkLoad measures how long start-up takes to read every account's
// state (the DNS view's load) from a database with a realistic history:
// every account updated three times, one in twenty deleted afterwards.
func BenchmarkLoad(b *testing.B) {
	for _, n := range loadBenchSizes(b) {
		b.Run(fmt.Sprintf("accounts=%d", n), func(b *testing.B) {
			path := loadFixture(b, n)
			s, err := Open(context.Background(), "sqlite3", path, Options{Logger: quietLogger(), Now: func() time.Time { return loadBenchClock }})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				states, values := 0, 0
				err := s.Load(context.Background(), func(st SubdomainState) error {
					states++
					values += len(st.Values)
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if want := n - n/20; states != want || values != 3*want {
					b.Fatalf("loaded %d states with %d values, want %d with %d", states, values, want, 3*want)
				}
			}
			// CPU time beside wall time: on a shared machine the wall time
			// mostly measures the neighbours.
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/load")
			b.ReportMetric(float64((cpuTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/load")
		})
	}
}

// cpuTime is the CPU time this process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadFixture returns a database of n accounts written through the store's
// own methods (CreateAccount, AddValue three times, DeleteAccount for one in
// twenty), so changes and txt_values hold what production leaves. It is
// kept in DELEGATED_BENCH_DIR (default: the user cache folder) because a
// million accounts take minutes to write. Only durability is relaxed while
// building (synchronous=OFF on the single write connection), which changes
// no row.
func loadFixture(b *testing.B, n int) string {
	dir := os.Getenv("DELEGATED_BENCH_DIR")
	if dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			b.Fatal(err)
		}
		dir = filepath.Join(cache, "delegated-bench")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("load-%d.db", n))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	b.Logf("building %s (once)", path)
	started := time.Now()
	tmp := path + ".building"
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(tmp + suffix)
	}
	ctx := context.Background()
	clock := loadBenchClock.Add(-time.Hour)
	s, err := Open(ctx, "sqlite3", tmp, Options{Logger: quietLogger(), Now: func() time.Time { return clock }})
	if err != nil {
		b.Fatal(err)
	}
	s.db.SetMaxOpenConns(1)
	if _, err := s.db.ExecContext(ctx, `PRAGMA synchronous=OFF`); err != nil {
		b.Fatal(err)
	}
	subs := make([]string, n)
	users := make([]string, n)
	for i := range n {
		a := Account{Username: uuid.NewString(), KeyHash: "$2a$10$abcdefghijklmnopqrstuuMhPjVgYRUNhMR3cJcXtNpdcfzBQxAwm", Subdomain: uuid.NewString()}
		if err := s.CreateAccount(ctx, a); err != nil {
			b.Fatal(err)
		}
		subs[i], users[i] = a.Subdomain, a.Username
	}
	for round := range 3 {
		clock = clock.Add(time.Minute)
		for _, sub := range subs {
			if err := s.AddValue(ctx, sub, fmt.Sprintf("%-43s", "v"+strconv.Itoa(round)+sub)[:43]); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := 0; i < n; i += 20 {
		if err := s.DeleteAccount(ctx, users[i]); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built %d accounts in %v", n, time.Since(started).Round(time.Second))
	return path
}
