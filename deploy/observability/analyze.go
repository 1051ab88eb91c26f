package observability

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
)

// ErrUnknownMetric is wrapped by errors about a metric name the catalog does
// not hold.
var ErrUnknownMetric = errors.New("unknown metric")

// ErrUnknownLabel is wrapped by errors about a label that the series in
// question cannot carry.
var ErrUnknownLabel = errors.New("unknown label")

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

// CheckExpr parses expr and checks every metric it reads against the catalog
// and every label it matches, groups or joins on against the labels those
// series carry. All problems are reported, joined; the Analysis is valid
// when the error is nil or wraps only ErrUnknownMetric or ErrUnknownLabel.
func CheckExpr(cat *Catalog, expr string) (*Analysis, error) {
	n, err := parse(expr)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", expr, err)
	}
	a := &analyzer{cat: cat, metrics: map[string]bool{}}
	v := a.eval(n)
	res := &Analysis{Metrics: sortedKeys(a.metrics), Labels: sortedKeys(v.labels)}
	if len(a.errs) > 0 {
		return res, fmt.Errorf("%q: %w", expr, errors.Join(a.errs...))
	}
	return res, nil
}

func (a *analyzer) eval(n node) value {
	switch n := n.(type) {
	case numberLit, stringLit:
		return value{}
	case *unary:
		return a.eval(n.expr)
	case *rangeExpr:
		return a.eval(n.expr)
	case *selector:
		return a.selector(n)
	case *call:
		return a.call(n)
	case *aggregate:
		return a.aggregate(n)
	case *binary:
		return a.binary(n)
	}
	a.errorf(ErrSyntax, "unhandled expression node %T", n) // unreachable: parse builds only the nodes above
	return value{}
}

func (a *analyzer) selector(s *selector) value {
	m, le, ok := a.cat.resolve(s.name)
	if !ok {
		a.errorf(ErrUnknownMetric, "metric %q is not registered by the worker or its Kafka client", s.name)
		return value{vector: true, unknown: true}
	}
	a.metrics[m.Name] = true
	labels := map[string]bool{}
	for _, l := range m.Labels {
		labels[l] = true
	}
	for _, l := range a.cat.targetLabels {
		labels[l] = true
	}
	if le {
		labels["le"] = true
	}
	for _, mt := range s.matchers {
		if mt.label != "__name__" && !labels[mt.label] {
			a.errorf(ErrUnknownLabel, "matcher %s%s%q on %s: %s carries only %v", mt.label, mt.op, mt.value, s.name, s.name, sortedKeys(labels))
		}
	}
	return vectorOf(labels)
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

func (a *analyzer) call(c *call) value {
	args := make([]value, len(c.args))
	for i, arg := range c.args {
		args[i] = a.eval(arg)
	}
	str := func(i int) (string, bool) {
		if i < len(c.args) {
			if s, ok := c.args[i].(stringLit); ok {
				return s.val, true
			}
		}
		return "", false
	}
	switch c.fn {
	case "time", "pi", "scalar":
		return value{}
	case "vector":
		return vectorOf(map[string]bool{})
	case "absent", "absent_over_time":
		// The result carries the labels of the selector's equality matchers.
		labels := map[string]bool{}
		var inner node
		if len(c.args) == 1 {
			inner = c.args[0]
		}
		if r, ok := inner.(*rangeExpr); ok {
			inner = r.expr
		}
		if s, ok := inner.(*selector); ok {
			for _, m := range s.matchers {
				if m.op == "=" && m.label != "__name__" {
					labels[m.label] = true
				}
			}
		}
		return vectorOf(labels)
	case "histogram_quantile", "histogram_fraction":
		v := firstVector(args)
		if c.fn == "histogram_quantile" || v.labels["le"] {
			a.need(v, []string{"le"}, c.fn)
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
		for i := 3; i < len(c.args); i++ {
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
		for i := 1; i < len(c.args); i++ {
			if l, ok := str(i); ok {
				a.need(v, []string{l}, c.fn)
			}
		}
		return v
	}
	return firstVector(args)
}

func setWith(m map[string]bool, l string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[l] = true
	return m
}

func (a *analyzer) aggregate(g *aggregate) value {
	if g.param != nil {
		a.eval(g.param)
	}
	v := a.eval(g.expr)
	a.need(v, g.grouping, g.op+" grouping")
	var out map[string]bool
	keepsInput := false // the result can carry any label the input carries
	switch {
	case g.op == "topk" || g.op == "bottomk" || g.op == "limitk" || g.op == "limit_ratio":
		out, keepsInput = maps.Clone(v.labels), true // these keep every label of the input
	case g.without:
		out, keepsInput = maps.Clone(v.labels), true
		for _, l := range g.grouping {
			delete(out, l)
		}
	default:
		out = setOf(g.grouping)
	}
	if g.op == "count_values" {
		if s, ok := g.param.(stringLit); ok {
			out = setWith(out, s.val)
		}
	}
	return value{vector: true, unknown: v.unknown && keepsInput, labels: out}
}

func (a *analyzer) binary(b *binary) value {
	lhs, rhs := a.eval(b.lhs), a.eval(b.rhs)
	if !lhs.vector || !rhs.vector {
		if b.matching != nil {
			a.errorf(ErrSyntax, "vector matching (on/ignoring) on an operand that is not a vector")
		}
		if lhs.vector {
			return lhs
		}
		return rhs
	}
	m := b.matching
	if m == nil {
		m = &vectorMatching{}
	}
	switch {
	case m.on:
		// Matching on a label one side lacks compares it with "": a typo.
		a.need(lhs, m.labels, "on() left-hand side")
		a.need(rhs, m.labels, "on() right-hand side")
	case m.ignoring:
		either := vectorOf(union(lhs.labels, rhs.labels))
		a.need(either, m.labels, "ignoring()")
	}
	if m.groupLeft {
		a.need(rhs, m.include, "group_left() right-hand side")
	}
	if m.groupRight {
		a.need(lhs, m.include, "group_right() left-hand side")
	}
	unknown := lhs.unknown || rhs.unknown
	switch b.op {
	case "or":
		return value{vector: true, unknown: unknown, labels: union(lhs.labels, rhs.labels)}
	case "and", "unless":
		return lhs
	}
	var out map[string]bool
	switch {
	case m.groupLeft:
		out = union(lhs.labels, setOf(m.include))
	case m.groupRight:
		out = union(rhs.labels, setOf(m.include))
	case m.on:
		out = setOf(m.labels) // one-to-one on(): Prometheus keeps only these
	default:
		out = maps.Clone(lhs.labels)
		for _, l := range m.labels {
			delete(out, l)
		}
	}
	return value{vector: true, unknown: unknown && !m.on, labels: out}
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
