// Package observability checks the Grafana dashboard and the Prometheus alert
// rules shipped in deploy/ against the metrics the worker really registers.
//
// Every expression is parsed by Prometheus's own PromQL parser
// (github.com/prometheus/prometheus/promql/parser), after the Grafana
// variables in it are replaced by values of the right type; the syntax tree
// then tells which metric every expression reads and which labels every
// result can carry. Nothing else catches a misspelled metric or label in a
// panel query: Prometheus answers an empty result, not an error.
//
// This is a module of its own, so that the Prometheus server's module stays
// out of the worker's dependencies.
package observability

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// ErrSyntax is wrapped by every PromQL parse error.
var ErrSyntax = errors.New("promql syntax error")

// ErrUnknownMetric is wrapped by errors about a metric name the catalog does
// not hold.
var ErrUnknownMetric = errors.New("unknown metric")

// ErrUnknownLabel is wrapped by errors about a label that the series in
// question cannot carry.
var ErrUnknownLabel = errors.New("unknown label")

// promql is the parser, with the default functions (an experimental one is
// a syntax error, as in a Prometheus started without the feature flag).
var promql = parser.NewParser(parser.Options{})

// grafanaVariable matches a Grafana template variable: $name, ${name},
// ${name:format} or [[name]]. A replacement group such as $1 in
// label_replace does not match: names start with a letter or underscore.
var grafanaVariable = regexp.MustCompile(`\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\$([A-Za-z_]\w*)|\[\[([A-Za-z_]\w*)(?::[^\]]*)?\]\]`)

// grafanaDurations are Grafana's built-in variables that stand for a
// duration, or a number of seconds or milliseconds.
var grafanaDurations = map[string]string{
	"__interval": "1m", "__rate_interval": "5m", "__range": "1h",
	"__interval_ms": "60000", "__range_s": "3600", "__range_ms": "3600000",
}

// SubstituteVariables replaces the Grafana variables in expr by values
// PromQL can parse: a duration for $__interval, $__rate_interval and
// $__range, a number for their _s and _ms forms, and 1 for any other
// (dashboard variables stand in label values, where any text does).
func SubstituteVariables(expr string) string {
	return grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		m := grafanaVariable.FindStringSubmatch(v)
		name := m[1] + m[2] + m[3]
		if d, ok := grafanaDurations[name]; ok {
			return d
		}
		return "1"
	})
}

// Analysis is what CheckExpr learned about one PromQL expression.
type Analysis struct {
	// Metrics are the catalog names the expression reads, sorted (for a
	// histogram, the base name without _bucket, _sum or _count).
	Metrics []string
	// Labels are the labels the expression's result series can carry,
	// sorted. Alert templates and legends may use only these.
	Labels []string
}

// value is the static type of a sub-expression: a scalar or string (labels
// nil) or an instant or range vector with the labels its series can carry.
// unknown marks a vector read from a metric the catalog lacks: that error
// is reported once, not again for every label used further up.
type value struct {
	vector  bool
	unknown bool
	labels  map[string]bool
}

func vectorOf(labels map[string]bool) value { return value{vector: true, labels: labels} }

type analyzer struct {
	cat     *Catalog
	metrics map[string]bool
	errs    []error
}

func (a *analyzer) errorf(wrap error, format string, args ...any) {
	a.errs = append(a.errs, fmt.Errorf("%w: "+format, append([]any{wrap}, args...)...))
}

// need reports each label of want that v cannot carry, naming the context.
func (a *analyzer) need(v value, want []string, context string) {
	if v.unknown {
		return
	}
	for _, l := range want {
		if !v.labels[l] {
			a.errorf(ErrUnknownLabel, "%s uses label %q, but the series there carry only %v", context, l, sortedKeys(v.labels))
		}
	}
}

// CheckExpr replaces the Grafana variables in expr, parses it and checks every metric it reads against the catalog
// and every label it matches, groups or joins on against the labels those
// series carry. All problems are reported, joined; the Analysis is valid
// when the error is nil or wraps only ErrUnknownMetric or ErrUnknownLabel.
func CheckExpr(cat *Catalog, expr string) (*Analysis, error) {
	n, err := promql.ParseExpr(SubstituteVariables(expr))
	if err != nil {
		return nil, fmt.Errorf("%w: parse %q: %w", ErrSyntax, expr, err)
	}
	a := &analyzer{cat: cat, metrics: map[string]bool{}}
	v := a.eval(n)
	res := &Analysis{Metrics: sortedKeys(a.metrics), Labels: sortedKeys(v.labels)}
	if len(a.errs) > 0 {
		return res, fmt.Errorf("%q: %w", expr, errors.Join(a.errs...))
	}
	return res, nil
}

