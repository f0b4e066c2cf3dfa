package harness

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestStack starts the recipe's stack (challtestsrv as the customer zone,
// unbound stubbing it, Pebble resolving through unbound) and checks each link.
func TestStack(t *testing.T) {
	t.Parallel()
	start := time.Now()
	cts := StartChallTestSrv(t)
	ub := StartUnbound(t, map[string]string{"example.test": cts.DNSAddr})
	pb := StartPebble(t, PebbleOptions{DNSServer: ub.Addr})
	t.Logf("stack up in %s: challtestsrv %s, unbound %s, pebble %s", time.Since(start), cts.DNSAddr, ub.Addr, pb.DirectoryURL)

	const host = "_acme-challenge.example.test."
	const target = "0f3c.auth.example.test."
	if err := cts.SetCNAME(host, target); err != nil {
		t.Fatal(err)
	}
	rrs, _, err := Resolve(ub.Addr, host, dns.TypeCNAME)
	if err != nil {
		t.Fatalf("CNAME through unbound: %v", err)
	}
	if got := rrs[0].(*dns.CNAME).Target; got != target {
		t.Fatalf("CNAME target = %q, want %q", got, target)
	}

	// Even with cache-max-ttl 0 unbound keeps an rrset until the end of
	// the current second (its clock has whole seconds), so a replaced
	// CNAME can linger for up to 1 s: poll.
	if err := cts.ClearCNAME(host); err != nil {
		t.Fatal(err)
	}
	if err := cts.SetTXT(host, "token-1"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 3*time.Second, 50*time.Millisecond, "TXT through unbound", func() error {
		rrs, _, err := Resolve(ub.Addr, host, dns.TypeTXT)
		if err != nil {
			return err
		}
		if got := rrs[0].(*dns.TXT).Txt; len(got) != 1 || got[0] != "token-1" {
			return fmt.Errorf("TXT = %q, want [token-1]", got)
		}
		return nil
	})

	// Outside the stub zones unbound refuses rather than recursing to the
	// internet.
	r, err := Query(ub.Addr, "example.com.", dns.TypeA)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeRefused {
		t.Fatalf("query outside stubs: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}

	resp, err := pb.HTTPClient().Get(pb.DirectoryURL)
	if err != nil {
		t.Fatalf("pebble directory: %v", err)
	}
	defer resp.Body.Close()
	var dir map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil {
		t.Fatalf("pebble directory: %v", err)
	}
	for _, k := range []string{"newAccount", "newNonce", "newOrder", "renewalInfo"} {
		if _, ok := dir[k].(string); !ok {
			t.Errorf("pebble directory lacks %q: %v", k, dir)
		}
	}
	root, err := pb.Root()
	if err != nil {
		t.Fatal(err)
	}
	if !root.IsCA {
		t.Errorf("pebble root %s is not a CA", root.Subject)
	}
	if _, err := pb.CertStatus(big.NewInt(0x1234)); !errors.Is(err, ErrCertNotFound) {
		t.Errorf("CertStatus(unknown) = %v, want ErrCertNotFound", err)
	}
}

func zoneText(serial uint32, txt string) string {
	return fmt.Sprintf(`$ORIGIN example.test.
$TTL 0
@               SOA ns hostmaster %d 3600 600 86400 0
@               NS  ns
ns              A   127.0.0.1
_acme-challenge CNAME 0f3c.auth.example.test.
probe           TXT %q
`, serial, txt)
}

// TestNSDReload checks that NSD serves its zone, also through unbound, and
// that Reload makes a new serial visible.
func TestNSDReload(t *testing.T) {
	t.Parallel()
	nsd := StartNSD(t, "example.test", zoneText(1, "one"))
	ub := StartUnbound(t, map[string]string{"example.test": nsd.Addr})
	checkAuthorityReload(t, nsd.Addr, ub.Addr, nsd.Reload)
}

// TestKnotReload is TestNSDReload for knotd.
func TestKnotReload(t *testing.T) {
	t.Parallel()
	knot := StartKnot(t, "example.test", zoneText(1, "one"))
	ub := StartUnbound(t, map[string]string{"example.test": knot.Addr})
	checkAuthorityReload(t, knot.Addr, ub.Addr, knot.Reload)
}

func checkAuthorityReload(t *testing.T, authAddr, resolverAddr string, reload func(string) error) {
	t.Helper()
	r, err := Query(authAddr, "_acme-challenge.example.test.", dns.TypeTXT)
	if err != nil {
		t.Fatal(err)
	}
	// NXDOMAIN is right: the CNAME target lies inside example.test (under
	// the unserved auth.example.test) and does not exist there.
	if !r.Authoritative || r.Rcode != dns.RcodeNameError || len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Fatalf("want an authoritative NXDOMAIN with the CNAME, got:\n%s", r)
	}
	if r, err = Query(authAddr, "missing.example.test.", dns.TypeTXT); err != nil {
		t.Fatal(err)
	} else if r.Rcode != dns.RcodeNameError {
		t.Fatalf("missing name: rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	txt := func(addr string) string {
		rrs, _, err := Resolve(addr, "probe.example.test.", dns.TypeTXT)
		if err != nil {
			return err.Error()
		}
		return strings.Join(rrs[0].(*dns.TXT).Txt, "")
	}
	if got := txt(resolverAddr); got != "one" {
		t.Fatalf("through unbound before reload: %q, want one", got)
	}

	start := time.Now()
	if err := reload(zoneText(2, "two")); err != nil {
		t.Fatal(err)
	}
	t.Logf("reload visible in %s", time.Since(start))
	if got, err := SOASerial(authAddr, "example.test"); err != nil || got != 2 {
		t.Fatalf("serial after reload = %d, %v; want 2", got, err)
	}
	if got := txt(authAddr); got != "two" {
		t.Fatalf("authority after reload: %q, want two", got)
	}
	if got := txt(resolverAddr); got != "two" {
		t.Fatalf("through unbound after reload: %q, want two", got)
	}
	if err := reload("@ A not-an-address\n"); err == nil {
		t.Fatal("reload of an unparsable zone succeeded")
	}
}

// fakeTB records Skip and Fatal instead of ending the goroutine, to observe
// RequireTool's choice.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Skip(args ...any)               { f.skipped = fmt.Sprint(args...) }
func (f *fakeTB) Fatalf(format string, a ...any) { f.failed = fmt.Sprintf(format, a...) }

func TestRequireToolMissing(t *testing.T) {
	const name, hint = "no-such-tool-e2e", "apt-get install no-such-tool"
	t.Setenv(EnvE2EBin, t.TempDir())

	t.Setenv(EnvCI, "")
	f := &fakeTB{TB: t}
	RequireTool(f, name, hint)
	if f.failed != "" || !strings.Contains(f.skipped, hint) {
		t.Errorf("without CI: skipped %q, failed %q; want a skip naming %q", f.skipped, f.failed, hint)
	}

	t.Setenv(EnvCI, "true")
	f = &fakeTB{TB: t}
	RequireTool(f, name, hint)
	if f.skipped != "" || !strings.Contains(f.failed, hint) {
		t.Errorf("with CI: skipped %q, failed %q; want a failure naming %q", f.skipped, f.failed, hint)
	}
}

func TestRequireToolFindsE2EBin(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvE2EBin, dir)
	exe := dir + "/e2e-fake-tool"
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := RequireTool(t, "e2e-fake-tool", "n/a"); got != exe {
		t.Fatalf("RequireTool = %q, want %q", got, exe)
	}
}

// TestStopKillsStubbornGroup checks the SIGKILL fallback: the shell ignores
// SIGTERM and its child sleep must die with it.
func TestStopKillsStubbornGroup(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p, err := startProcess(ProcessOptions{
		Path: sh, Args: []string{"-c", `trap "" TERM; sleep 60 & echo child $!; wait`},
		Dir: t.TempDir(), StopTimeout: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if err := poll(5*time.Second, 10*time.Millisecond, func() error {
		_, err := fmt.Sscanf(p.LogTail(1), "child %d", &child)
		return err
	}); err != nil {
		t.Fatalf("child pid: %v", err)
	}
	start := time.Now()
	err = p.Stop()
	if err == nil || !strings.Contains(err.Error(), "ignored SIGTERM") {
		t.Errorf("Stop = %v, want an ignored-SIGTERM error", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Stop took %s", d)
	}
	// The killed sleep was reparented; until its new parent reaps it, it
	// is a zombie, which is dead enough.
	if err := poll(2*time.Second, 10*time.Millisecond, func() error {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", child))
		if err != nil {
			return nil
		}
		if f := strings.Fields(string(b)); len(f) > 2 && f[2] == "Z" {
			return nil
		}
		return fmt.Errorf("child %d still alive: %s", child, b)
	}); err != nil {
		t.Error(err)
	}
}

// TestWaitReadyReportsExit checks that a process dying during startup fails
// fast with its log, not after the timeout.
func TestWaitReadyReportsExit(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p, err := startProcess(ProcessOptions{Path: sh, Args: []string{"-c", "echo bind: address already in use; exit 3"}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	err = p.WaitReady(10*time.Second, func() error { return http.ErrServerClosed })
	if !errors.Is(err, errExited) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("WaitReady = %v, want errExited with the log tail", err)
	}
}

// TestServiceUnderTest walks the path a suite takes for its own binary:
// build, start on a free port, wait for HTTP, stop by PID.
func TestServiceUnderTest(t *testing.T) {
	t.Parallel()
	bin := GoBuild(t, "./testdata/httpserver")
	addr := FreeAddr(t)
	p := StartProcess(t, ProcessOptions{Path: bin, Args: []string{"-addr", addr}})
	if err := p.WaitReady(0, HTTPReady("http://"+addr+"/")); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if exited, err := p.Exited(); !exited || err != nil {
		t.Fatalf("after Stop: exited %v, %v; want a clean exit", exited, err)
	}
	if tail := p.LogTail(1); tail != "stopped" {
		t.Fatalf("log tail %q, want the graceful-shutdown line", tail)
	}
}

// TestUnboundBeforeAuthority starts unbound while its stub's authority is
// still down (the service under test is often started after the resolver):
// unbound must come up at once and resolve once the authority is up.
func TestUnboundBeforeAuthority(t *testing.T) {
	t.Parallel()
	port := FreePort(t)
	start := time.Now()
	ub := StartUnbound(t, map[string]string{"example.test": HostPort(port)})
	if d := time.Since(start); d > time.Second {
		t.Errorf("unbound took %s to start with its authority down", d)
	}
	StartNSDWith(t, NSDOptions{Port: port, Zones: []Zone{{Name: "example.test", Content: zoneText(7, "later")}}})
	start = time.Now()
	Eventually(t, 10*time.Second, 50*time.Millisecond, "resolve through unbound", func() error {
		_, _, err := Resolve(ub.Addr, "probe.example.test.", dns.TypeTXT)
		return err
	})
	t.Logf("resolvable through unbound %s after the authority started", time.Since(start))
}

// TestIssuanceThroughStack has the lego CLI obtain a certificate from Pebble
// with DNS-01 answered by challtestsrv (lego's exec provider posts the TXT),
// so Pebble's VA really resolves through unbound. It proves the stack
// issues, and exercises Root and CertStatus on a real certificate.
func TestIssuanceThroughStack(t *testing.T) {
	t.Parallel()
	lego := RequireTool(t, "lego", HintLego)
	curl := RequireTool(t, "curl", HintCurl)
	cts := StartChallTestSrv(t)
	ub := StartUnbound(t, map[string]string{"example.test": cts.DNSAddr})
	pb := StartPebble(t, PebbleOptions{DNSServer: ub.Addr})

	dir := t.TempDir()
	hook := dir + "/hook.sh"
	script := fmt.Sprintf(`#!/bin/sh
set -eu
case "$1" in
present) exec %[1]s -fsS --noproxy '*' -X POST %[2]s/set-txt -d "{\"host\":\"$2\",\"value\":\"$3\"}" ;;
cleanup) exec %[1]s -fsS --noproxy '*' -X POST %[2]s/clear-txt -d "{\"host\":\"$2\"}" ;;
esac
`, curl, cts.ManagementURL)
	if err := os.WriteFile(hook, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(lego, "--server", pb.DirectoryURL, "--accept-tos", "--email", "e2e@example.test",
		"--path", dir+"/lego", "--dns", "exec", "--dns.resolvers", ub.Addr,
		"--dns.propagation-disable-ans", "--dns.propagation-rns", "-d", "example.test", "run")
	cmd.Env = append(cmd.Environ(), pb.ClientEnv()...)
	cmd.Env = append(cmd.Env, "EXEC_PATH="+hook, "EXEC_POLLING_INTERVAL=1", "EXEC_PROPAGATION_TIMEOUT=30")
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("lego run: %v\n%s", err, out)
	}
	t.Logf("lego obtained a certificate in %s", time.Since(start))

	pemBytes, err := os.ReadFile(dir + "/lego/certificates/example.test.crt")
	if err != nil {
		t.Fatal(err)
	}
	var chain []*x509.Certificate
	for rest := pemBytes; ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, c)
	}
	if len(chain) < 2 {
		t.Fatalf("bundle has %d certificates, want leaf and intermediate", len(chain))
	}
	roots, err := pb.RootPool()
	if err != nil {
		t.Fatal(err)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{DNSName: "example.test", Roots: roots, Intermediates: inter}); err != nil {
		t.Fatalf("issued certificate does not verify against Pebble's root: %v", err)
	}
	st, err := pb.CertStatus(chain[0].SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "Valid" {
		t.Fatalf("cert status %q, want Valid", st.Status)
	}
}

func TestStartWithRetry(t *testing.T) {
	calls := 0
	v, err := startWithRetry(true, func() (int, error) {
		calls++
		if calls < startAttempts {
			return 0, fmt.Errorf("bind: %w", errPortInUse)
		}
		return 42, nil
	})
	if err != nil || v != 42 || calls != startAttempts {
		t.Fatalf("retry on port clash: %d, %v after %d calls", v, err, calls)
	}

	calls = 0
	_, err = startWithRetry(false, func() (int, error) {
		calls++
		return 0, fmt.Errorf("early exit: %w", errExited)
	})
	if err == nil || calls != 1 {
		t.Fatalf("caller-chosen ports must not be retried: %v after %d calls", err, calls)
	}

	calls = 0
	_, err = startWithRetry(true, func() (int, error) {
		calls++
		return 0, errors.New("config rejected")
	})
	if err == nil || calls != 1 {
		t.Fatalf("other errors must not be retried: %v after %d calls", err, calls)
	}
}

// TestGoStacks: a Go process stopped for a failed test leaves a stack
// dump; the goroutines that waited a minute or more are the ones quoted.
func TestGoStacks(t *testing.T) {
	t.Parallel()
	bin := GoBuild(t, "./testdata/httpserver")
	addr := FreeAddr(t)
	p := StartProcess(t, ProcessOptions{Path: bin, Args: []string{"-addr", addr}, GoStacks: true})
	if err := p.WaitReady(0, HTTPReady("http://"+addr+"/")); err != nil {
		t.Fatal(err)
	}
	got := p.stuckGoroutines()
	// A server up for a second has no goroutine waiting for minutes, but
	// the runtime must have dumped them all (GOTRACEBACK=all).
	if !regexp.MustCompile(`^stack dump: none of ([2-9]|\d{2,}) goroutines blocked`).MatchString(got) {
		t.Fatalf("stuckGoroutines = %q", got)
	}
	if exited, _ := p.Exited(); !exited {
		t.Fatal("the process still runs after its stack dump")
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop after the dump: %v", err)
	}
}

func TestBlockedGoroutines(t *testing.T) {
	const dump = `started
SIGQUIT: quit
PC=0x47a1c1 m=0 sigcode=0

goroutine 0 gp=0x7a3e20 m=0 mp=0x7a4c40 [idle]:
runtime.futex(0x7a4d80, 0x80, 0x0)

goroutine 1 gp=0xc000002380 m=nil [IO wait]:
internal/poll.runtime_pollWait(0x7f, 0x72)

goroutine 21 gp=0xc0000a2000 m=nil [sync.RWMutex.RLock, 3 minutes]:
sync.(*RWMutex).RLock(...)
github.com/letsencrypt/pebble/v2/wfe.(*WebFrontEndImpl).orderForDisplay(0xc000120000)

goroutine 22 gp=0xc0000a2380 m=nil [select, 1 minutes]:
main.wait()

rax    0xca
`
	for _, tc := range []struct {
		name     string
		dump     string
		maxLines int
		want     []string
		notWant  []string
	}{
		{"picks the long waits", dump, 100, []string{"(of 4)", "goroutine 21 ", "orderForDisplay", "goroutine 22 "}, []string{"goroutine 1 ", "IO wait", "idle"}},
		{"bounded", dump, 3, []string{"goroutine 21 ", "more left out"}, []string{"goroutine 22 "}},
		{"none blocked", "SIGQUIT: quit\n\ngoroutine 1 [running]:\nmain.main()\n", 100, []string{"none of 1 goroutines"}, nil},
		{"no dump", "just a log line\n", 100, []string{"no goroutine dump"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := blockedGoroutines(tc.dump, tc.maxLines)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(got, w) {
					t.Errorf("has %q:\n%s", w, got)
				}
			}
		})
	}
}
