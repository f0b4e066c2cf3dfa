package clients

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envServerBinary passes the delegated binary TestMain built to the tests.
// An environment variable rather than a package variable: the package holds
// no mutable state, and a caller may point it at a binary built elsewhere
// (TestMain then skips its own build).
const envServerBinary = "DELEGATED_E2E_SERVER_BINARY"

// buildTimeout bounds `go build` of the server; a cold build with cgo
// (go-sqlite3) takes about a minute on two cores.
const buildTimeout = 5 * time.Minute

// TestMain builds cmd/delegated once for every test of the package, so each
// test starts the same real binary a user would run.
func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() || os.Getenv(envServerBinary) != "" {
		os.Exit(m.Run())
	}
	os.Exit(buildAndRun(m))
}

// buildAndRun is TestMain's body with deferred cleanup (os.Exit skips
// defers).
func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "delegated-e2e-clients-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/clients: temp dir: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := buildServer(dir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e/clients: %v\n", err)
		return 1
	}
	if err := os.Setenv(envServerBinary, bin); err != nil {
		fmt.Fprintf(os.Stderr, "e2e/clients: %v\n", err)
		return 1
	}
	return m.Run()
}

// buildServer runs `go build -o dir/delegated ./cmd/delegated` from the
// module root.
func buildServer(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "delegated")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/delegated")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/delegated in %s: %w\n%s", root, err, out)
	}
	return bin, nil
}

// moduleRoot is the folder of the go.mod that holds this package.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}

// serverBinary returns the delegated binary for a test.
func serverBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv(envServerBinary)
	if bin == "" {
		t.Fatalf("%s is not set: TestMain builds the server unless -short is given", envServerBinary)
	}
	return bin
}
