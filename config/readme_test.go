// Checks that the README's configuration table is the one Keys gives;
// `go test ./config -run TestReadme -update` rewrites it.
package config

import (
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the README's configuration table from Keys")

const tableHeader = "| key | environment | default | meaning |\n|---|---|---|---|\n"

// readmeTable returns the configuration table of the README, one row per key.
func readmeTable() string {
	var b strings.Builder
	b.WriteString(tableHeader)
	for _, k := range Keys() {
		def := "|"
		if k.Default != "" {
			def = "`" + strings.ReplaceAll(k.Default, "|", `\|`) + "` |"
		}
		b.WriteString("| `" + k.Key + "` | `" + k.Env + "` | " + def + " " + strings.ReplaceAll(k.Doc, "|", `\|`) + " |\n")
	}
	return b.String()
}

// TestReadmeDocumentsEveryKey: the README's configuration table lists every
// key with its environment variable, current default and documentation.
func TestReadmeDocumentsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	start := strings.Index(text, tableHeader)
	if start < 0 {
		t.Fatal("README.md has no configuration table")
	}
	end := start + strings.Index(text[start:], "\n\n") + 1
	got, want := text[start:end], readmeTable()
	if got == want {
		return
	}
	if *update {
		if err := os.WriteFile("../README.md", []byte(text[:start]+want+text[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	gotRows, wantRows := strings.Split(got, "\n"), strings.Split(want, "\n")
	for _, w := range wantRows {
		if !strings.Contains(got, w+"\n") {
			t.Errorf("README.md lacks the row %q", w)
		}
	}
	if len(gotRows) != len(wantRows) {
		t.Errorf("README.md's table has %d lines, want %d", len(gotRows), len(wantRows))
	}
	t.Log("go test ./config -run TestReadme -update rewrites it")
}
