package check

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

// Tests of the operating findings, one per finding: the chart refuses at
// render, with a message naming the fix, a combination that cannot work;
// and renders the working form of each.

func scaledObject(t *testing.T, objs []Decoded) *ScaledObject {
	t.Helper()
	for _, o := range objs {
		if so, ok := o.Value.(*ScaledObject); ok {
			return so
		}
	}
	t.Fatal("no ScaledObject")
	return nil
}

func prometheusRule(t *testing.T, objs []Decoded) *monitoringv1.PrometheusRule {
	t.Helper()
	for _, o := range objs {
		if pr, ok := o.Value.(*monitoringv1.PrometheusRule); ok {
			return pr
		}
	}
	t.Fatal("no PrometheusRule")
	return nil
}

func mustValidate(t *testing.T, opts Options) []Decoded {
	t.Helper()
	objs, _, stage, err := validate(t, opts)
	if err != nil {
		t.Fatalf("%s: %v", stage, err)
	}
	return objs
}

// TestChartRefusesImpossibleOperations: each combination that renders a
// workload that cannot scale, authenticate or alert as asked fails at
// render with the reason and the fix.
func TestChartRefusesImpossibleOperations(t *testing.T) {
	keda := []string{"keda.enabled=true"}
	tests := []struct {
		name string
		set  []string
		want []string
	}{
		{"kafka trigger with SASL and no authenticationRef",
			append(keda, "config.kafka.sasl.mechanism=SCRAM-SHA-512", "config.kafka.sasl.username=sw"),
			[]string{"keda.trigger=kafka needs keda.kafka.authenticationRef", "SASL SCRAM-SHA-512", "TriggerAuthentication"}},
		{"kafka trigger with TLS and no authenticationRef",
			append(keda, "tls.kafka.existingSecret=kafka-tls"),
			[]string{"keda.trigger=kafka needs keda.kafka.authenticationRef", "TLS"}},
		{"kafka trigger with config TLS and no authenticationRef",
			append(keda, "config.kafka.tls.enabled=true"),
			[]string{"keda.kafka.authenticationRef"}},
		{"offsetResetPolicy against start_offset",
			append(keda, "keda.kafka.offsetResetPolicy=latest"),
			[]string{"keda.kafka.offsetResetPolicy=latest contradicts config.kafka.start_offset=earliest", "Leave keda.kafka.offsetResetPolicy empty"}},
		{"kafka extraMetadata overriding a key the chart sets",
			append(keda, "keda.kafka.extraMetadata.topic=other"),
			[]string{"keda.kafka.extraMetadata.topic: the chart sets this trigger key itself"}},
		{"prometheus extraMetadata overriding a key the chart sets",
			append(keda, "keda.trigger=prometheus", "serviceMonitor.enabled=true", "keda.prometheus.extraMetadata.query=up"),
			[]string{"keda.prometheus.extraMetadata.query: the chart sets this trigger key itself"}},
		{"prometheus trigger from zero on the workers' own backlog",
			append(keda, "keda.trigger=prometheus", "serviceMonitor.enabled=true", "keda.minReplicaCount=0"),
			[]string{"cannot scale up from zero", "keda.trigger=kafka", "lagExporter"}},
		{"prometheus trigger's default query without the ServiceMonitor",
			append(keda, "keda.trigger=prometheus"),
			[]string{"needs serviceMonitor.enabled=true"}},
		{"an unknown trigger",
			append(keda, "keda.trigger=cpu"),
			[]string{"/keda/trigger"}},
		{"an alert name that does not exist",
			[]string{"prometheusRule.enabled=true", "prometheusRule.alerts.StreamworkerLagHigh.enabled=false"},
			[]string{"prometheusRule.alerts.StreamworkerLagHigh: no such alert", "StreamworkerConsumerLagGrowing"}},
		{"a threshold for an alert without one",
			[]string{"prometheusRule.enabled=true", "prometheusRule.alerts.StreamworkerAbsent.threshold=3"},
			[]string{"prometheusRule.alerts.StreamworkerAbsent.threshold: the alert has no threshold to set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, stage, err := validate(t, Options{Set: tt.set})
			if err == nil {
				t.Fatal("rendered")
			}
			for _, w := range tt.want {
				if stage != "render" || !strings.Contains(err.Error(), w) {
					t.Errorf("failed at %s with:\n%v\nwant a render error mentioning %q", stage, err, w)
				}
			}
		})
	}
}

