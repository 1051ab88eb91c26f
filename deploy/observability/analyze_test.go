package observability

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// fixtureCatalog is a small catalog shaped like the worker's.
func fixtureCatalog(t *testing.T) *Catalog {
	t.Helper()
	cat := NewCatalog("namespace", "pod", "job", "instance")
	for _, m := range []Metric{
		{Name: "streamworker_consumer_lag", Kind: KindGauge, Labels: []string{"group", "topic", "partition"}},
		{Name: "streamworker_events_consumed_total", Kind: KindCounter, Labels: []string{"topic"}},
		{Name: "streamworker_dlq_total", Kind: KindCounter, Labels: []string{"reason"}},
		{Name: "streamworker_redis_duration_seconds", Kind: KindHistogram, Labels: []string{"op"}},
		{Name: "go_gc_duration_seconds", Kind: KindSummary},
	} {
		if err := cat.Add(m); err != nil {
			t.Fatal(err)
		}
	}
	return cat
}

const lagLabels = "group instance job namespace partition pod topic"

func TestCheckExpr(t *testing.T) {
	cat := fixtureCatalog(t)
	tests := []struct {
		name        string
		expr        string
		wantMetrics string // space-separated
		wantLabels  string // space-separated; checked when wantErr is nil
		wantErr     error
		errContains string
		notErr      error // must not be wrapped
	}{
		{name: "bare selector", expr: `streamworker_consumer_lag`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: lagLabels},
		{name: "grafana variables in matchers and range", expr: `sum by (topic, partition) (rate(streamworker_consumer_lag{namespace=~"$namespace", pod=~"${pod:regex}"}[$__rate_interval]))`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: "partition topic"},
		{name: "every form of grafana variable", expr: `sum by (topic) (increase(streamworker_events_consumed_total{pod=~"[[pod]]", topic=~"${topic:pipe}"}[$__range])) / ($__range_s + $__interval_ms * 0)`,
			wantMetrics: "streamworker_events_consumed_total", wantLabels: "topic"},
		{name: "a variable does not hide a misspelled label", expr: `sum(rate(streamworker_events_consumed_total{topik=~"$topic"}[$__rate_interval]))`,
			wantErr: ErrUnknownLabel, errContains: "topik"},
		{name: "trailing grouping", expr: `sum(streamworker_consumer_lag) by (group)`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: "group"},
		{name: "no grouping drops every label", expr: `sum(rate(streamworker_events_consumed_total[5m])) * 60`,
			wantMetrics: "streamworker_events_consumed_total", wantLabels: ""},
		{name: "without", expr: `sum without (partition, pod) (streamworker_consumer_lag)`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: "group instance job namespace topic"},
		{name: "histogram quantile", expr: `histogram_quantile(0.99, sum by (le, op) (rate(streamworker_redis_duration_seconds_bucket{op!="get"}[5m])))`,
			wantMetrics: "streamworker_redis_duration_seconds", wantLabels: "op"},
		{name: "histogram sum over count", expr: `rate(streamworker_redis_duration_seconds_sum[5m]) / rate(streamworker_redis_duration_seconds_count[5m])`,
			wantMetrics: "streamworker_redis_duration_seconds", wantLabels: "instance job namespace op pod"},
		{name: "lag growing and above floor", expr: `max by (topic) (streamworker_consumer_lag) > 1000 and on (topic) deriv(sum by (topic) (streamworker_consumer_lag)[10m:1m]) > 0`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: "topic"},
		{name: "group_left keeps the many side", expr: `streamworker_consumer_lag * on (namespace, pod, topic) group_left () sum by (namespace, pod, topic) (rate(streamworker_events_consumed_total[5m]))`,
			wantMetrics: "streamworker_consumer_lag streamworker_events_consumed_total", wantLabels: lagLabels},
		{name: "one-to-one on keeps only the matching labels", expr: `sum by (namespace, topic) (streamworker_consumer_lag) / on (namespace, topic) sum by (namespace, topic) (rate(streamworker_events_consumed_total[5m]))`,
			wantMetrics: "streamworker_consumer_lag streamworker_events_consumed_total", wantLabels: "namespace topic"},
		{name: "or unions labels", expr: `sum by (topic) (streamworker_consumer_lag) or sum by (reason) (streamworker_dlq_total)`,
			wantMetrics: "streamworker_consumer_lag streamworker_dlq_total", wantLabels: "reason topic"},
		{name: "absent keeps equality matchers", expr: `absent(streamworker_consumer_lag{topic="x", partition=~"1|2"})`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: "topic"},
		{name: "label_replace adds its target", expr: `max by (p) (label_replace(streamworker_consumer_lag, "p", "$1", "partition", "(.*)"))`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: "p"},
		{name: "count_values adds its label", expr: `count_values("value", streamworker_consumer_lag)`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: "value"},
		{name: "topk keeps labels", expr: `topk by (topic) (3, sum by (topic, partition) (streamworker_consumer_lag))`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: "partition topic"},
		{name: "unary minus, offset, power", expr: `-streamworker_consumer_lag offset 5m ^ 2`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: lagLabels},
		{name: "at modifier", expr: `sum(rate(streamworker_events_consumed_total[5m] @ end())) + sum(streamworker_consumer_lag @ 1609746000)`,
			wantMetrics: "streamworker_consumer_lag streamworker_events_consumed_total", wantLabels: ""},
		{name: "names inside strings and comments are not metrics", expr: "streamworker_consumer_lag{topic=\"streamworker_fake{}\", group=~'a\\'b'} # streamworker_nope{partiton=\"1\"}",
			wantMetrics: "streamworker_consumer_lag", wantLabels: lagLabels},
		{name: "__name__ selector", expr: `{__name__="streamworker_consumer_lag", topic="x"}`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: lagLabels},
		{name: "numbers", expr: `streamworker_consumer_lag > 1e3 or streamworker_consumer_lag > 0x10 or streamworker_consumer_lag > .5 or 1e-3 * streamworker_consumer_lag < +Inf`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: lagLabels},
		{name: "scalars only", expr: `1 + 2 * time()`, wantMetrics: "", wantLabels: ""},
		{name: "bool comparison", expr: `streamworker_consumer_lag == bool 0`,
			wantMetrics: "streamworker_consumer_lag", wantLabels: lagLabels},
		{name: "summary quantile and count", expr: `go_gc_duration_seconds{quantile="0.5"} + on (pod) go_gc_duration_seconds_count`,
			wantMetrics: "go_gc_duration_seconds", wantLabels: "pod"},

		{name: "misspelled metric", expr: `sum(rate(streamworker_consumer_lagg[5m]))`,
			wantErr: ErrUnknownMetric, errContains: "streamworker_consumer_lagg"},
		{name: "misspelled label in by", expr: `sum by (topic, partiton) (streamworker_consumer_lag)`,
			wantErr: ErrUnknownLabel, errContains: "partiton"},
		{name: "misspelled label in matcher", expr: `streamworker_consumer_lag{partiton="0"}`,
			wantErr: ErrUnknownLabel, errContains: "partiton"},
		{name: "label of another metric", expr: `sum by (reason) (rate(streamworker_events_consumed_total[5m]))`,
			wantErr: ErrUnknownLabel, errContains: `"reason"`},
		{name: "label lost by an inner aggregation", expr: `sum by (partition) (sum by (topic) (streamworker_consumer_lag))`,
			wantErr: ErrUnknownLabel, errContains: "partition"},
		{name: "bucket of a gauge", expr: `streamworker_consumer_lag_bucket`,
			wantErr: ErrUnknownMetric, errContains: "streamworker_consumer_lag_bucket"},
		{name: "bucket of a summary", expr: `go_gc_duration_seconds_bucket`,
			wantErr: ErrUnknownMetric},
		{name: "quantile without le", expr: `histogram_quantile(0.9, sum by (op) (rate(streamworker_redis_duration_seconds_bucket[5m])))`,
			wantErr: ErrUnknownLabel, errContains: `"le"`},
		{name: "le on _sum", expr: `sum by (le) (streamworker_redis_duration_seconds_sum)`,
			wantErr: ErrUnknownLabel, errContains: `"le"`},
		{name: "on label missing on one side", expr: `sum by (topic) (streamworker_consumer_lag) / on (topic) sum by (reason) (streamworker_dlq_total)`,
			wantErr: ErrUnknownLabel, errContains: "on() right-hand side"},
		{name: "group_left label missing on the one side", expr: `streamworker_consumer_lag * on (topic) group_left (reason) sum by (topic) (streamworker_events_consumed_total)`,
			wantErr: ErrUnknownLabel, errContains: "group_left"},
		{name: "label_replace from a misspelled source", expr: `label_replace(streamworker_consumer_lag, "p", "$1", "partiton", "(.*)")`,
			wantErr: ErrUnknownLabel, errContains: "partiton"},
		{name: "label after an on() match is gone", expr: `sum by (partition) (streamworker_consumer_lag / on (topic, pod) group_left () sum by (topic, pod) (streamworker_events_consumed_total) / on (topic) sum by (topic) (streamworker_events_consumed_total))`,
			wantErr: ErrUnknownLabel, errContains: "partition"},
		{name: "an unknown metric is reported once, not per label", expr: `sum by (topic) (rate(streamworker_consumer_lagg{partition="0"}[5m])) / on (topic) sum by (topic) (streamworker_consumer_lag)`,
			wantErr: ErrUnknownMetric, errContains: "streamworker_consumer_lagg", notErr: ErrUnknownLabel},
		{name: "two errors reported together", expr: `streamworker_consumer_lagg + sum by (partiton) (streamworker_consumer_lag)`,
			wantErr: ErrUnknownMetric, errContains: "partiton"},

		{name: "unknown function", expr: `hisogram_quantile(0.9, streamworker_consumer_lag)`, wantErr: ErrSyntax, errContains: "hisogram_quantile"},
		{name: "unbalanced parenthesis", expr: `sum by (topic (streamworker_consumer_lag)`, wantErr: ErrSyntax},
		{name: "unclosed range", expr: `rate(streamworker_events_consumed_total[5m)`, wantErr: ErrSyntax},
		{name: "unterminated string", expr: `streamworker_consumer_lag{topic="x}`, wantErr: ErrSyntax},
		{name: "regex name only", expr: `{__name__=~"streamworker_.*"}`, wantErr: ErrUnknownMetric, errContains: "names no metric"},
		{name: "experimental function", expr: `sort_by_label(streamworker_consumer_lag, "topic")`, wantErr: ErrSyntax, errContains: "sort_by_label"},
		{name: "trailing garbage", expr: `streamworker_consumer_lag streamworker_dlq_total`, wantErr: ErrSyntax},
		{name: "aggregation arity", expr: `topk(streamworker_consumer_lag)`, wantErr: ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := CheckExpr(cat, tt.expr)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("CheckExpr(%q) error = %v, want %v", tt.expr, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.errContains) {
					t.Fatalf("CheckExpr(%q) error = %v, want it to mention %q", tt.expr, err, tt.errContains)
				}
				if tt.notErr != nil && errors.Is(err, tt.notErr) {
					t.Fatalf("CheckExpr(%q) error = %v, want no %v", tt.expr, err, tt.notErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("CheckExpr(%q): %v", tt.expr, err)
			}
			if got, want := a.Metrics, strings.Fields(tt.wantMetrics); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("metrics = %v, want %v", got, want)
			}
			if got, want := a.Labels, strings.Fields(tt.wantLabels); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("labels = %v, want %v", got, want)
			}
		})
	}
}

