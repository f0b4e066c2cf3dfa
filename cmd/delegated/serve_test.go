package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/config"
	"github.com/delegated/delegated/e2e/harness"
)

// TestMain lets tests run this binary's main as a real process (for
// signals and exit codes) without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("DELEGATED_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

const testConfig = `
[zone]
domain = "auth.example.test"
nsname = "ns1.auth.example.test"
nsadmin = "hostmaster.example.test"
records = ["auth.example.test. A 127.0.0.1", "ns1.auth.example.test. A 127.0.0.1"]

[dns]
listen = ["127.0.0.1:%d"]

[api]
listen = ["127.0.0.1:%d"]
bcrypt_cost = 10

[store]
dsn = "state/test.db"
`

func writeConfig(t *testing.T, dir string, dnsPort, apiPort int) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, fmt.Appendf(nil, testConfig, dnsPort, apiPort), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type running struct {
	dns, api string
	done     chan error
	cancel   context.CancelFunc
}

// startServe runs serve in-process on free ports with the config in dir.
func startServe(t *testing.T, dir string) *running {
	t.Helper()
	cfg, err := config.Load(writeConfig(t, dir, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DNS.Listen = []string{"127.0.0.1:0"}
	cfg.API.Listen = []string{"127.0.0.1:0"}
	return startServeConfig(t, cfg)
}

// startServeConfig runs serve in-process on cfg until the test ends (or
// stop), once it is ready.
func startServeConfig(t *testing.T, cfg *config.Config) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{done: make(chan error, 1), cancel: cancel}
	ready := make(chan struct{})
	go func() {
		r.done <- serve(ctx, cfg, slog.New(slog.DiscardHandler), func(dnsAddrs, apiAddrs []string) {
			r.dns, r.api = dnsAddrs[0], apiAddrs[0]
			close(ready)
		})
	}()
	select {
	case <-ready:
	case err := <-r.done:
		t.Fatalf("serve ended early: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not become ready")
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("serve returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("serve did not stop within 5 s")
	}
}

func query(t *testing.T, network, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s query %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return resp
}

func txtsOf(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(txt.Txt, ""))
		}
	}
	return out
}

func postJSON(t *testing.T, url, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestServeRegisterUpdateQueryRestart is the newcomer's tour as a test:
// register, update, query over UDP and TCP, restart on the same file, and
// the value is still served.
func TestServeRegisterUpdateQueryRestart(t *testing.T) {
	dir := t.TempDir()
	srv := startServe(t, dir)
	status, body := postJSON(t, "http://"+srv.api+"/register", "", nil)
	if status != 201 {
		t.Fatalf("register: %d %s", status, body)
	}
	var reg struct{ Username, Password, Fulldomain, Subdomain string }
	if err := json.Unmarshal(body, &reg); err != nil {
		t.Fatal(err)
	}
	name := dns.Fqdn(reg.Fulldomain)

	// Registered, no value yet: the name exists (NODATA, not NXDOMAIN).
	if m := query(t, "udp", srv.dns, name, dns.TypeTXT); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 || !m.Authoritative {
		t.Fatalf("before update: %v", m)
	}
	values := []string{strings.Repeat("a", 43), strings.Repeat("b", 43)}
	for _, v := range values {
		status, body := postJSON(t, "http://"+srv.api+"/update",
			fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, reg.Subdomain, v),
			map[string]string{"X-Api-User": reg.Username, "X-Api-Key": reg.Password})
		if status != 200 {
			t.Fatalf("update: %d %s", status, body)
		}
		// Served before /update returned: no waiting, no polling.
	}
	for _, network := range []string{"udp", "tcp"} {
		m := query(t, network, srv.dns, strings.ToUpper(name), dns.TypeTXT)
		if got := txtsOf(m); fmt.Sprint(got) != fmt.Sprint(values) || !m.Authoritative {
			t.Fatalf("%s: TXT %v, want %v (%v)", network, got, values, m)
		}
		if m.Answer[0].Header().Name != strings.ToUpper(name) {
			t.Errorf("%s: owner %q does not keep the query's case", network, m.Answer[0].Header().Name)
		}
	}
	if m := query(t, "udp", srv.dns, "nope."+dns.Fqdn("auth.example.test"), dns.TypeTXT); m.Rcode != dns.RcodeNameError {
		t.Fatalf("unregistered name: rcode %s", dns.RcodeToString[m.Rcode])
	}
	if m := query(t, "udp", srv.dns, "example.com.", dns.TypeA); m.Rcode != dns.RcodeRefused {
		t.Fatalf("out of zone: rcode %s", dns.RcodeToString[m.Rcode])
	}

	srv.stop(t)
	srv = startServe(t, dir)
	if got := txtsOf(query(t, "udp", srv.dns, name, dns.TypeTXT)); fmt.Sprint(got) != fmt.Sprint(values) {
		t.Fatalf("after restart: %v, want %v", got, values)
	}
	// The restarted API still knows the credentials (cold cache: bcrypt).
	status, body = postJSON(t, "http://"+srv.api+"/update",
		fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, reg.Subdomain, strings.Repeat("c", 43)),
		map[string]string{"X-Api-User": reg.Username, "X-Api-Key": reg.Password})
	if status != 200 {
		t.Fatalf("update after restart: %d %s", status, body)
	}
}

