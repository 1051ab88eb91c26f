package observability

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"
	"go.yaml.in/yaml/v3"

	"github.com/streamworker/streamworker/internal/lagexport"
	"github.com/streamworker/streamworker/worker"
)

const (
	dashboardFile = "../grafana/dashboards/streamworker.json"
	rulesFile     = "../prometheus/alerts.yml"
	rulesTestFile = "../prometheus/alerts_test.yml"
)

// targetLabels are the labels Prometheus adds to every scraped series: job
// and instance always, namespace and pod under Kubernetes.
var targetLabels = []string{"namespace", "pod", "job", "instance"}

// workerHistograms are the worker's histograms. worker.MetricDescs gives
// names and labels but not types, and only a histogram has _bucket, _sum
// and _count series; SetKind fails if one of these names disappears.
var workerHistograms = []string{
	"streamworker_batch_duration_seconds",
	"streamworker_end_to_end_latency_seconds",
	"streamworker_redis_duration_seconds",
}

var exposition = flag.String("exposition", "", "write the text exposition of the Kafka client and runtime metrics to this file (for promtool check metrics)")

// catalog is every metric a worker process exports: the worker's own
// (worker.MetricDescs), the Kafka client's (kprom, registered as the worker
// registers it) and the Go runtime and process collectors. It is built once
// per test binary.
func catalog(t *testing.T) *Catalog {
	t.Helper()
	cat, err := sharedCatalog()
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

var sharedCatalog = sync.OnceValues(buildCatalog)

func buildCatalog() (*Catalog, error) {
	cat := NewCatalog(targetLabels...)
	if err := cat.AddDescs(worker.MetricDescs()); err != nil {
		return nil, fmt.Errorf("worker metrics: %w", err)
	}
	for _, h := range workerHistograms {
		if err := cat.SetKind(h, KindHistogram); err != nil {
			return nil, fmt.Errorf("worker histogram: %w", err)
		}
	}
	// The lag exporter (streamworker lag-exporter, or the elected worker)
	// exports the group's lag read from the brokers.
	if err := cat.AddDescs(lagexport.Descs()); err != nil {
		return nil, fmt.Errorf("lag exporter metrics: %w", err)
	}
	// kube-state-metrics' replica count, which StreamworkerAbsent reads to
	// stay quiet while the Deployment is scaled to zero.
	if err := cat.Add(Metric{Name: "kube_deployment_spec_replicas", Kind: KindGauge, Labels: []string{"deployment"}}); err != nil {
		return nil, err
	}
	workerNames := cat.Names()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fams, kafkaDescs, err := kafkaClientMetrics(reg)
	if err != nil {
		return nil, err
	}
	gathered := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) { return fams, nil })
	if *exposition != "" {
		if err := writeExposition(gathered, *exposition); err != nil {
			return nil, err
		}
	}

	// Gather gives the kind and labels of every series that has a value;
	// Describe adds the registered vectors that traffic did not touch
	// (connection errors, for one), with an unknown kind.
	others := NewCatalog()
	if err := others.AddGatherer(gathered); err != nil {
		return nil, err
	}
	if err := others.AddDescs(kafkaDescs); err != nil {
		return nil, err
	}
	for _, name := range others.Names() {
		if slices.Contains(workerNames, name) {
			return nil, fmt.Errorf("%s is registered by both the worker and the Kafka client or runtime: registration would fail", name)
		}
		m, _ := others.Metric(name)
		if err := cat.Add(m); err != nil {
			return nil, err
		}
	}
	return cat, nil
}

// kafkaClientMetrics registers kprom on reg exactly as the worker does and
// drives a produce and a consume through a kgo client against an in-process
// kfake cluster, so that kprom's lazily registered metrics and their series
// exist. It gathers reg while the client is open (closing the client
// unregisters kprom) and returns the families and kprom's descriptions.
func kafkaClientMetrics(reg *prometheus.Registry) ([]*dto.MetricFamily, []*prometheus.Desc, error) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "user.activity"))
	if err != nil {
		return nil, nil, err
	}
	defer cluster.Close()
	m := kprom.NewMetrics(worker.Namespace, kprom.Subsystem("kafka"), kprom.Registerer(reg))
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cluster.ListenAddrs()...),
		kgo.WithHooks(m),
		kgo.DefaultProduceTopic("user.activity"),
		kgo.ConsumeTopics("user.activity"),
	)
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("u1"), Value: []byte("{}")}).FirstErr(); err != nil {
		return nil, nil, fmt.Errorf("produce: %w", err)
	}
	for got := 0; got == 0; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("no record consumed: %w", err)
		}
		if err := fs.Err0(); err != nil {
			return nil, nil, fmt.Errorf("fetch: %w", err)
		}
		got = fs.NumRecords()
	}
	fams, err := reg.Gather()
	if err != nil {
		return nil, nil, err
	}
	ch := make(chan *prometheus.Desc)
	go func() { m.Describe(ch); close(ch) }()
	var descs []*prometheus.Desc
	for d := range ch {
		descs = append(descs, d)
	}
	return fams, descs, nil
}

