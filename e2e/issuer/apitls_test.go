package e2eissuer_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/delegated/delegated/e2e/harness"
	e2e "github.com/delegated/delegated/e2e/issuer"
)

// TestAPITLSACME: with [api] tls = "acme" the daemon obtains the API's own
// certificate (zone name and wildcard) from Pebble through its own zone
// (_acme-challenge.<zone>, reached by Pebble through unbound's stub for the
// zone; no CNAME anywhere), serves it on the API listener, and after a
// forced renewal serves the new certificate without a restart. Until the
// first issuance it serves the placeholder (seen in the log), and SIGHUP
// and the CLI's pinned call to the daemon work over it.
func TestAPITLSACME(t *testing.T) {
	s := e2e.Start(t, e2e.Options{})
	// The stack starts with plain HTTP; switch the same listener to
	// tls = "acme" and restart on the same store.
	cfg, err := os.ReadFile(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := strings.TrimPrefix(s.APIURL, "http://")
	listen := fmt.Sprintf("[api]\nlisten = [%q]\n", apiAddr)
	if !strings.Contains(string(cfg), listen) {
		t.Fatalf("config has no %q:\n%s", listen, cfg)
	}
	// The zone's name and its wildcard: two authorizations validated
	// through the one name _acme-challenge.<zone>, both values at once.
	acme := fmt.Sprintf("tls = \"acme\"\nacme_domains = [%q, %q]\n", e2e.Zone, "*."+e2e.Zone)
	cfg = []byte(strings.Replace(string(cfg), listen, listen+acme, 1))
	if err := os.WriteFile(s.Config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	pid := s.Daemon.PID

	roots, err := s.Pebble.RootPool()
	if err != nil {
		t.Fatal(err)
	}
	// served verifies the API's certificate for the zone's name against
	// Pebble's root (/roots/0) and returns the leaf.
	served := func() (*x509.Certificate, error) {
		conn, err := tls.Dial("tcp", apiAddr, &tls.Config{RootCAs: roots, ServerName: e2e.Zone})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}

	var first *x509.Certificate
	harness.Eventually(t, 60*time.Second, 200*time.Millisecond, "API certificate from Pebble", func() error {
		first, err = served()
		return err
	})
	// The files are deployed (and served) before the status says active,
	// which it does once the deploy hook has run: wait for it.
	var c e2e.Cert
	harness.Eventually(t, 30*time.Second, 100*time.Millisecond, "delegated-api active", func() error {
		if c, err = s.Certificate("delegated-api"); err != nil {
			return err
		}
		if c.Status != "active" {
			return fmt.Errorf("status %s", c.Status)
		}
		return nil
	})
	if c.Serial != fmt.Sprintf("%x", first.SerialNumber) {
		t.Fatalf("delegated-api: status %s serial %s; served %x", c.Status, c.Serial, first.SerialNumber)
	}
	if names := first.DNSNames; !slices.Contains(names, e2e.Zone) || !slices.Contains(names, "*."+e2e.Zone) || len(names) != 2 {
		t.Errorf("served names %q, want %s and *.%s", names, e2e.Zone, e2e.Zone)
	}
	if err := first.VerifyHostname("www." + e2e.Zone); err != nil {
		t.Errorf("the wildcard does not cover www: %v", err)
	}

	// The API itself answers over verified HTTPS.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: e2e.Zone}}}
	resp, err := client.Get("https://" + apiAddr + "/health")
	if err != nil {
		t.Fatalf("GET /health over HTTPS: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /health: %d %s", resp.StatusCode, body)
	}

	out, code := s.CLI("renew", "--cert-name", "delegated-api", "--force")
	if code != 0 {
		t.Fatalf("renew --force: exit %d: %s", code, out)
	}
	var second *x509.Certificate
	harness.Eventually(t, 60*time.Second, 200*time.Millisecond, "renewed certificate served", func() error {
		if second, err = served(); err != nil {
			return err
		}
		if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
			return fmt.Errorf("still serving serial %x", first.SerialNumber)
		}
		return nil
	})
	c, err = s.Certificate("delegated-api")
	if err != nil {
		t.Fatal(err)
	}
	if c.Serial != fmt.Sprintf("%x", second.SerialNumber) {
		t.Errorf("served serial %x, stored %s", second.SerialNumber, c.Serial)
	}
	if exited, _ := s.Daemon.Exited(); exited || s.Daemon.PID != pid {
		t.Fatalf("daemon restarted or exited (pid %d, was %d)", s.Daemon.PID, pid)
	}
	// The CLI's call to its own daemon pins the deployed certificate.
	// (Stack.CLI puts --config after the verb; account takes a sub-verb.)
	add := exec.Command(s.Bin, "account", "add", "--config", s.Config)
	add.Dir = s.Dir
	var stderr strings.Builder
	add.Stderr = &stderr
	raw, err := add.Output()
	out = string(raw)
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("account add over tls = \"acme\": %v: %s%s", err, stderr.String(), out)
	}
	// The daemon republished the account (POST /sync over the pinned
	// TLS): its name answers NODATA at once, not NXDOMAIN.
	var creds struct {
		Fulldomain string `json:"fulldomain"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 3)[1]), &creds); err != nil || creds.Fulldomain == "" {
		t.Fatalf("account add output: %v: %s", err, out)
	}
	if m, err := harness.Query(s.DNSAddr, creds.Fulldomain+".", dns.TypeTXT); err != nil || m.Rcode != dns.RcodeSuccess {
		t.Fatalf("%s after account add: %v %v, want NOERROR (synced by the daemon)", creds.Fulldomain, m, err)
	}
	// SIGHUP reloads (and does not stop the daemon).
	if err := s.Daemon.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, 50*time.Millisecond, "SIGHUP reload", func() error {
		b, err := os.ReadFile(s.Daemon.LogPath)
		if err != nil || !strings.Contains(string(b), "SIGHUP; reloading the API certificate") {
			return fmt.Errorf("no SIGHUP reload logged (%v)", err)
		}
		return nil
	})
	if _, err := served(); err != nil {
		t.Fatalf("after SIGHUP: %v", err)
	}

	// The first run of this config started before the certificate
	// existed: the log says the placeholder was served, and each deploy
	// reloaded the served certificate.
	log, err := os.ReadFile(s.Daemon.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"serving a self-signed placeholder", "API certificate requested", "API certificate deployed; reloading it"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("daemon log lacks %q", want)
		}
	}
	t.Logf("API certificate renewed without restart: serial %x -> %x", first.SerialNumber, second.SerialNumber)
}