// TestCheckQueriesTemplates: a legend or an alert template may use only the
// labels its query's result carries.
func TestCheckQueriesTemplates(t *testing.T) {
	cat := fixtureCatalog(t)
	for _, tt := range []struct {
		name    string
		q       Query
		wantErr bool
	}{
		{"legend uses grouped labels", Query{Expr: `sum by (topic, partition) (streamworker_consumer_lag)`, Templates: []string{"{{topic}}/{{ partition }}"}}, false},
		{"legend uses a label the sum dropped", Query{Expr: `sum by (topic) (streamworker_consumer_lag)`, Templates: []string{"{{topic}}/{{partition}}"}}, true},
		{"alert annotation", Query{Expr: `max by (namespace, topic) (streamworker_consumer_lag) > 10`, Templates: []string{"{{ $labels.topic }} in {{ $labels.namespace }}: {{ $value | humanize }}"}}, false},
		{"alert annotation misspelled", Query{Expr: `max by (namespace, topic) (streamworker_consumer_lag) > 10`, Templates: []string{"{{ $labels.topci }}"}}, true},
		{"alert annotation with .Labels", Query{Expr: `max by (topic) (streamworker_consumer_lag) > 10`, Templates: []string{"{{ .Labels.pod }}"}}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			switch err := CheckQueries(cat, []Query{tt.q}); {
			case (err != nil) != tt.wantErr:
				t.Fatalf("CheckQueries error = %v, want error %v", err, tt.wantErr)
			case err != nil && !errors.Is(err, ErrUnknownLabel):
				t.Fatalf("error %v does not wrap ErrUnknownLabel", err)
			}
		})
	}
}