func writeExposition(g prometheus.Gatherer, path string) error {
	fams, err := g.Gather()
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToText(&buf, f); err != nil {
			return err
		}
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestDashboardQueriesUseRealMetrics checks every panel query, legend and
// template variable of the dashboard against the real metrics.
func TestDashboardQueriesUseRealMetrics(t *testing.T) {
	cat := catalog(t)
	data := readFile(t, dashboardFile)
	if err := CheckDashboard(cat, data); err != nil {
		t.Fatal(err)
	}

	// Every worker metric is on the dashboard: a new metric needs a panel.
	qs, _, err := DashboardQueries(data)
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string]bool{}
	for _, q := range qs {
		a, err := CheckExpr(cat, q.Expr)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range a.Metrics {
			shown[m] = true
		}
	}
	for _, d := range worker.MetricDescs() {
		name := descName(t, d)
		if !shown[name] {
			t.Errorf("worker metric %s is on no dashboard panel", name)
		}
	}
}

func descName(t *testing.T, d *prometheus.Desc) string {
	t.Helper()
	c := NewCatalog()
	if err := c.AddDescs([]*prometheus.Desc{d}); err != nil {
		t.Fatal(err)
	}
	names := c.Names()
	if len(names) != 1 {
		t.Fatalf("description %v gave names %v", d, names)
	}
	return names[0]
}

