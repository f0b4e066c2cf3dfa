package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/delegated/delegated/config"
)

// TestDockerfile guards what no engine checks here: the image builds this
// command with cgo, ships that binary as the entrypoint, runs as a non-root
// user able to bind port 53, and its baked-in config is valid.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	build := regexp.MustCompile(`(?m)^RUN CGO_ENABLED=1 go build .*-o (\S+) \./cmd/delegated$`).FindStringSubmatch(df)
	if build == nil {
		t.Fatal("no cgo-enabled `go build -o BIN ./cmd/delegated` step")
	}
	copyStep := regexp.MustCompile(`(?m)^COPY --from=build (\S+) (\S+)$`).FindStringSubmatch(df)
	if copyStep == nil || copyStep[1] != build[1] {
		t.Fatalf("runtime stage does not copy the built binary %s: %v", build[1], copyStep)
	}
	bin := copyStep[2]
	for _, want := range []string{
		`ENTRYPOINT ["` + bin + `"]`,
		"setcap cap_net_bind_service=+ep " + bin,
		"EXPOSE 53/udp 53/tcp 443",
		"USER delegated",
		"COPY deploy/docker/config.toml /etc/delegated/config.toml",
		`CMD ["serve", "--config", "/etc/delegated/config.toml"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	stages := regexp.MustCompile(`(?m)^FROM .*$`).FindAllString(df, -1)
	if len(stages) != 2 || !strings.HasPrefix(stages[0], "FROM golang:") || !strings.HasSuffix(stages[0], " AS build") {
		t.Errorf("expected two stages, a golang build stage and a slim runtime stage: %q", stages)
	}
	cfg, err := config.Load("../../deploy/docker/config.toml")
	if err != nil {
		t.Fatalf("image config: %v", err)
	}
	if cfg.Store.DSN != "/var/lib/delegated/delegated.db" {
		t.Errorf("image store %s is not on the volume", cfg.Store.DSN)
	}
}