// TestCheckVariables: Grafana's label_values and query_result variable
// queries are checked like panel queries.
func TestCheckVariables(t *testing.T) {
	cat := fixtureCatalog(t)
	want := map[VariableQuery]error{ // nil: the query passes
		{"namespace", `label_values(streamworker_consumer_lag, namespace)`}:              nil,
		{"pod", `label_values(streamworker_consumer_lag{namespace=~"$namespace"}, pod)`}: nil,
		{"any", `label_values(job)`}: nil,
		{"topics", `query_result(sum by (topic) (streamworker_consumer_lag))`}:   nil,
		{"bad label", `label_values(streamworker_events_consumed_total, group)`}: ErrUnknownLabel,
		{"bad metric", `label_values(streamworker_consumer_lagg, group)`}:        ErrUnknownMetric,
	}
	for v, wantErr := range want {
		t.Run(v.Name, func(t *testing.T) {
			err := CheckVariables(cat, []VariableQuery{v})
			if wantErr == nil && err != nil || wantErr != nil && !errors.Is(err, wantErr) {
				t.Fatalf("CheckVariables(%q) = %v, want %v", v.Query, err, wantErr)
			}
		})
	}
}

func TestCatalogAddConflicts(t *testing.T) {
	cat := NewCatalog()
	if err := cat.Add(Metric{Name: "m", Labels: []string{"b", "a"}}); err != nil {
		t.Fatal(err)
	}
	if err := cat.Add(Metric{Name: "m", Kind: KindGauge, Labels: []string{"a", "b"}}); err != nil {
		t.Fatalf("merging a known kind into an unknown one: %v", err)
	}
	if m, _ := cat.Metric("m"); m.Kind != KindGauge {
		t.Fatalf("kind after merge = %v, want gauge", m.Kind)
	}
	if err := cat.Add(Metric{Name: "m", Kind: KindCounter, Labels: []string{"a", "b"}}); err == nil {
		t.Fatal("adding m as a counter after a gauge: no error")
	}
	if err := cat.Add(Metric{Name: "m", Labels: []string{"a"}}); err == nil {
		t.Fatal("adding m with other labels: no error")
	}
	if err := cat.SetKind("nope", KindHistogram); !errors.Is(err, ErrUnknownMetric) {
		t.Fatalf("SetKind of a missing metric = %v, want ErrUnknownMetric", err)
	}
}