func (a *analyzer) eval(n parser.Expr) value {
	switch n := n.(type) {
	case *parser.NumberLiteral, *parser.StringLiteral, *parser.DurationExpr:
		return value{}
	case *parser.ParenExpr:
		return a.eval(n.Expr)
	case *parser.UnaryExpr:
		return a.eval(n.Expr)
	case *parser.StepInvariantExpr:
		return a.eval(n.Expr)
	case *parser.MatrixSelector:
		return a.eval(n.VectorSelector)
	case *parser.SubqueryExpr:
		return a.eval(n.Expr)
	case *parser.VectorSelector:
		return a.selector(n)
	case *parser.Call:
		return a.call(n)
	case *parser.AggregateExpr:
		return a.aggregate(n)
	case *parser.BinaryExpr:
		return a.binary(n)
	}
	a.errorf(ErrSyntax, "unhandled expression node %T", n) // a node type newer than this code
	return value{}
}

func (a *analyzer) selector(s *parser.VectorSelector) value {
	name := s.Name
	if name == "" {
		for _, mt := range s.LabelMatchers {
			if mt.Name == model.MetricNameLabel && mt.Type == labels.MatchEqual {
				name = mt.Value
			}
		}
	}
	if name == "" {
		a.errorf(ErrUnknownMetric, "selector %s names no metric: it cannot be checked", s)
		return value{vector: true, unknown: true}
	}
	m, le, ok := a.cat.resolve(name)
	if !ok {
		a.errorf(ErrUnknownMetric, "metric %q is not registered by the worker or its Kafka client", name)
		return value{vector: true, unknown: true}
	}
	a.metrics[m.Name] = true
	carried := map[string]bool{}
	for _, l := range m.Labels {
		carried[l] = true
	}
	for _, l := range a.cat.targetLabels {
		carried[l] = true
	}
	if le {
		carried["le"] = true
	}
	for _, mt := range s.LabelMatchers {
		if mt.Name != model.MetricNameLabel && !carried[mt.Name] {
			a.errorf(ErrUnknownLabel, "matcher %s on %s: %s carries only %v", mt, name, name, sortedKeys(carried))
		}
	}
	return vectorOf(carried)
}

// firstVector returns the first vector among vs.
func firstVector(vs []value) value {
	for _, v := range vs {
		if v.vector {
			return v
		}
	}
	return value{}
}

func (a *analyzer) call(c *parser.Call) value {
	args := make([]value, len(c.Args))
	for i, arg := range c.Args {
		args[i] = a.eval(arg)
	}
	str := func(i int) (string, bool) {
		if i < len(c.Args) {
			if s, ok := unwrap(c.Args[i]).(*parser.StringLiteral); ok {
				return s.Val, true
			}
		}
		return "", false
	}
	fn := c.Func.Name
	switch fn {
	case "time", "pi", "scalar":
		return value{}
	case "vector":
		return vectorOf(map[string]bool{})
	case "absent", "absent_over_time":
		// The result carries the labels of the selector's equality matchers.
		carried := map[string]bool{}
		var inner parser.Expr
		if len(c.Args) == 1 {
			inner = unwrap(c.Args[0])
		}
		if r, ok := inner.(*parser.MatrixSelector); ok {
			inner = r.VectorSelector
		}
		if s, ok := inner.(*parser.VectorSelector); ok {
			for _, m := range s.LabelMatchers {
				if m.Type == labels.MatchEqual && m.Name != model.MetricNameLabel {
					carried[m.Name] = true
				}
			}
		}
		return vectorOf(carried)
	case "histogram_quantile", "histogram_fraction":
		v := firstVector(args)
		if fn == "histogram_quantile" || v.labels["le"] {
			a.need(v, []string{"le"}, fn)
		}
		out := maps.Clone(v.labels)
		delete(out, "le")
		return value{vector: true, unknown: v.unknown, labels: out}
	case "label_replace":
		v := firstVector(args)
		out := maps.Clone(v.labels)
		if src, ok := str(3); ok && src != "" {
			a.need(v, []string{src}, "label_replace source")
		}
		if dst, ok := str(1); ok {
			out = setWith(out, dst)
		}
		return value{vector: true, unknown: v.unknown, labels: out}
	case "label_join":
		v := firstVector(args)
		out := maps.Clone(v.labels)
		for i := 3; i < len(c.Args); i++ {
			if src, ok := str(i); ok {
				a.need(v, []string{src}, "label_join source")
			}
		}
		if dst, ok := str(1); ok {
			out = setWith(out, dst)
		}
		return value{vector: true, unknown: v.unknown, labels: out}
	case "sort_by_label", "sort_by_label_desc":
		v := firstVector(args)
		for i := 1; i < len(c.Args); i++ {
			if l, ok := str(i); ok {
				a.need(v, []string{l}, fn)
			}
		}
		return v
	}
	return firstVector(args)
}

