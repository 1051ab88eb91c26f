package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamworker/streamworker/config"
)

const (
	composeFile = "../docker-compose.yml"
	chartDir    = "../helm/streamworker"
)

// keysByEnv returns the configuration keys by environment variable name.
func keysByEnv() map[string]config.KeyDoc {
	m := map[string]config.KeyDoc{}
	for _, k := range config.Keys() {
		m[k.Env] = k
	}
	return m
}

// keysByName returns the configuration keys by dotted name.
func keysByName() map[string]config.KeyDoc {
	m := map[string]config.KeyDoc{}
	for _, k := range config.Keys() {
		m[k.Key] = k
	}
	return m
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// composeService is the part of a compose service these tests read.
type composeService struct {
	Environment     any    `yaml:"environment"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

// composeEnv returns a service's environment as NAME=value entries, sorted;
// compose allows a map or a list of NAME=value.
func composeEnv(t *testing.T, name string, env any) []string {
	t.Helper()
	var out []string
	switch env := env.(type) {
	case nil:
	case map[string]any:
		for k, v := range env {
			out = append(out, fmt.Sprintf("%s=%v", k, v))
		}
	case []any:
		for _, e := range env {
			out = append(out, fmt.Sprint(e))
		}
	default:
		t.Fatalf("service %s: environment is a %T", name, env)
	}
	slices.Sort(out)
	return out
}

func composeServices(t *testing.T) map[string]composeService {
	t.Helper()
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	if len(f.Services) == 0 {
		t.Fatalf("%s: no services", composeFile)
	}
	return f.Services
}

// TestComposeEnvironment checks that every SW_ variable of docker-compose.yml
// names a configuration key that may come from the environment, and that
// each service's SW_ environment loads and validates as a configuration.
func TestComposeEnvironment(t *testing.T) {
	known := keysByEnv()
	configured := 0
	for name, svc := range composeServices(t) {
		var env []string
		for _, kv := range composeEnv(t, name, svc.Environment) {
			k, _, _ := strings.Cut(kv, "=")
			if !strings.HasPrefix(k, config.EnvPrefix) {
				continue
			}
			doc, ok := known[k]
			if !ok {
				t.Errorf("service %s: %s is not a configuration key's variable", name, k)
				continue
			}
			if doc.Secret {
				t.Errorf("service %s: %s is a secret; compose sets none", name, k)
			}
			env = append(env, kv)
		}
		if len(env) == 0 {
			continue
		}
		configured++
		if _, err := config.LoadFile("", env); err != nil {
			t.Errorf("service %s: its SW_ environment is not a valid configuration:\n%v", name, err)
		}
	}
	if configured < 3 {
		t.Errorf("%d services set SW_ variables, want at least 3 (topics, worker, loadgen)", configured)
	}
}

// TestComposeStopGracePeriod checks that a stopping worker gets to drain:
// docker compose's SIGKILL must come after the worker's shutdown timeout.
func TestComposeStopGracePeriod(t *testing.T) {
	svc, ok := composeServices(t)["worker"]
	if !ok {
		t.Fatal("no worker service")
	}
	timeout := 30 * time.Second // the default of shutdown.timeout
	for _, kv := range composeEnv(t, "worker", svc.Environment) {
		if v, ok := strings.CutPrefix(kv, config.EnvName("shutdown.timeout")+"="); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				t.Fatal(err)
			}
			timeout = d
		}
	}
	grace := 10 * time.Second // docker's default
	if svc.StopGracePeriod != "" {
		d, err := time.ParseDuration(svc.StopGracePeriod)
		if err != nil {
			t.Fatal(err)
		}
		grace = d
	}
	if grace <= timeout {
		t.Errorf("worker: stop_grace_period %v must exceed shutdown.timeout %v", grace, timeout)
	}
}

// leafKeys returns the dotted keys of the leaves of a nested map; lists are
// leaves.
func leafKeys(prefix string, m map[string]any, out map[string]any) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			leafKeys(prefix+k+".", sub, out)
			continue
		}
		out[prefix+k] = v
	}
}

// chartConfig returns the .config of a values file; nil if it has none.
func chartConfig(t *testing.T, valuesFile string) map[string]any {
	t.Helper()
	v := readYAML(t, valuesFile)
	cfg, ok := v["config"]
	if !ok || cfg == nil {
		return nil
	}
	m, ok := cfg.(map[string]any)
	if !ok {
		t.Fatalf("%s: config is a %T, want a map", valuesFile, cfg)
	}
	return m
}

// merge deep-merges src into dst, as Helm merges a values file into the
// chart's values.
func merge(dst, src map[string]any) {
	for k, v := range src {
		d, dok := dst[k].(map[string]any)
		s, sok := v.(map[string]any)
		if dok && sok {
			merge(d, s)
			continue
		}
		dst[k] = v
	}
}

// TestChartValuesConfig checks every key under .config in the chart's values
// files: it must be a configuration key, never a secret (passwords come from
// Secrets through the environment), and the configuration the chart renders
// from it must load and validate.
func TestChartValuesConfig(t *testing.T) {
	known := keysByName()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{filepath.Join(chartDir, "values.yaml")}, files...)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			own := chartConfig(t, file)
			leaves := map[string]any{}
			leafKeys("", own, leaves)
			for _, k := range slices.Sorted(maps.Keys(leaves)) {
				doc, ok := known[k]
				switch {
				case !ok:
					t.Errorf("config.%s is not a configuration key", k)
				case doc.Secret:
					t.Errorf("config.%s is a secret: set it through auth.* (a Secret), not the ConfigMap", k)
				}
			}

			// What the chart renders: the chart's defaults with this file on top.
			cfg := chartConfig(t, filepath.Join(chartDir, "values.yaml"))
			merge(cfg, own)
			b, err := yaml.Marshal(cfg)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			// The chart sets the SASL password from a Secret when
			// auth.kafka.existingSecret is set; stand in for it.
			values := readYAML(t, file)
			var env []string
			if secretSet(values, "kafka") {
				env = append(env, config.EnvName("kafka.sasl.password")+"=x")
			}
			if secretSet(values, "redis") {
				env = append(env, config.EnvName("redis.password")+"=x")
			}
			if _, err := config.LoadFile(path, env); err != nil {
				t.Errorf("the rendered configuration does not load:\n%v", err)
			}
		})
	}
}

func secretSet(values map[string]any, name string) bool {
	auth, _ := values["auth"].(map[string]any)
	s, _ := auth[name].(map[string]any)
	v, _ := s["existingSecret"].(string)
	return v != ""
}

// TestChartValuesConfigRejectsTypo proves the test above fails on a
// misspelled key: its check, run on a values file with one, reports it.
func TestChartValuesConfigRejectsTypo(t *testing.T) {
	known := keysByName()
	leaves := map[string]any{}
	leafKeys("", chartConfig(t, "check/testdata/config-typo.yaml"), leaves)
	var unknown []string
	for k := range leaves {
		if _, ok := known[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if !slices.Equal(unknown, []string{"kafka.gruop"}) {
		t.Errorf("unknown keys = %v, want [kafka.gruop]", unknown)
	}
}

// schemaFor returns the JSON schema of a configuration key's values in the
// chart's values.schema.json.
func schemaFor(doc config.KeyDoc) map[string]any {
	const duration = `^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$`
	switch doc.Type {
	case "string":
		return map[string]any{"type": "string"}
	case "int":
		return map[string]any{"type": "integer"}
	case "float":
		return map[string]any{"type": "number"}
	case "bool":
		return map[string]any{"type": "boolean"}
	case "duration":
		return map[string]any{"type": "string", "pattern": duration}
	case "bytes":
		return map[string]any{"type": []any{"integer", "string"}, "pattern": `^[0-9]+ *(B|KiB|MiB|GiB)?$`}
	case "list of strings":
		return map[string]any{"type": []any{"array", "string"}, "items": map[string]any{"type": "string"}}
	case "list of ints":
		return map[string]any{"type": []any{"array", "string"}, "items": map[string]any{"type": "integer"}}
	}
	return map[string]any{"unknown type": doc.Type}
}

// configSchema returns the schema of .config that values.schema.json must
// hold: one property per non-secret configuration key, nested by its dots,
// and no other properties.
func configSchema() map[string]any {
	root := map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{}}
	for _, doc := range config.Keys() {
		if doc.Secret {
			continue
		}
		node := root
		path := strings.Split(doc.Key, ".")
		for _, name := range path[:len(path)-1] {
			props := node["properties"].(map[string]any)
			child, ok := props[name].(map[string]any)
			if !ok {
				child = map[string]any{"type": "object", "additionalProperties": false, "properties": map[string]any{}}
				props[name] = child
			}
			node = child
		}
		leaf := schemaFor(doc)
		leaf["description"] = doc.Doc
		node["properties"].(map[string]any)[path[len(path)-1]] = leaf
	}
	return root
}

// TestChartSchemaConfig checks that values.schema.json describes exactly the
// configuration keys under .config, with their types, so that helm lint
// rejects a misspelled or secret key in .config.
func TestChartSchemaConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var got any
	if err := json.Unmarshal(schema.Properties["config"], &got); err != nil {
		t.Fatal(err)
	}
	// Compare as JSON values, so that both sides have the same Go types.
	wantJSON, err := json.MarshalIndent(configSchema(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	var want any
	if err := json.Unmarshal(wantJSON, &want); err != nil {
		t.Fatal(err)
	}
	if diff := diffJSON("config", got, want); diff != nil {
		t.Errorf("values.schema.json properties.config differs from the configuration keys:\n%v\n\nwant:\n%s",
			diff, wantJSON)
	}
}

// diffJSON lists the differences between two decoded JSON values.
func diffJSON(path string, got, want any) error {
	g, gok := got.(map[string]any)
	w, wok := want.(map[string]any)
	if !gok || !wok {
		gb, _ := json.Marshal(got)
		wb, _ := json.Marshal(want)
		if string(gb) != string(wb) {
			return fmt.Errorf("%s: got %s, want %s", path, gb, wb)
		}
		return nil
	}
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(w)) {
		if _, ok := g[k]; !ok {
			errs = append(errs, fmt.Errorf("%s.%s: missing", path, k))
			continue
		}
		errs = append(errs, diffJSON(path+"."+k, g[k], w[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(g)) {
		if _, ok := w[k]; !ok {
			errs = append(errs, fmt.Errorf("%s.%s: not a configuration key", path, k))
		}
	}
	return errors.Join(errs...)
}
