package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
)

// committed is the dashboard file that docker-compose and the Helm chart
// ship.
const committed = "../../grafana/dashboards/streamworker.json"

var update = flag.Bool("update", false, "rewrite the committed dashboard from the code")

// TestCommittedIsGenerated fails when the committed JSON and the code that
// generates it disagree: edit dashboard.go, then go test -update.
func TestCommittedIsGenerated(t *testing.T) {
	want, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(committed, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what dashboard.go generates; run: go test -update (in deploy/observability/grafana)", committed)
	}
}

func TestCommittedPassesStrictCheck(t *testing.T) {
	data, err := os.ReadFile(committed)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(data); err != nil {
		t.Fatal(err)
	}
}

// TestCheckRejects proves the strict check catches the mistakes a hand edit
// makes: each case corrupts the generated dashboard one way.
func TestCheckRejects(t *testing.T) {
	good, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func(d map[string]any)
		want   string
	}{
		{"unknown dashboard field", func(d map[string]any) { d["titel"] = "x" }, "titel"},
		{"wrong type", func(d map[string]any) { d["schemaVersion"] = "39" }, "schemaVersion"},
		{"unknown panel field", func(d map[string]any) { panel(d, 1)["descripton"] = "x" }, "descripton"},
		{"unknown query field", func(d map[string]any) {
			panel(d, 1)["targets"].([]any)[0].(map[string]any)["exp"] = "up"
		}, "exp"},
		{"unknown field config option", func(d map[string]any) {
			panel(d, 1)["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["unitt"] = "s"
		}, "unitt"},
		{"unknown field config option in a collapsed row", func(d map[string]any) {
			rows := d["panels"].([]any)
			last := rows[len(rows)-1].(map[string]any)["panels"].([]any)[0].(map[string]any)
			last["fieldConfig"].(map[string]any)["defaults"].(map[string]any)["thresholdz"] = 1
		}, "thresholdz"},
		{"unknown panel option", func(d map[string]any) {
			panel(d, 1)["options"].(map[string]any)["legnd"] = map[string]any{}
		}, "legnd"},
		{"missing required templating", func(d map[string]any) { delete(d, "templating") }, "templating"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d map[string]any
			if err := json.Unmarshal(good, &d); err != nil {
				t.Fatal(err)
			}
			tt.mutate(d)
			bad, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			err = Check(bad)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check = %v, want an error naming %q", err, tt.want)
			}
		})
	}
}

func panel(d map[string]any, i int) map[string]any {
	return d["panels"].([]any)[i].(map[string]any)
}