// unwrap returns e without the parentheses and step-invariant wrappers the
// parser puts around it.
func unwrap(e parser.Expr) parser.Expr {
	for {
		switch n := e.(type) {
		case *parser.ParenExpr:
			e = n.Expr
		case *parser.StepInvariantExpr:
			e = n.Expr
		default:
			return e
		}
	}
}

func setWith(m map[string]bool, l string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[l] = true
	return m
}

func (a *analyzer) aggregate(g *parser.AggregateExpr) value {
	if g.Param != nil {
		a.eval(g.Param)
	}
	v := a.eval(g.Expr)
	op := g.Op.String()
	a.need(v, g.Grouping, op+" grouping")
	var out map[string]bool
	keepsInput := false // the result can carry any label the input carries
	switch {
	case g.Op == parser.TOPK || g.Op == parser.BOTTOMK || g.Op == parser.LIMITK || g.Op == parser.LIMIT_RATIO:
		out, keepsInput = maps.Clone(v.labels), true // these keep every label of the input
	case g.Without:
		out, keepsInput = maps.Clone(v.labels), true
		for _, l := range g.Grouping {
			delete(out, l)
		}
	default:
		out = setOf(g.Grouping)
	}
	if g.Op == parser.COUNT_VALUES {
		if s, ok := unwrap(g.Param).(*parser.StringLiteral); ok {
			out = setWith(out, s.Val)
		}
	}
	return value{vector: true, unknown: v.unknown && keepsInput, labels: out}
}

func (a *analyzer) binary(b *parser.BinaryExpr) value {
	lhs, rhs := a.eval(b.LHS), a.eval(b.RHS)
	if !lhs.vector || !rhs.vector || b.VectorMatching == nil {
		// The parser refuses on() and ignoring() here.
		if lhs.vector {
			return lhs
		}
		return rhs
	}
	m := b.VectorMatching
	groupLeft, groupRight := m.Card == parser.CardManyToOne, m.Card == parser.CardOneToMany
	switch {
	case m.On:
		// Matching on a label one side lacks compares it with "": a typo.
		a.need(lhs, m.MatchingLabels, "on() left-hand side")
		a.need(rhs, m.MatchingLabels, "on() right-hand side")
	case len(m.MatchingLabels) > 0:
		either := vectorOf(union(lhs.labels, rhs.labels))
		a.need(either, m.MatchingLabels, "ignoring()")
	}
	if groupLeft {
		a.need(rhs, m.Include, "group_left() right-hand side")
	}
	if groupRight {
		a.need(lhs, m.Include, "group_right() left-hand side")
	}
	unknown := lhs.unknown || rhs.unknown
	switch b.Op {
	case parser.LOR:
		return value{vector: true, unknown: unknown, labels: union(lhs.labels, rhs.labels)}
	case parser.LAND, parser.LUNLESS:
		return lhs
	}
	var out map[string]bool
	switch {
	case groupLeft:
		out = union(lhs.labels, setOf(m.Include))
	case groupRight:
		out = union(rhs.labels, setOf(m.Include))
	case m.On:
		out = setOf(m.MatchingLabels) // one-to-one on(): Prometheus keeps only these
	default:
		out = maps.Clone(lhs.labels)
		for _, l := range m.MatchingLabels {
			delete(out, l)
		}
	}
	return value{vector: true, unknown: unknown && !m.On, labels: out}
}

func setOf(ls []string) map[string]bool {
	m := make(map[string]bool, len(ls))
	for _, l := range ls {
		m[l] = true
	}
	return m
}

func union(a, b map[string]bool) map[string]bool {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]bool{}
	}
	maps.Copy(out, b)
	return out
}

func sortedKeys(m map[string]bool) []string {
	keys := slices.Collect(maps.Keys(m))
	sort.Strings(keys)
	if keys == nil {
		keys = []string{}
	}
	return keys
}