// TestKEDAKafkaTrigger: the default trigger reads the group's lag from the
// brokers, so it scales from zero; its offsetResetPolicy follows
// config.kafka.start_offset; extraMetadata passes through as strings;
// authenticationRef is rendered when set.
func TestKEDAKafkaTrigger(t *testing.T) {
	so := scaledObject(t, mustValidate(t, Options{Set: []string{"keda.enabled=true", "keda.minReplicaCount=0",
		"config.kafka.brokers={k1:9092,k2:9092}", "config.kafka.group=g", "config.topics.input=in"}}))
	if *so.Spec.MinReplicaCount != 0 || len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "kafka" {
		t.Fatalf("spec: min %d, triggers %+v", *so.Spec.MinReplicaCount, so.Spec.Triggers)
	}
	md := so.Spec.Triggers[0].Metadata
	for k, want := range map[string]string{"bootstrapServers": "k1:9092,k2:9092", "consumerGroup": "g", "topic": "in",
		"offsetResetPolicy": "earliest", "lagThreshold": "5000", "activationLagThreshold": "0", "allowIdleConsumers": "false"} {
		if md[k] != want {
			t.Errorf("metadata %s = %q, want %q", k, md[k], want)
		}
	}
	if so.Spec.Triggers[0].AuthenticationRef != nil {
		t.Errorf("authenticationRef rendered without being set")
	}

	so = scaledObject(t, mustValidate(t, Options{Set: []string{"keda.enabled=true", "config.kafka.start_offset=latest",
		"config.kafka.sasl.mechanism=PLAIN", "config.kafka.sasl.username=sw", "keda.kafka.authenticationRef=kafka-auth",
		"keda.kafka.extraMetadata.excludePersistentLag=true", "keda.kafka.extraMetadata.limitToPartitionsWithLag=true"}}))
	tr := so.Spec.Triggers[0]
	if tr.Metadata["offsetResetPolicy"] != "latest" {
		t.Errorf("offsetResetPolicy %q, want latest (config.kafka.start_offset)", tr.Metadata["offsetResetPolicy"])
	}
	if tr.Metadata["excludePersistentLag"] != "true" || tr.Metadata["limitToPartitionsWithLag"] != "true" {
		t.Errorf("extraMetadata not passed through: %v", tr.Metadata)
	}
	if tr.AuthenticationRef == nil || tr.AuthenticationRef.Name != "kafka-auth" {
		t.Errorf("authenticationRef %+v, want kafka-auth", tr.AuthenticationRef)
	}
}

// TestKEDAPrometheusTriggerFromZero: with the lag exporter the default
// prometheus query reads streamworker_group_lag, which exists with no
// worker running, so minReplicaCount 0 renders.
func TestKEDAPrometheusTriggerFromZero(t *testing.T) {
	so := scaledObject(t, mustValidate(t, Options{Set: []string{"keda.enabled=true", "keda.trigger=prometheus",
		"keda.minReplicaCount=0", "serviceMonitor.enabled=true", "lagExporter.enabled=true"}}))
	q := so.Spec.Triggers[0].Metadata["query"]
	if !strings.Contains(q, "streamworker_group_lag{") || strings.Contains(q, "streamworker_backlog") {
		t.Errorf("query %q, want the lag exporter's streamworker_group_lag", q)
	}
}