// TestDashboardLayout checks the conventions of the dashboard: identity,
// datasource variable, consumer lag first, and readable panels.
func TestDashboardLayout(t *testing.T) {
	type target struct {
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	}
	type gridPos struct{ H, W, X, Y int }
	type panel struct {
		ID          int     `json:"id"`
		Type        string  `json:"type"`
		Title       string  `json:"title"`
		Description string  `json:"description"`
		GridPos     gridPos `json:"gridPos"`
		Datasource  struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		UID           string  `json:"uid"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(readFile(t, dashboardFile), &d); err != nil {
		t.Fatal(err)
	}
	if d.UID != "streamworker" {
		t.Errorf("uid = %q, want streamworker", d.UID)
	}
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion = %d, want one Grafana 10 and 11 read (36-41)", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Type == "datasource" && v.Query != "prometheus" {
			t.Errorf("datasource variable %q selects %v, want prometheus", v.Name, v.Query)
		}
	}
	for name, typ := range map[string]string{"datasource": "datasource", "namespace": "query", "pod": "query", "group": "query"} {
		if vars[name] != typ {
			t.Errorf("template variable %q is %q, want a %s variable", name, vars[name], typ)
		}
	}

	if len(d.Panels) < 2 || d.Panels[0].Type != "row" || !strings.Contains(strings.ToLower(d.Panels[0].Title), "lag") {
		t.Fatalf("the first row must be consumer lag, got %+v", d.Panels[0])
	}
	if first := d.Panels[1]; len(first.Targets) == 0 || !strings.Contains(first.Targets[0].Expr, "streamworker_consumer_lag") {
		t.Errorf("the first panel must show consumer lag, got %q", first.Title)
	}

	ids := map[int]string{}
	var cells []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d missing or also used by %q", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
			}
			cells = append(cells, p)
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Description == "" {
				t.Errorf("panel %q has no description", p.Title)
			}
			if p.FieldConfig.Defaults.Unit == "" {
				t.Errorf("panel %q has no unit", p.Title)
			}
			if p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource %+v, want prometheus ${datasource}", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource.UID != "${datasource}" {
					t.Errorf("panel %q: a query uses datasource %q, want ${datasource}", p.Title, tg.Datasource.UID)
				}
			}
		}
	}
	walk(d.Panels)
	for i, a := range cells {
		for _, b := range cells[i+1:] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q %+v and %q %+v overlap", a.Title, ga, b.Title, gb)
			}
		}
	}
}

// TestAlertRulesUseRealMetrics checks every rule expression and the labels
// its annotations use against the real metrics, and the rules' conventions.
func TestAlertRulesUseRealMetrics(t *testing.T) {
	cat := catalog(t)
	data := readFile(t, rulesFile)
	if err := CheckRules(cat, data); err != nil {
		t.Fatal(err)
	}
	f, err := ParseRules(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Groups) != 1 || f.Groups[0].Name != "streamworker" {
		t.Fatalf("want one rule group named streamworker, got %+v", f.Groups)
	}
	anchors := runbookAnchors(t)
	seen := map[string]bool{}
	for _, r := range f.Groups[0].Rules {
		if r.Alert == "" {
			t.Errorf("rule %q is not an alert", r.Record)
			continue
		}
		if seen[r.Alert] {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s has no %s annotation", r.Alert, a)
			}
		}
		// The runbook_url points at a section of docs/runbook.md.
		want := runbookURL + "#" + strings.ToLower(r.Alert)
		if got := r.Annotations["runbook_url"]; got != want {
			t.Errorf("alert %s: runbook_url %q, want %q", r.Alert, got, want)
		}
		if !slices.Contains(anchors, strings.ToLower(r.Alert)) {
			t.Errorf("alert %s: %s has no section ## %s", r.Alert, runbookFile, r.Alert)
		}
	}
}

const (
	runbookFile = "../../docs/runbook.md"
	runbookURL  = "https://github.com/streamworker/streamworker/blob/main/docs/runbook.md"
)

// runbookAnchors returns the anchors GitHub gives the level-2 headings of
// the runbook: lower case, spaces as hyphens.
func runbookAnchors(t *testing.T) []string {
	var anchors []string
	for line := range strings.Lines(string(readFile(t, runbookFile))) {
		if h, ok := strings.CutPrefix(strings.TrimSpace(line), "## "); ok {
			anchors = append(anchors, strings.ToLower(strings.ReplaceAll(strings.TrimSpace(h), " ", "-")))
		}
	}
	return anchors
}

// TestEveryAlertIsUnitTested checks that alerts_test.yml has, for every
// alert, a case where it fires and one where it must not, and names no
// alert that does not exist (promtool would pass such a case vacuously).
func TestEveryAlertIsUnitTested(t *testing.T) {
	f, err := ParseRules(readFile(t, rulesFile))
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			Name  string `yaml:"name"`
			Cases []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(readFile(t, rulesTestFile), &tests); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tests.RuleFiles, "alerts.yml") {
		t.Errorf("rule_files = %v, want alerts.yml", tests.RuleFiles)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, c := range tc.Cases {
			if len(c.ExpAlerts) > 0 {
				fires[c.Alertname] = true
			} else {
				quiet[c.Alertname] = true
			}
		}
	}
	alerts := map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = true
			if !fires[r.Alert] {
				t.Errorf("alert %s has no test case where it fires", r.Alert)
			}
			if !quiet[r.Alert] {
				t.Errorf("alert %s has no test case where it stays quiet", r.Alert)
			}
		}
	}
	for name := range union(fires, quiet) {
		if !alerts[name] {
			t.Errorf("alerts_test.yml tests %s, which alerts.yml does not define", name)
		}
	}
}

// TestChecksCatchMisspellings proves the checks fail on the mistakes they
// exist for, with the real catalog and real asset files.
func TestChecksCatchMisspellings(t *testing.T) {
	cat := catalog(t)
	exprs := []struct {
		expr string
		want error
		name string
	}{
		{`sum(streamworker_consumer_lagg{namespace=~"$namespace"})`, ErrUnknownMetric, "streamworker_consumer_lagg"},
		{`max by (topic, partiton) (streamworker_consumer_lag)`, ErrUnknownLabel, "partiton"},
		{`streamworker_consumer_lag_seconds{partiton="3"}`, ErrUnknownLabel, "partiton"},
		{`sum by (partition) (rate(streamworker_events_consumed_total[5m]))`, ErrUnknownLabel, "partition"},
		{`streamworker_consumer_lag_seconds_bucket`, ErrUnknownMetric, "_bucket"},
		{`sum by (partition) (rate(streamworker_kafka_fetch_bytes_total[5m]))`, ErrUnknownLabel, "partition"},
		// kprom registers its histograms but the worker does not enable
		// them: they never get a _bucket series.
		{`streamworker_kafka_request_duration_e2e_seconds_bucket`, ErrUnknownMetric, "e2e"},
	}
	for _, e := range exprs {
		if _, err := CheckExpr(cat, e.expr); !errors.Is(err, e.want) || !strings.Contains(err.Error(), e.name) {
			t.Errorf("CheckExpr(%q) = %v, want %v naming %q", e.expr, err, e.want, e.name)
		}
	}

	dashboard := readFile(t, dashboardFile)
	for _, edit := range []struct{ from, to string }{
		{`streamworker_consumer_lag{`, `streamworker_consumer_lagg{`},
		{`(group, topic, partition)`, `(group, topic, partiton)`},
		{`{{topic}}/{{partition}}`, `{{topic}}/{{partiton}}`},
		{`label_values(streamworker_ready, namespace)`, `label_values(streamworker_ready, namespaces)`},
	} {
		bad := bytes.Replace(dashboard, []byte(edit.from), []byte(edit.to), 1)
		if bytes.Equal(bad, dashboard) {
			t.Fatalf("dashboard has no %q to corrupt", edit.from)
		}
		if err := CheckDashboard(cat, bad); err == nil {
			t.Errorf("dashboard with %q instead of %q passed the check", edit.to, edit.from)
		}
	}

	rules := readFile(t, rulesFile)
	for _, edit := range []struct{ from, to string }{
		{`streamworker_dlq_total`, `streamworker_dlq_totals`},
		{`by (namespace, job, topic)`, `by (namespace, job, topik)`},
		{`{{ $labels.topic }}`, `{{ $labels.topik }}`},
		{`{{ $labels.group }}`, `{{ $labels.partition }}`},
	} {
		bad := bytes.Replace(rules, []byte(edit.from), []byte(edit.to), 1)
		if bytes.Equal(bad, rules) {
			t.Fatalf("rules have no %q to corrupt", edit.from)
		}
		if err := CheckRules(cat, bad); err == nil {
			t.Errorf("rules with %q instead of %q passed the check", edit.to, edit.from)
		}
	}
}
