package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestListenCollisions: addresses that cannot bind together are refused
// at load, naming the second.
func TestListenCollisions(t *testing.T) {
	for _, tc := range []struct{ dns, key string }{
		{`["0.0.0.0:53", "[::]:53"]`, "dns.listen[1]"},
		{`["[::]:53", "0.0.0.0:53"]`, "dns.listen[1]"},
		{`["127.0.0.1:53", "192.0.2.1:53", "127.0.0.1:53"]`, "dns.listen[2]"},
		{`["0.0.0.0:53", "[::]:54"]`, ""},
		{`["127.0.0.1:53", "[::1]:53"]`, ""},
	} {
		_, err := Parse([]byte("[zone]\ndomain = \"auth.example.org\"\n[dns]\nlisten = "+tc.dns+"\n"), filepath.Join(t.TempDir(), "config.toml"))
		if tc.key == "" {
			if err != nil {
				t.Errorf("%s refused: %v", tc.dns, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.key+": ") || !strings.Contains(err.Error(), "collides") {
			t.Errorf("%s: %v, want a collision on %s", tc.dns, err, tc.key)
		}
	}
}
