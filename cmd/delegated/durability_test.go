package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startProcess runs `delegated serve` as a real process on the config in
// dir and waits until the API is healthy.
func startProcess(t *testing.T, dir string, apiPort int) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := runMain(t, dir, "serve")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", apiPort))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return cmd, &stderr
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("not ready: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAcknowledgedUpdatesSurviveKill9: every update that got its 200 is
// served after the process is killed without warning and started again.
func TestAcknowledgedUpdatesSurviveKill9(t *testing.T) {
	dir := t.TempDir()
	dnsPort, apiPort := freePort(t), freePort(t)
	writeConfig(t, dir, dnsPort, apiPort)
	api := fmt.Sprintf("http://127.0.0.1:%d", apiPort)

	cmd, _ := startProcess(t, dir, apiPort)
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
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown path runs
		t.Fatal(err)
	}
	cmd.Wait()

	// Fresh ports: a parallel test may have taken the killed process's.
	dnsPort, apiPort = freePort(t), freePort(t)
	writeConfig(t, dir, dnsPort, apiPort)
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	cmd, _ = startProcess(t, dir, apiPort)
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	got := txtsOf(query(t, "udp", dnsAddr, dns.Fqdn(reg.Fulldomain), dns.TypeTXT))
	if strings.Join(got, ",") != strings.Join(acked, ",") {
		t.Fatalf("after kill -9: served %v, acknowledged %v", got, acked)
	}
}
