package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/e2e/harness"
)

// daemonProcess is `delegated serve` running as a real child process.
type daemonProcess struct {
	cmd              *exec.Cmd
	stderr           *harness.LockedBuffer
	exited           chan error // receives cmd.Wait's result once
	dnsPort, apiPort int
}

// startProcess writes a config on fresh ports into dir, runs `delegated
// serve` as a real process and waits until the API is healthy. Another
// process can take a picked port between the pick and the daemon's bind; the
// daemon then exits naming the port, and this tries again on new ports.
func startProcess(t *testing.T, dir string) *daemonProcess {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p := &daemonProcess{stderr: &harness.LockedBuffer{}, exited: make(chan error, 1)}
		p.dnsPort, p.apiPort = freePort(t), freePort(t)
		writeConfig(t, dir, p.dnsPort, p.apiPort)
		p.cmd = runMain(t, dir, "serve", "--config", "config.toml")
		p.cmd.Stderr = p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { p.exited <- p.cmd.Wait() }()
		err := p.waitHealthy(20 * time.Second)
		if err == nil {
			return p
		}
		if attempt < 5 && strings.Contains(p.stderr.String(), "address already in use") {
			t.Logf("attempt %d: a port was taken, retrying: %v", attempt, err)
			continue
		}
		t.Fatalf("delegated serve: %v\n%s", err, p.stderr.String())
	}
}

func (p *daemonProcess) waitHealthy(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	url := fmt.Sprintf("http://127.0.0.1:%d/health", p.apiPort)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			return fmt.Errorf("exited before becoming healthy: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.kill()
			return fmt.Errorf("not healthy after %v", timeout)
		}
	}
}

// kill ends the process with SIGKILL, so no shutdown path runs, and waits.
func (p *daemonProcess) kill() {
	_ = p.cmd.Process.Kill()
	err := <-p.exited
	p.exited <- err
}

// TestAcknowledgedUpdatesSurviveKill9: every update that got its 200 is
// served after the process is killed without warning and started again.
func TestAcknowledgedUpdatesSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	proc := startProcess(t, dir)
	api := fmt.Sprintf("http://127.0.0.1:%d", proc.apiPort)
	status, body := postJSON(t, api+"/register", "", nil)
	if status != 201 {
		t.Fatalf("register: %d %s", status, body)
	}
	var reg struct{ Username, Password, Fulldomain, Subdomain string }
	if err := json.Unmarshal(body, &reg); err != nil {
		t.Fatal(err)
	}
	var acked []string
	for i := range 4 {
		v := fmt.Sprintf("%c%042d", 'a'+i, i)
		status, _ := postJSON(t, api+"/update", fmt.Sprintf(`{"subdomain":%q,"txt":%q}`, reg.Subdomain, v),
			map[string]string{"X-Api-User": reg.Username, "X-Api-Key": reg.Password})
		if status == 200 {
			acked = append(acked, v)
		}
	}
	if len(acked) != 4 {
		t.Fatalf("only %d of 4 updates acknowledged", len(acked))
	}
	proc.kill()

	// Fresh ports: a parallel test may have taken the killed process's.
	proc = startProcess(t, dir)
	defer proc.kill()
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", proc.dnsPort)
	got := txtsOf(query(t, "udp", dnsAddr, dns.Fqdn(reg.Fulldomain), dns.TypeTXT))
	if strings.Join(got, ",") != strings.Join(acked, ",") {
		t.Fatalf("after kill -9: served %v, acknowledged %v", got, acked)
	}
}
