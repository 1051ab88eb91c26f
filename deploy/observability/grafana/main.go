// Command grafana generates the streamworker Grafana dashboard from code
// and checks dashboard JSON files with the Grafana Foundation SDK: a strict
// decode (unknown fields, wrong types and missing required fields are
// errors) followed by the SDK's Validate.
//
// It is its own module so that the SDK, large to compile, stays out of the
// product's module.
//
//	go run . -out ../../grafana/dashboards/streamworker.json   # regenerate
//	go run . -check FILE...                                     # check files
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

func main() {
	out := flag.String("out", "", "write the generated dashboard to this file")
	check := flag.Bool("check", false, "check the dashboard JSON files named as arguments")
	flag.Parse()
	if err := run(*out, *check, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(out string, check bool, files []string) error {
	switch {
	case out != "":
		data, err := Generate()
		if err != nil {
			return err
		}
		return os.WriteFile(out, data, 0o644)
	case check && len(files) > 0:
		var errs []error
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err == nil {
				err = Check(data)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f, err))
				continue
			}
			fmt.Println("ok", f)
		}
		return errors.Join(errs...)
	}
	flag.Usage()
	return errors.New("nothing to do: pass -out FILE or -check FILE...")
}

// Generate returns the dashboard as indented JSON, as committed.
func Generate() ([]byte, error) {
	d, err := Build()
	if err != nil {
		return nil, fmt.Errorf("build dashboard: %w", err)
	}
	data, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode dashboard: %w", err)
	}
	return append(data, '\n'), nil
}

// Check decodes data strictly into the SDK's dashboard type, with every
// panel and query plugin known to the SDK registered, and validates it.
//
// The SDK (v0.0.12) decodes a panel's fieldConfig leniently apart from its
// "custom" block, so Check also decodes each fieldConfig strictly: a
// misspelled "unit" or "thresholds" would otherwise pass.
func Check(data []byte) error {
	plugins.RegisterDefaultPlugins()
	var d dashboard.Dashboard
	if err := d.UnmarshalJSONStrict(data); err != nil {
		return fmt.Errorf("strict decode: %w", err)
	}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	var raw struct {
		Panels []rawPanel `json:"panels"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("decode panels: %w", err)
	}
	var errs []error
	var walk func([]rawPanel)
	walk = func(ps []rawPanel) {
		for _, p := range ps {
			if p.FieldConfig != nil {
				var fc dashboard.FieldConfigSource
				if err := fc.UnmarshalJSONStrict(p.FieldConfig); err != nil {
					errs = append(errs, fmt.Errorf("panel %q: fieldConfig: %w", p.Title, err))
				}
			}
			walk(p.Panels)
		}
	}
	walk(raw.Panels)
	return errors.Join(errs...)
}

type rawPanel struct {
	Title       string          `json:"title"`
	FieldConfig json.RawMessage `json:"fieldConfig"`
	Panels      []rawPanel      `json:"panels"`
}
