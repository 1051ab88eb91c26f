package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// builds caches the binaries built by BuildBinary for the life of the test
// binary, so that each main package is built once however many tests run it.
var builds struct {
	mu   sync.Mutex
	dir  string
	bins map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// BuildBinary builds the main package pkg (an import path, or a path
// relative to the module root such as "./cmd/streamworker") once per test
// binary run and returns the executable's path, for tests that run it as a
// separate process. Main removes the binaries when the tests end. It is safe
// for concurrent use.
func BuildBinary(tb testing.TB, pkg string) string {
	tb.Helper()
	return BuildBinaryTags(tb, pkg)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

// removeBinaries deletes the directory of the built binaries.
func removeBinaries() {
	builds.mu.Lock()
	defer builds.mu.Unlock()
	if builds.dir != "" {
		_ = os.RemoveAll(builds.dir)
		builds.dir = ""
		builds.bins = nil
	}
}
