package harness

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// GoBuild builds the main package pkg (an import path or a path relative to
// the test's package directory, such as "../../cmd/delegated") into a new
// temp dir and returns the binary's path. Flags such as "-race" go in
// buildFlags. The build cache makes repeated calls cheap (a link), so tests
// may call it each; a suite that wants one build shares the path via
// TestMain.
func GoBuild(t testing.TB, pkg string, buildFlags ...string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(strings.TrimSuffix(pkg, "/")))
	args := append([]string{"build", "-o", out}, buildFlags...)
	args = append(args, pkg)
	if _, err := runTool(10*time.Minute, "", "go", args...); err != nil {
		t.Fatalf("harness: %v", err)
	}
	return out
}
