package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestDialable(t *testing.T) {
	for in, want := range map[string]string{
		"0.0.0.0:53": "127.0.0.1:53", "[::]:8053": "127.0.0.1:8053", "192.0.2.1:53": "192.0.2.1:53", "[::1]:5053": "[::1]:5053",
	} {
		if got := dialable(in); got != want {
			t.Errorf("dialable(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestHealthVerb: `delegated health` exits 0 against a serving daemon and
// 1, naming what failed, once it is gone.
func TestHealthVerb(t *testing.T) {
	d := startExtDaemon(t, writeExtConfig(t, t.TempDir(), ""))
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"health", "--config", d.cfgPath}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d against a serving daemon: %s %s", code, stdout.String(), stderr.String())
	}
	if out := stdout.String(); !strings.Contains(out, "/health: 200 OK") || !strings.Contains(out, "SOA auth.example.test. serial") {
		t.Fatalf("output:\n%s", out)
	}
	d.stop(t)
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"health", "--config", d.cfgPath, "--timeout", "2s"}, nil, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d against a stopped daemon, want 1: %s %s", code, stdout.String(), stderr.String())
	}
	if msg := stderr.String(); !strings.Contains(msg, "api http://") || !strings.Contains(msg, "dns 127.0.0.1:") {
		t.Fatalf("message does not name both failed checks: %s", msg)
	}
}