// runMain runs the test binary as the delegated command.
func runMain(t *testing.T, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DELEGATED_RUN_MAIN=1")
	return cmd
}

func TestBadConfigExitsTwoNamingTheKey(t *testing.T) {
	cases := []struct{ name, file, wantKey string }{
		{"unknown key", "[zone]\ndomain = \"a.test\"\ncolour = 1\n", "zone.colour"},
		{"missing domain", "[dns]\nlisten = [\"127.0.0.1:5353\"]\n", "zone.domain"},
		{"bad record", "[zone]\ndomain = \"a.test\"\nrecords = [\"a.test. A notanip\"]\n", "zone.records[0]"},
		{"record outside zone", "[zone]\ndomain = \"a.test\"\nrecords = [\"b.test. A 127.0.0.1\"]\n", "zone.records[0]"},
		{"bad address", "[zone]\ndomain = \"a.test\"\n[dns]\nlisten = [\"localhost\"]\n", "dns.listen[0]"},
		{"bad api address", "[zone]\ndomain = \"a.test\"\n[api]\nlisten = [\"1.2.3.4\"]\n", "api.listen[0]"},
		{"bad driver", "[zone]\ndomain = \"a.test\"\n[store]\ndriver = \"mysql\"\n", "store.driver"},
		{"bad lifetime", "[zone]\ndomain = \"a.test\"\n[values]\nlifetime = \"soon\"\n", ""},
		{"per_account too small", "[zone]\ndomain = \"a.test\"\n[values]\nper_account = 1\n", "values.per_account"},
		{"toml syntax", "[zone\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(c.file), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := runMain(t, dir, "serve")
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 2 {
				t.Fatalf("exit %d (%v), want 2; stderr: %s", code, err, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.wantKey) {
				t.Errorf("message does not name %q: %s", c.wantKey, stderr.String())
			}
			if _, err := os.Stat(filepath.Join(dir, "delegated.db")); err == nil {
				t.Error("a store was created for a refused config")
			}
		})
	}
}

func TestSignalsStopCleanly(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			proc := startProcess(t, t.TempDir())
			start := time.Now()
			if err := proc.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-proc.exited:
				if err != nil {
					t.Fatalf("exit: %v; stderr: %s", err, proc.stderr.String())
				}
			case <-time.After(5 * time.Second):
				proc.kill()
				t.Fatalf("still running 5 s after %v", sig)
			}
			t.Logf("stopped %v after %v", sig, time.Since(start))
			if !strings.Contains(proc.stderr.String(), "stopped") {
				t.Errorf("no orderly stop logged: %s", proc.stderr.String())
			}
		})
	}
}

// freePort finds a port free for both UDP and TCP on 127.0.0.1, outside
// the range other tests' client sockets draw from.
func freePort(t *testing.T) int {
	t.Helper()
	return harness.FreePort(t)
}
