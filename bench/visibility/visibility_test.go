package visibility

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
)

// registerSpread registers n accounts, the k-th on instance k mod len.
func (c *cluster) registerSpread(n int) []account {
	c.t.Helper()
	accts := make([]account, n)
	for k := range accts {
		a, err := register(c.insts[k%len(c.insts)].api)
		if err != nil {
			c.t.Fatal(err)
		}
		accts[k] = a
	}
	return accts
}

// TestThreeInstances: 1,000 updates spread over three instances (each
// instance takes every third update, each account is updated through all
// three); then every value is answered by all three.
func TestThreeInstances(t *testing.T) {
	pg := startPostgres(t)
	c := startCluster(t, pg, 3, clusterOptions{perAccount: 50})
	const updates, accounts = 1000, 20
	accts := c.registerSpread(accounts)

	acked := map[string][]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(c.insts))
	for w := range c.insts {
		wg.Go(func() {
			for i := w; i < updates; i += len(c.insts) {
				a, v := accts[i%accounts], txtValue(i)
				if err := update(c.insts[w].api, a, v); err != nil {
					errs <- fmt.Errorf("update %d: %w", i, err)
					return
				}
				mu.Lock()
				acked[a.Subdomain] = append(acked[a.Subdomain], v)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all := []int{0, 1, 2}
	harness.Eventually(t, 20*time.Second, 50*time.Millisecond, "every value answered by every instance", func() error {
		if m := c.missingOn(acked, all); len(m) > 0 {
			return fmt.Errorf("values not answered, per instance: %v", m)
		}
		return nil
	})
	t.Logf("%d updates over %d instances: every value answered by all %d", updates, len(c.insts), len(c.insts))
}

// TestKillAndRestart keeps updating while instance c is killed with SIGKILL
// and PostgreSQL is restarted (immediate mode, as a crash); afterwards every
// acknowledged update must be answered by every instance, c restarted
// included.
func TestKillAndRestart(t *testing.T) {
	pg := startPostgres(t)
	c := startCluster(t, pg, 3, clusterOptions{perAccount: 100})
	const accounts = 10
	// Instance c is killed at update 150 and PostgreSQL restarted at 250
	// (in the background: updates keep coming while it is down); c comes
	// back once 100 more updates were sent after PostgreSQL returned, and
	// 100 more follow.
	const killAt, pgRestartAt, afterPG, afterC = 150, 250, 100, 100
	const victim = 2
	accts := c.registerSpread(accounts)

	acked := map[string][]string{}
	var ackedN, failed, failedDuringRestart, failedAfterRestart int
	dead := false
	var pgDone sync.WaitGroup
	var restarting atomic.Bool
	pgBackAt, cBackAt := -1, -1
	updates := 0
	for i := 0; cBackAt < 0 || i < cBackAt+afterC; i++ {
		updates++
		switch {
		case i == killAt:
			c.kill(victim)
			dead = true
			t.Logf("update %d: instance %s killed (SIGKILL)", i, c.insts[victim].name)
		case i == pgRestartAt:
			restarting.Store(true)
			pgDone.Go(func() {
				defer restarting.Store(false)
				start := time.Now()
				pg.restart()
				t.Logf("PostgreSQL restarted (immediate stop) in %v", time.Since(start).Round(time.Millisecond))
			})
		case i > pgRestartAt && pgBackAt < 0 && !restarting.Load():
			pgBackAt = i
			t.Logf("update %d: PostgreSQL is back", i)
		case dead && pgBackAt >= 0 && i == pgBackAt+afterPG:
			c.start(victim)
			dead = false
			cBackAt = i
			t.Logf("update %d: instance %s restarted", i, c.insts[victim].name)
		}
		target := i % len(c.insts)
		if dead && target == victim {
			target = (target + 1) % len(c.insts)
		}
		a, v := accts[i%accounts], txtValue(i)
		if err := update(c.insts[target].api, a, v); err != nil {
			failed++
			switch {
			case restarting.Load():
				failedDuringRestart++
			case pgBackAt >= 0:
				failedAfterRestart++
			}
			// A client backs off after a failure; without it the outage
			// would be over in a burst of instant refusals.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		ackedN++
		acked[a.Subdomain] = append(acked[a.Subdomain], v)
	}
	pgDone.Wait()
	all := []int{0, 1, 2}
	harness.Eventually(t, 30*time.Second, 100*time.Millisecond, "every acknowledged update answered by every instance", func() error {
		if m := c.missingOn(acked, all); len(m) > 0 {
			return fmt.Errorf("acknowledged values not answered, per instance: %v", m)
		}
		return nil
	})
	for _, in := range c.insts {
		if err := harness.HTTPReady("http://" + in.api + "/health")(); err != nil {
			t.Errorf("instance %s unhealthy at the end: %v", in.name, err)
		}
	}
	t.Logf("updates sent %d: acknowledged %d, refused %d (%d while PostgreSQL restarted, %d after it was back); every instance (a, b, c) answers all %d acknowledged",
		updates, ackedN, failed, failedDuringRestart, failedAfterRestart, ackedN)
	if ackedN < updates/2 {
		t.Errorf("only %d of %d updates acknowledged: the outage lasted too long to prove anything", ackedN, updates)
	}
}

// BenchmarkVisibility measures, per update, the time from instance A
// acknowledging it to instance B answering it. Run with -benchtime 1000x.
func BenchmarkVisibility(b *testing.B) {
	pg := startPostgres(b)
	for _, confirm := range []string{"", "all"} {
		name := "confirm=" + confirm
		if confirm == "" {
			name = "confirm=none"
		}
		b.Run(name, func(b *testing.B) {
			c := startCluster(b, pg, 3, clusterOptions{confirm: confirm})
			accts := c.registerSpread(3)
			a, bb := c.insts[0], c.insts[1]
			for _, acct := range accts {
				harness.Eventually(b, 10*time.Second, 10*time.Millisecond, "account known to B", func() error {
					_, err := txtValues(bb.dns, acct.Subdomain)
					return err
				})
				// Warm A's credential cache: the first check costs a bcrypt.
				if err := update(a.api, acct, txtValue(0)); err != nil {
					b.Fatal(err)
				}
			}
			ackToSeen := make([]time.Duration, 0, b.N)
			sendToSeen := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				acct, v := accts[i%len(accts)], txtValue(i+1)
				sent := time.Now()
				if err := update(a.api, acct, v); err != nil {
					b.Fatal(err)
				}
				ack := time.Now()
				for {
					got, err := txtValues(bb.dns, acct.Subdomain)
					if err == nil && slices.Contains(got, v) {
						break
					}
					if time.Since(ack) > 10*time.Second {
						b.Fatalf("update %d not answered by B after 10s", i)
					}
					time.Sleep(100 * time.Microsecond) // probe interval
				}
				seen := time.Now()
				ackToSeen = append(ackToSeen, seen.Sub(ack))
				sendToSeen = append(sendToSeen, seen.Sub(sent))
			}
			b.StopTimer()
			report(b, "ack→B", ackToSeen)
			report(b, "send→B", sendToSeen)
		})
	}
}

func report(b *testing.B, what string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(q(0.50)), what+"-p50-ms")
	b.ReportMetric(ms(q(0.99)), what+"-p99-ms")
	b.Logf("%s over %d updates: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms",
		what, len(ds), ms(q(0.50)), ms(q(0.90)), ms(q(0.99)), ms(ds[len(ds)-1]))
}
