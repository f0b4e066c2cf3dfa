package visibility

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/delegated/delegated/e2e/harness"
	"github.com/miekg/dns"
)

const zone = "auth.example.org"

const postgresHint = "apt-get install -y postgresql (the tests run initdb and pg_ctl from /usr/lib/postgresql/*/bin)"

// pgCluster is a private PostgreSQL cluster on a loopback port, owned by
// the test so that it can be restarted mid-test.
type pgCluster struct {
	t      testing.TB
	binDir string
	data   string
	port   int
	// asPostgres: initdb refuses root, so as root every command runs as
	// the postgres user.
	asPostgres bool
}

func startPostgres(t testing.TB) *pgCluster {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	var initdb string
	if len(matches) > 0 {
		sort.Slice(matches, func(i, j int) bool {
			vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
			vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
			return vi < vj
		})
		initdb = matches[len(matches)-1]
	} else {
		initdb = harness.RequireTool(t, "initdb", postgresHint)
	}
	p := &pgCluster{t: t, binDir: filepath.Dir(initdb), port: harness.FreePort(t), asPostgres: os.Geteuid() == 0}
	// Not t.TempDir(): its parents are private to root, and the server
	// runs as postgres.
	dir, err := os.MkdirTemp("", "delegated-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if p.asPostgres {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs the postgres user: %v (%s)", err, postgresHint)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	p.data = filepath.Join(dir, "data")
	p.run("initdb", "-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync")
	p.pgctl("start")
	t.Cleanup(func() { p.pgctlErr("stop", "-m", "immediate") })
	return p
}

func (p *pgCluster) cmd(tool string, args ...string) *exec.Cmd {
	path := filepath.Join(p.binDir, tool)
	if p.asPostgres {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (p *pgCluster) run(tool string, args ...string) {
	p.t.Helper()
	if out, err := p.cmd(tool, args...).CombinedOutput(); err != nil {
		p.t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
}

func (p *pgCluster) pgctlArgs(action string, extra ...string) []string {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c max_connections=100", p.port, filepath.Dir(p.data))
	return append([]string{"-D", p.data, "-l", filepath.Join(filepath.Dir(p.data), "postgres.log"), "-w", "-t", "60", "-o", opts, action}, extra...)
}

func (p *pgCluster) pgctl(action string, extra ...string) {
	p.t.Helper()
	p.run("pg_ctl", p.pgctlArgs(action, extra...)...)
}

func (p *pgCluster) pgctlErr(action string, extra ...string) {
	_ = p.cmd("pg_ctl", p.pgctlArgs(action, extra...)...).Run()
}

// restart stops the server the hard way (as a crash would) and starts it.
func (p *pgCluster) restart() {
	p.t.Helper()
	p.pgctl("restart", "-m", "immediate")
}

func (p *pgCluster) dsn() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port)
}

// instance is one `delegated serve` process.
type instance struct {
	name     string
	dns, api string
	dir      string
	proc     *harness.Process
}

type cluster struct {
	t     testing.TB
	bin   string
	insts []*instance
}

// clusterOptions shape the instances' config.
type clusterOptions struct {
	perAccount int
	confirm    string
}

func startCluster(t testing.TB, pg *pgCluster, n int, opts clusterOptions) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: harness.GoBuild(t, "../../cmd/delegated")}
	if opts.perAccount == 0 {
		opts.perAccount = 4
	}
	for i := range n {
		in := &instance{name: string(rune('a' + i)), dns: harness.FreeAddr(t), api: harness.FreeAddr(t), dir: t.TempDir()}
		confirm := ""
		if opts.confirm != "" {
			confirm = fmt.Sprintf("confirm = %q\n", opts.confirm)
		}
		cfg := fmt.Sprintf(`[zone]
domain = %[1]q
nsname = "ns-%[2]s.%[1]s"
nsadmin = "hostmaster.%[1]s"
records = ["ns-%[2]s.%[1]s. A 127.0.0.1"]
txt_ttl = 1

[dns]
listen = [%[3]q]

[api]
listen = [%[4]q]
bcrypt_cost = 10

[store]
driver = "postgres"
dsn = %[5]q
%[6]s
[values]
per_account = %[7]d
lifetime = "1h"

[log]
level = "info"
`, zone, in.name, in.dns, in.api, pg.dsn(), confirm, opts.perAccount)
		if err := os.WriteFile(filepath.Join(in.dir, "config.toml"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		c.insts = append(c.insts, in)
		c.start(i)
	}
	return c
}

// start (re)starts instance i and waits until /health is 200.
func (c *cluster) start(i int) {
	c.t.Helper()
	in := c.insts[i]
	in.proc = harness.StartProcess(c.t, harness.ProcessOptions{
		Name: "delegated-" + in.name, Path: c.bin, Dir: in.dir,
		Args: []string{"serve", "--config", filepath.Join(in.dir, "config.toml")}, GoStacks: true,
	})
	if err := in.proc.WaitReady(30*time.Second, harness.HTTPReady("http://"+in.api+"/health")); err != nil {
		c.t.Fatalf("instance %s: %v", in.name, err)
	}
}

// kill sends SIGKILL to instance i and waits until it is gone.
func (c *cluster) kill(i int) {
	c.t.Helper()
	in := c.insts[i]
	if err := in.proc.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatal(err)
	}
	<-in.proc.Done()
}

type account struct {
	Username  string `json:"username"`
	Password  string `json:"password"`
	Subdomain string `json:"subdomain"`
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func register(api string) (account, error) {
	resp, err := httpClient.Post("http://"+api+"/register", "application/json", nil)
	if err != nil {
		return account{}, err
	}
	defer resp.Body.Close()
	var a account
	if resp.StatusCode != http.StatusCreated {
		return a, fmt.Errorf("register on %s: %s", api, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, fmt.Errorf("register on %s: %w", api, err)
	}
	return a, nil
}

func update(api string, a account, txt string) error {
	body, _ := json.Marshal(map[string]string{"subdomain": a.Subdomain, "txt": txt})
	req, err := http.NewRequest(http.MethodPost, "http://"+api+"/update", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("X-Api-User", a.Username)
	req.Header.Set("X-Api-Key", a.Password)
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("update on %s: %s", api, resp.Status)
	}
	return nil
}

// txtValues returns the TXT values addr answers for the subdomain.
func txtValues(addr, subdomain string) ([]string, error) {
	m, err := harness.Query(addr, subdomain+"."+zone, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	if m.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("%s: rcode %s", subdomain, dns.RcodeToString[m.Rcode])
	}
	var vs []string
	for _, rr := range m.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			vs = append(vs, txt.Txt...)
		}
	}
	return vs, nil
}

// txtValue makes the i-th distinct 43-character DNS-01 value.
func txtValue(i int) string {
	return fmt.Sprintf("%043d", i)
}

// missingOn returns, per instance, the acknowledged values it does not
// answer.
func (c *cluster) missingOn(acked map[string][]string, insts []int) map[string]int {
	out := map[string]int{}
	for _, i := range insts {
		in := c.insts[i]
		for sub, want := range acked {
			got, err := txtValues(in.dns, sub)
			if err != nil {
				out[in.name] += len(want)
				continue
			}
			for _, v := range want {
				if !slices.Contains(got, v) {
					out[in.name]++
				}
			}
		}
	}
	return out
}
