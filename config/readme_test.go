package config

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeDocumentsEveryKey: the README's configuration table lists every
// key with its environment variable and current default.
func TestReadmeDocumentsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		row := "| `" + k.Key + "` | `" + k.Env + "` | "
		if k.Default != "" {
			row += "`" + strings.ReplaceAll(k.Default, "|", `\|`) + "` |"
		}
		if !strings.Contains(string(readme), row) {
			t.Errorf("README.md has no row starting %q", row)
		}
	}
}