// TestPrometheusRulePerReleaseAndAdjustable: every rule selects the
// release's namespace and job; an alert can be disabled, and its threshold,
// for and labels changed; alertLabels reach every alert; each alert has a
// runbook_url into docs/runbook.md, whose base runbookBaseURL replaces.
func TestPrometheusRulePerReleaseAndAdjustable(t *testing.T) {
	pr := prometheusRule(t, mustValidate(t, Options{Release: "orders", Namespace: "shop", Set: []string{
		"prometheusRule.enabled=true",
		"prometheusRule.alertLabels.team=data",
		"prometheusRule.alerts.StreamworkerDLQRatioHigh.threshold=0.2",
		"prometheusRule.alerts.StreamworkerDLQRatioHigh.for=30m",
		"prometheusRule.alerts.StreamworkerDLQRatioHigh.labels.severity=critical",
		"prometheusRule.alerts.StreamworkerGapsGivenUp.enabled=false",
		"prometheusRule.runbookBaseURL=https://wiki.example.com/runbook",
	}}))
	alerts := map[string]monitoringv1.Rule{}
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts[r.Alert] = r
		}
	}
	if _, ok := alerts["StreamworkerGapsGivenUp"]; ok {
		t.Error("StreamworkerGapsGivenUp is rendered although disabled")
	}
	if len(alerts) < 10 {
		t.Fatalf("%d alerts rendered", len(alerts))
	}
	for name, r := range alerts {
		expr := r.Expr.String()
		if strings.Contains(expr, `job="streamworker"`) ||
			!strings.Contains(expr, `namespace="shop", job="orders-streamworker"`) && !strings.Contains(expr, `namespace="shop", deployment="orders-streamworker"`) {
			t.Errorf("%s does not select the release's series: %s", name, expr)
		}
		if r.Labels["team"] != "data" {
			t.Errorf("%s: labels %v lack team=data", name, r.Labels)
		}
		if u := r.Annotations["runbook_url"]; !strings.HasPrefix(u, "https://wiki.example.com/runbook#") {
			t.Errorf("%s: runbook_url %q does not use runbookBaseURL", name, u)
		}
	}
	dlq := alerts["StreamworkerDLQRatioHigh"]
	if !strings.Contains(dlq.Expr.String(), "> 0.2 # threshold") || dlq.For == nil || string(*dlq.For) != "30m" ||
		dlq.Labels["severity"] != "critical" {
		t.Errorf("StreamworkerDLQRatioHigh not adjusted: expr %s, for %v, labels %v", dlq.Expr.String(), dlq.For, dlq.Labels)
	}
	if !strings.Contains(dlq.Expr.String(), "streamworker_dlq_total") || !strings.Contains(dlq.Expr.String(), "/") {
		t.Errorf("StreamworkerDLQRatioHigh is not a ratio: %s", dlq.Expr.String())
	}
}

// TestGoMemLimit: a memory limit sets GOMEMLIMIT to 90% of it.
func TestGoMemLimit(t *testing.T) {
	for limit, want := range map[string]string{"512Mi": "460MiB", "1Gi": "921MiB"} {
		d := deployment(t, mustValidate(t, Options{Set: []string{"resources.limits.memory=" + limit}}))
		got := ""
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "GOMEMLIMIT" {
				got = e.Value
			}
		}
		if got != want {
			t.Errorf("limit %s: GOMEMLIMIT %q, want %q", limit, got, want)
		}
	}
}

// TestReleaseAlerts renders the PrometheusRule of two releases in one
// namespace and runs the promtool unit tests of
// testdata/alerts/release_alerts_test.yml on both rule sets loaded
// together: the alert of a release that is down names that release only,
// and a release scaled to zero by KEDA is not absent. It needs promtool
// (Debian's prometheus package; deploy/check.sh installs it and sets
// SW_REQUIRE_PROMTOOL=1 so that the test cannot be skipped there).
func TestReleaseAlerts(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("SW_REQUIRE_PROMTOOL") != "" {
			t.Fatal("promtool not found")
		}
		t.Skip("promtool not found (apt-get install prometheus)")
	}
	dir := t.TempDir()
	for _, release := range []string{"orders", "billing"} {
		pr := prometheusRule(t, mustValidate(t, Options{Release: release, Namespace: "shop", Set: []string{"prometheusRule.enabled=true"}}))
		out, err := yaml.Marshal(map[string]any{"groups": pr.Spec.Groups})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, release+".rules.yml"), out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	test, err := os.ReadFile("testdata/alerts/release_alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "release_alerts_test.yml"), test, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "test", "rules", "release_alerts_test.yml")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
