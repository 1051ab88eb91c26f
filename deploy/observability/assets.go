package observability

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Query is one PromQL expression found in an asset.
type Query struct {
	// Where locates the query for error messages.
	Where string
	// Expr is the PromQL expression.
	Expr string
	// Templates are texts rendered with the labels of the result series:
	// a Grafana legendFormat, or an alert's labels and annotations.
	Templates []string
}

// VariableQuery is a Grafana template variable backed by a Prometheus
// query such as label_values(metric{...}, label).
type VariableQuery struct {
	// Name is the variable's name.
	Name string
	// Query is the variable's query as Grafana stores it.
	Query string
}

// DashboardQueries returns every Prometheus target of every panel of a
// Grafana dashboard (rows included, collapsed or not) and every query
// template variable.
func DashboardQueries(data []byte) ([]Query, []VariableQuery, error) {
	var d struct {
		Panels     []panelJSON `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, nil, fmt.Errorf("decode dashboard: %w", err)
	}
	var queries []Query
	var walk func([]panelJSON)
	walk = func(ps []panelJSON) {
		for _, p := range ps {
			for _, t := range p.Targets {
				q := Query{Where: fmt.Sprintf("panel %q target %s", p.Title, t.RefID), Expr: t.Expr}
				if t.LegendFormat != "" && t.LegendFormat != "__auto" {
					q.Templates = []string{t.LegendFormat}
				}
				queries = append(queries, q)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	var vars []VariableQuery
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		switch q := v.Query.(type) {
		case string:
			vars = append(vars, VariableQuery{v.Name, q})
		case map[string]any:
			s, _ := q["query"].(string)
			vars = append(vars, VariableQuery{v.Name, s})
		}
	}
	return queries, vars, nil
}

type panelJSON struct {
	Title   string `json:"title"`
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []panelJSON `json:"panels"`
}

// RuleFile is a Prometheus rule file.
type RuleFile struct {
	Groups []RuleGroup `yaml:"groups"`
}

// RuleGroup is a named group of rules evaluated together.
type RuleGroup struct {
	Name        string `yaml:"name"`
	Interval    string `yaml:"interval,omitempty"`
	QueryOffset string `yaml:"query_offset,omitempty"`
	Limit       int    `yaml:"limit,omitempty"`
	Rules       []Rule `yaml:"rules"`
}

// Rule is an alerting or recording rule.
type Rule struct {
	Alert         string            `yaml:"alert,omitempty"`
	Record        string            `yaml:"record,omitempty"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for,omitempty"`
	KeepFiringFor string            `yaml:"keep_firing_for,omitempty"`
	Labels        map[string]string `yaml:"labels,omitempty"`
	Annotations   map[string]string `yaml:"annotations,omitempty"`
}

// ParseRules decodes a Prometheus rule file, rejecting unknown fields.
func ParseRules(data []byte) (*RuleFile, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f RuleFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode rules: %w", err)
	}
	return &f, nil
}

// RuleQueries returns the expression of every rule of f, with the rule's
// labels and annotations as templates.
func RuleQueries(f *RuleFile) []Query {
	var qs []Query
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			q := Query{Where: fmt.Sprintf("group %q rule %q", g.Name, r.Alert+r.Record), Expr: r.Expr}
			for _, m := range []map[string]string{r.Labels, r.Annotations} {
				for _, k := range slices.Sorted(maps.Keys(m)) {
					q.Templates = append(q.Templates, m[k])
				}
			}
			qs = append(qs, q)
		}
	}
	return qs
}

var (
	// legendLabel matches {{label}} in a Grafana legend.
	legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
	// templateLabel matches $labels.x or .Labels.x in an alert template.
	templateLabel = regexp.MustCompile(`(?:\$labels|\.Labels)\.([a-zA-Z_][a-zA-Z0-9_]*)`)
)

// TemplateLabels returns the label names a legend or alert template uses.
func TemplateLabels(tmpl string) []string {
	var out []string
	if strings.Contains(tmpl, "$labels") || strings.Contains(tmpl, ".Labels") {
		for _, m := range templateLabel.FindAllStringSubmatch(tmpl, -1) {
			out = append(out, m[1])
		}
		return out
	}
	for _, m := range legendLabel.FindAllStringSubmatch(tmpl, -1) {
		out = append(out, m[1])
	}
	return out
}

// CheckQueries checks each query with CheckExpr and checks that its
// templates use only labels its result carries.
func CheckQueries(cat *Catalog, qs []Query) error {
	var errs []error
	for _, q := range qs {
		a, err := CheckExpr(cat, q.Expr)
		if err != nil {
			// The result's labels are uncertain: skip the templates.
			errs = append(errs, fmt.Errorf("%s: %w", q.Where, err))
			continue
		}
		for _, t := range q.Templates {
			for _, l := range TemplateLabels(t) {
				if !slices.Contains(a.Labels, l) {
					errs = append(errs, fmt.Errorf("%s: %w: template %q uses label %q, but the result carries only %v",
						q.Where, ErrUnknownLabel, t, l, a.Labels))
				}
			}
		}
	}
	return errors.Join(errs...)
}

// CheckVariables checks Grafana variable queries of the forms
// label_values(selector, label) and query_result(expr).
func CheckVariables(cat *Catalog, vs []VariableQuery) error {
	var errs []error
	for _, v := range vs {
		q := strings.TrimSpace(v.Query)
		switch {
		case strings.HasPrefix(q, "label_values(") && strings.HasSuffix(q, ")"):
			inner := q[len("label_values(") : len(q)-1]
			i := strings.LastIndexByte(inner, ',')
			if i < 0 {
				continue // label_values(label): any series
			}
			expr, label := inner[:i], strings.TrimSpace(inner[i+1:])
			a, err := CheckExpr(cat, expr)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("variable %q: %w", v.Name, err))
			case !slices.Contains(a.Labels, label):
				errs = append(errs, fmt.Errorf("variable %q: %w: label_values of %q, whose series carry only %v",
					v.Name, ErrUnknownLabel, label, a.Labels))
			}
		case strings.HasPrefix(q, "query_result(") && strings.HasSuffix(q, ")"):
			if _, err := CheckExpr(cat, q[len("query_result("):len(q)-1]); err != nil {
				errs = append(errs, fmt.Errorf("variable %q: %w", v.Name, err))
			}
		default:
			errs = append(errs, fmt.Errorf("variable %q: query %q is not label_values(...) or query_result(...)", v.Name, q))
		}
	}
	return errors.Join(errs...)
}

// CheckDashboard checks every panel query, legend and template variable of
// a Grafana dashboard against the catalog.
func CheckDashboard(cat *Catalog, data []byte) error {
	qs, vs, err := DashboardQueries(data)
	if err != nil {
		return err
	}
	return errors.Join(CheckQueries(cat, qs), CheckVariables(cat, vs))
}

// CheckRules checks every rule expression of a Prometheus rule file, and
// the labels its templates use, against the catalog.
func CheckRules(cat *Catalog, data []byte) error {
	f, err := ParseRules(data)
	if err != nil {
		return err
	}
	return CheckQueries(cat, RuleQueries(f))
}
