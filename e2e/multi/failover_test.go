package multi

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
)

// freshDatabase creates a database of its own in the test cluster and
// returns its DSN; it is dropped at the end of the test.
func freshDatabase(t *testing.T) (dsn string, db *sql.DB) {
	t.Helper()
	base := harness.PostgresDSN(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "multi_" + hex.EncodeToString(b[:])
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		admin.Close()
		t.Fatalf("create database: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	dsn = u.String()
	db, err = sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP DATABASE `+name+` WITH (FORCE)`); err != nil {
			t.Errorf("drop database %s: %v", name, err)
		}
		admin.Close()
	})
	return dsn, db
}

// instance is one `delegated serve` process with its own folder, config,
// operator socket and listeners.
type instance struct {
	n        int
	dir, cfg string
	proc     *harness.Process
}

// cluster is three instances on one database, Pebble, unbound and the
// customer zone example.test in NSD.
type cluster struct {
	t         *testing.T
	bin       string
	db        *sql.DB
	customer  *harness.NSD
	pebble    *harness.Pebble
	instances []*instance
	serial    uint32
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	dsn, db := freshDatabase(t)
	c := &cluster{t: t, db: db, serial: 1}
	bindir := t.TempDir()
	c.bin = filepath.Join(bindir, "delegated")
	if out, err := exec.Command("go", "build", "-o", c.bin, "github.com/delegated/delegated/cmd/delegated").CombinedOutput(); err != nil {
		t.Fatalf("go build delegated: %v\n%s", err, out)
	}
	c.customer = harness.StartNSD(t, "example.test", e2e.CustomerZone(c.serial, nil))
	dnsAddrs := []string{harness.FreeAddr(t), harness.FreeAddr(t), harness.FreeAddr(t)}
	// The resolver (Pebble's and the issuers') asks instance 0 for the
	// zone; every instance answers every value, and the test never kills
	// instance 0.
	resolver := harness.StartUnboundWith(t, harness.UnboundOptions{
		Stubs:     map[string]string{"example.test": c.customer.Addr, e2e.Zone: dnsAddrs[0]},
		ReadyZone: "example.test",
	})
	// Pebble's VA waits up to 3 s per validation, so an order is still
	// in flight when its holder is killed.
	c.pebble = harness.StartPebble(t, harness.PebbleOptions{DNSServer: resolver.Addr, Env: []string{"PEBBLE_VA_NOSLEEP=0", "PEBBLE_VA_SLEEPTIME=3"}})
	_, port, err := net.SplitHostPort(c.customer.Addr)
	if err != nil {
		t.Fatal(err)
	}
	nsdPort, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	for n := range 3 {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "operator.token"), []byte("multi-operator-token-0123456789\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := e2e.DaemonConfig{
			DNS: dnsAddrs[n], API: harness.FreeAddr(t), StoreDriver: "postgres", StoreDSN: dsn,
			Directory: c.pebble.DirectoryURL, CARoots: c.pebble.MiniCAPath, Resolver: resolver.Addr,
			AuthoritativePort: nsdPort, DelegationRecheck: "1s",
		}.TOML()
		in := &instance{n: n, dir: dir, cfg: filepath.Join(dir, "config.toml")}
		if err := os.WriteFile(in.cfg, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		in.proc = harness.StartProcess(t, harness.ProcessOptions{
			Name: fmt.Sprintf("delegated-%d", n), Path: c.bin, Args: []string{"serve", "--config", in.cfg}, Dir: dir, GoStacks: true,
		})
		addr := dnsAddrs[n]
		if err := in.proc.WaitReady(0, func() error {
			if _, err := os.Stat(filepath.Join(dir, "delegated.sock")); err != nil {
				return err
			}
			_, err := harness.Query(addr, e2e.Zone+".", 6)
			return err
		}); err != nil {
			t.Fatalf("instance %d did not start: %v", n, err)
		}
		c.instances = append(c.instances, in)
	}
	return c
}

// cli runs a delegated verb against instance in.
func (c *cluster) cli(in *instance, args ...string) (string, int) {
	c.t.Helper()
	return e2e.RunCLI(c.t, c.bin, in.cfg, time.Minute, args...)
}

// status is name's status as instance in reports it.
func (c *cluster) status(in *instance, name string) (string, error) {
	out, code := c.cli(in, "certificates", "--json")
	if code != 0 {
		return "", fmt.Errorf("instance %d: certificates --json: exit %d: %s", in.n, code, out)
	}
	var certs []e2e.Cert
	if err := json.Unmarshal([]byte(out), &certs); err != nil {
		return "", fmt.Errorf("instance %d: %w: %s", in.n, err, out)
	}
	for _, cert := range certs {
		if cert.Name == name {
			return cert.Status, nil
		}
	}
	return "", fmt.Errorf("instance %d does not list %s", in.n, name)
}

// pebbleCount counts a message in Pebble's log: "Added order" per order,
// "Issued certificate serial" per certificate.
func (c *cluster) pebbleCount(msg string) int {
	b, err := os.ReadFile(c.pebble.Proc.LogPath)
	if err != nil {
		c.t.Fatal(err)
	}
	return strings.Count(string(b), msg)
}

// pebbleLines returns Pebble's log lines containing any of words.
func (c *cluster) pebbleLines(words ...string) string {
	b, err := os.ReadFile(c.pebble.Proc.LogPath)
	if err != nil {
		c.t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, w := range words {
			if strings.Contains(l, w) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func sum(ns []int) int {
	t := 0
	for _, n := range ns {
		t += n
	}
	return t
}

// logCount counts a message in every instance's log (for one certificate
// when cert is set).
func (c *cluster) logCount(msg, cert string) (total int, per []int) {
	for _, in := range c.instances {
		b, err := os.ReadFile(in.proc.LogPath)
		if err != nil {
			c.t.Fatal(err)
		}
		var n int
		if cert == "" {
			n = strings.Count(string(b), `msg="`+msg+`"`)
		} else {
			n = strings.Count(string(b), `msg="`+msg+`" component=issuer cert=`+cert+" ")
			n += strings.Count(string(b), `msg="`+msg+`" component=issuer cert=`+cert+"\n")
		}
		total += n
		per = append(per, n)
	}
	return total, per
}

var recordRE = regexp.MustCompile(`(?m)^(_acme-challenge\.[a-z0-9.-]+\.) CNAME ([0-9a-f-]{36}\.auth\.example\.test\.)$`)

// holder is the instance whose process holds name's lease in the database
// now (the holder id is host/pid/random), or nil.
func (c *cluster) holder(name string) *instance {
	var h string
	err := c.db.QueryRow(`SELECT holder FROM leases WHERE name = $1 AND expires_at > $2`, "cert:"+name, time.Now().UnixNano()).Scan(&h)
	if err != nil {
		return nil
	}
	parts := strings.Split(h, "/")
	if len(parts) != 3 {
		return nil
	}
	pid, err := strconv.Atoi(parts[1])
	if err != nil {
		return nil
	}
	for _, in := range c.instances {
		if in.proc.PID == pid {
			return in
		}
	}
	return nil
}

func (c *cluster) waitActiveEverywhere(name string, timeout time.Duration, skip *instance) {
	c.t.Helper()
	harness.Eventually(c.t, timeout, 100*time.Millisecond, name+" active on every live instance", func() error {
		for _, in := range c.instances {
			if in == skip {
				continue
			}
			st, err := c.status(in, name)
			if err != nil {
				return err
			}
			if st != "active" {
				return fmt.Errorf("instance %d reports %s %s", in.n, name, st)
			}
		}
		return nil
	})
}

// TestOneOrderAcrossInstances: three instances on one database, one
// certificate requested once: exactly one instance orders it, Pebble sees
// one order and issues one certificate, and every instance reports it
// active. Then the instance working on a second certificate is killed
// (-9) with the order in flight: another instance takes the order over once
// the lease expires and finishes it within 20 s, still as one order and one
// certificate at Pebble.
func TestOneOrderAcrossInstances(t *testing.T) {
	c := startCluster(t)
	a := c.instances[0]

	out, code := c.cli(a, "issue", "--no-wait", "--cert-name", "first", "-d", "example.test", "-d", "*.example.test")
	if code != 0 {
		t.Fatalf("issue: exit %d: %s", code, out)
	}
	cnames := map[string]string{}
	for _, r := range recordRE.FindAllStringSubmatch(out, -1) {
		cnames[r[1]] = r[2]
	}
	if len(cnames) != 1 {
		t.Fatalf("want one delegation record, got %v in %s", cnames, out)
	}
	// Every instance re-checks the delegation each second; whichever
	// takes the lease first makes the order.
	c.serial++
	if err := c.customer.Reload(e2e.CustomerZone(c.serial, cnames)); err != nil {
		t.Fatal(err)
	}
	c.waitActiveEverywhere("first", 60*time.Second, nil)
	starts, per := c.logCount("order starting", "first")
	if orders, issued := c.pebbleCount("Added order"), c.pebbleCount("Issued certificate serial"); orders != 1 || issued != 1 || starts != 1 {
		t.Fatalf("first: Pebble saw %d orders and issued %d certificates; instances started %d orders (%v); want 1, 1, 1", orders, issued, starts, per)
	}
	t.Logf("first: one order started (per instance %v), one order and one certificate at Pebble, active on all three", per)

	// Kill the holder mid-order. The order is placed through instance 1
	// (it holds the lease until the order ends); instance 0 answers the
	// resolver and stays up. A validation may finish before the kill
	// lands: then try again with another name.
	for try := 1; try <= 5; try++ {
		name := fmt.Sprintf("second-%d", try)
		orders, issued := c.pebbleCount("Added order"), c.pebbleCount("Issued certificate serial")
		if out, code := c.cli(c.instances[1], "issue", "--no-wait", "--cert-name", name, "-d", "example.test", "-d", "*.example.test"); code != 0 {
			t.Fatalf("issue: exit %d: %s", code, out)
		}
		// The order is recorded in the database (so it can be resumed)
		// and its holder is known.
		var victim *instance
		harness.Eventually(t, 20*time.Second, 5*time.Millisecond, name+": order recorded under a lease", func() error {
			var orderURL string
			if err := c.db.QueryRow(`SELECT order_url FROM certificates WHERE name = $1`, name).Scan(&orderURL); err != nil {
				return err
			}
			if orderURL == "" {
				return errors.New("no order recorded yet")
			}
			if victim = c.holder(name); victim == nil {
				return errors.New("no live holder")
			}
			return nil
		})
		if victim == c.instances[0] {
			t.Fatalf("%s: instance 0 holds the lease; it was placed through instance 1", name)
		}
		if err := victim.proc.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		<-victim.proc.Done()
		if st, err := c.status(c.instances[0], name); err != nil || st == "active" {
			t.Logf("try %d: %s was %s (%v) when its holder died; trying again", try, name, st, err)
			// The killed instance is gone; the others carry on.
			c.instances = slicesDelete(c.instances, victim)
			if len(c.instances) < 2 {
				t.Fatal("no instances left to try again")
			}
			continue
		}
		survivors := slicesDelete(c.instances, victim)
		c.instances = survivors
		var took time.Duration
		harness.Eventually(t, 20*time.Second, 50*time.Millisecond, name+" active after the holder was killed", func() error {
			st, err := c.status(c.instances[0], name)
			if err != nil {
				return err
			}
			if st != "active" {
				return fmt.Errorf("status %s", st)
			}
			took = time.Since(killed)
			return nil
		})
		c.waitActiveEverywhere(name, 10*time.Second, nil)
		var resumed []int
		for _, in := range c.instances {
			b, err := os.ReadFile(in.proc.LogPath)
			if err != nil {
				t.Fatal(err)
			}
			resumed = append(resumed, strings.Count(string(b), `msg="interrupted order resumed"`))
		}
		gotOrders := c.pebbleCount("Added order") - orders
		_, replaced := c.logCount("interrupted order cannot be resumed; placing a new one", "")
		switch {
		case gotOrders == 1:
		case gotOrders == 2 && sum(replaced) == 1:
			// The CA invalidated the dead holder's order (a validation
			// failed while nobody was there to answer for it); the
			// survivor saw that and placed one new order, never two at
			// once. Pebble's log says why.
			t.Logf("%s: the dead holder's order was invalid at the CA when taken over; one replacement order. Pebble: %s", name, c.pebbleLines("rror", "nvalid"))
		default:
			t.Errorf("%s: Pebble received %d orders (replacements logged %v), want 1", name, gotOrders, replaced)
		}
		if got := c.pebbleCount("Issued certificate serial") - issued; got != 1 {
			t.Errorf("%s: Pebble issued %d certificates, want 1 (no duplicate issuance)", name, got)
		}
		t.Logf("try %d: holder instance %d killed -9 mid-order; a survivor finished %s %v later (lease ttl 10 s); resumed-order log per survivor %v; Pebble: %d order(s), 1 certificate",
			try, victim.n, name, took.Round(10*time.Millisecond), resumed, gotOrders)
		return
	}
	t.Fatal("no try killed a holder with its order in flight")
}

func slicesDelete(ins []*instance, drop *instance) []*instance {
	var out []*instance
	for _, in := range ins {
		if in != drop {
			out = append(out, in)
		}
	}
	return out
}
