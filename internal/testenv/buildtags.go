package testenv

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BuildBinaryTags is BuildBinary with build tags (for test-only hooks
// compiled into a binary, such as the worker's crash points). Each distinct
// package and tag set is built once per test binary run.
func BuildBinaryTags(tb testing.TB, pkg string, tags ...string) string {
	tb.Helper()
	key := pkg
	if len(tags) > 0 {
		key += " -tags=" + strings.Join(tags, ",")
	}
	builds.mu.Lock()
	if builds.bins == nil {
		builds.bins = map[string]*build{}
	}
	b, ok := builds.bins[key]
	if !ok {
		b = &build{}
		builds.bins[key] = b
	}
	builds.mu.Unlock()
	b.once.Do(func() { b.path, b.err = goBuild(key, pkg, tags) })
	if b.err != nil {
		tb.Fatalf("testenv: build %s: %v", key, b.err)
	}
	return b.path
}

// goBuild builds pkg with tags into the builds directory, under a name
// derived from key.
func goBuild(key, pkg string, tags []string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	builds.mu.Lock()
	if builds.dir == "" {
		builds.dir, err = os.MkdirTemp("", "testenv-bin-")
	}
	dir := builds.dir
	builds.mu.Unlock()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(key))
	out := filepath.Join(dir, fmt.Sprintf("%s-%x", filepath.Base(pkg), sum[:4]))
	args := []string{"build", "-o", out}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%w\n%s", err, stderr.String())
	}
	return out, nil
}
