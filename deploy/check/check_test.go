package check

import (
	"context"
	"errors"
	"io"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "../../helm/streamworker"
	allEnabled  = chartDir + "/ci/all-enabled-values.yaml"
	composeFile = "../../docker-compose.yml"
)

// validate renders the chart and runs every check on it, returning the
// stage that failed ("render", "decode" or "check") and its error.
func validate(t *testing.T, opts Options) ([]Decoded, string, string, error) {
	t.Helper()
	objs, notes, err := Render(chartDir, opts)
	if err != nil {
		return nil, notes, "render", err
	}
	decoded, err := Decode(objs)
	if err != nil {
		return nil, notes, "decode", err
	}
	if err := Check(decoded); err != nil {
		return decoded, notes, "check", err
	}
	return decoded, notes, "", nil
}

func has(objs []Decoded, kind, name string, hook bool) bool {
	return slices.ContainsFunc(objs, func(o Decoded) bool { return o.Kind == kind && o.Name == name && o.Hook == hook })
}

func deployment(t *testing.T, objs []Decoded) *appsv1.Deployment {
	t.Helper()
	for _, o := range objs {
		if d, ok := o.Value.(*appsv1.Deployment); ok && !isLagExporter(d) {
			return d
		}
	}
	t.Fatal("no Deployment")
	return nil
}

// TestChartValid renders the chart with the default values and with every
// optional part enabled; every object must strict-decode and pass Check.
func TestChartValid(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		want     []string // Kind/name of the release's manifest
		wantHook []string // Kind/name of hooks
		dontWant []string
		replicas int32 // 0: unset (autoscaled)
	}{{
		name: "defaults",
		want: []string{"ConfigMap/streamworker", "ConfigMap/streamworker-dashboard", "Deployment/streamworker",
			"Service/streamworker", "ServiceAccount/streamworker", "PodDisruptionBudget/streamworker"},
		dontWant: []string{"ServiceMonitor/streamworker", "PrometheusRule/streamworker", "ScaledObject/streamworker",
			"HorizontalPodAutoscaler/streamworker", "Job/streamworker-topics"},
		replicas: 2,
	}, {
		name: "all enabled",
		opts: Options{ValuesFiles: []string{allEnabled}},
		want: []string{"ConfigMap/streamworker", "ConfigMap/streamworker-dashboard", "Deployment/streamworker",
			"Service/streamworker", "PodDisruptionBudget/streamworker", "ServiceMonitor/streamworker",
			"PrometheusRule/streamworker", "ScaledObject/streamworker", "Deployment/streamworker-lag-exporter",
			"Service/streamworker-lag-exporter", "ServiceMonitor/streamworker-lag-exporter"},
		wantHook: []string{"Job/streamworker-topics", "ConfigMap/streamworker-topics"},
	}, {
		name:     "kafka trigger",
		opts:     Options{Set: []string{"keda.enabled=true", "keda.trigger=kafka", "keda.kafka.authenticationRef=kafka-auth"}},
		want:     []string{"ScaledObject/streamworker"},
		dontWant: []string{"HorizontalPodAutoscaler/streamworker"},
	}, {
		name:     "hpa",
		opts:     Options{Set: []string{"autoscaling.enabled=true", "autoscaling.targetBacklogPerPod=2000"}},
		want:     []string{"HorizontalPodAutoscaler/streamworker"},
		dontWant: []string{"ScaledObject/streamworker"},
	}, {
		name:     "no service account, no dashboard, no pdb",
		opts:     Options{Set: []string{"serviceAccount.create=false", "dashboard.enabled=false", "podDisruptionBudget.enabled=false", "replicaCount=1"}},
		want:     []string{"Deployment/streamworker"},
		dontWant: []string{"ServiceAccount/streamworker", "ConfigMap/streamworker-dashboard", "PodDisruptionBudget/streamworker"},
		replicas: 1,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, _, stage, err := validate(t, tt.opts)
			if err != nil {
				t.Fatalf("%s: %v", stage, err)
			}
			for _, k := range tt.want {
				kind, name, _ := strings.Cut(k, "/")
				if !has(objs, kind, name, false) {
					t.Errorf("%s not rendered", k)
				}
			}
			for _, k := range tt.wantHook {
				kind, name, _ := strings.Cut(k, "/")
				if !has(objs, kind, name, true) {
					t.Errorf("hook %s not rendered", k)
				}
			}
			for _, k := range tt.dontWant {
				kind, name, _ := strings.Cut(k, "/")
				if has(objs, kind, name, false) || has(objs, kind, name, true) {
					t.Errorf("%s rendered", k)
				}
			}
			d := deployment(t, objs)
			switch {
			case tt.replicas == 0 && d.Spec.Replicas != nil:
				t.Errorf("replicas = %d, want unset under an autoscaler", *d.Spec.Replicas)
			case tt.replicas != 0 && (d.Spec.Replicas == nil || *d.Spec.Replicas != tt.replicas):
				t.Errorf("replicas = %v, want %d", d.Spec.Replicas, tt.replicas)
			}
		})
	}
}

// TestChartRejects proves each check catches what it is for: each case must
// fail at the named stage with an error that mentions want.
func TestChartRejects(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		stage string
		want  string
	}{
		{"replicaCount a string", Options{SetString: []string{"replicaCount=two"}}, "render", "replicaCount"},
		{"replicaCount a string (file)", Options{ValuesFiles: []string{"testdata/replica-count-string.yaml"}}, "render", "replicaCount"},
		{"misspelled resources field", Options{ValuesFiles: []string{"testdata/misspelled-resources.yaml"}}, "render", "limts"},
		{"misspelled configuration key", Options{ValuesFiles: []string{"testdata/config-typo.yaml"}}, "render", "gruop"},
		{"password in the ConfigMap", Options{Set: []string{"config.redis.password=hunter2"}}, "render", "password"},
		{"misspelled pod spec fields", Options{ValuesFiles: []string{"testdata/misspelled-pod-spec.yaml"}}, "decode", `unknown field "spec.template.spec.tolerations[0].opertor"`},
		{"misspelled container field", Options{ValuesFiles: []string{"testdata/misspelled-pod-spec.yaml"}}, "decode", `unknown field "spec.template.spec.containers[0].securityContext.readOnlyRootFilesytem"`},
		{"misspelled extra volume field", Options{ValuesFiles: []string{"testdata/misspelled-pod-spec.yaml"}}, "decode", `unknown field "spec.template.spec.volumes[2].emptyDri"`},
		{"bad quantity", Options{Set: []string{"resources.limits.memory=512mb"}}, "render", "memory"},
		{"keda and hpa together", Options{Set: []string{"keda.enabled=true", "autoscaling.enabled=true"}}, "render", "mutually exclusive"},
		{"hpa without a metric", Options{Set: []string{"autoscaling.enabled=true", "autoscaling.targetCPUUtilizationPercentage=0"}}, "render", "needs autoscaling"},
		{"client cert without key", Options{Set: []string{"tls.kafka.existingSecret=kafka-tls", "tls.kafka.certKey=tls.crt"}}, "render", "set together"},
		{"writable root filesystem", Options{Set: []string{"securityContext.readOnlyRootFilesystem=false"}}, "check", "readOnlyRootFilesystem"},
		{"root user", Options{Set: []string{"podSecurityContext.runAsUser=0", "securityContext.runAsNonRoot=false", "podSecurityContext.runAsNonRoot=false"}}, "check", "uid 0"},
		{"capabilities kept", Options{Set: []string{"securityContext.capabilities.drop=null"}}, "check", "drop ALL"},
		{"probe period 0", Options{Set: []string{"livenessProbe.periodSeconds=0"}}, "render", "periodSeconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, stage, err := validate(t, tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if stage != tt.stage || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("failed at %s with:\n%v\nwant a %s error mentioning %q", stage, err, tt.stage, tt.want)
			}
		})
	}
}

// TestTerminationGracePeriod checks the grace period computed from
// config.shutdown.timeout: always more than the timeout.
func TestTerminationGracePeriod(t *testing.T) {
	tests := []struct {
		timeout string
		extra   int
		want    int64
	}{
		{"", 15, 45}, // the worker's default, 30s
		{"30s", 15, 45},
		{"2m", 15, 135},
		{"1m30s", 15, 105},
		{"1.5m", 15, 105},
		{"1500ms", 15, 17},
		{"100ms", 1, 2},
		{"1h", 60, 3660},
	}
	for _, tt := range tests {
		t.Run(tt.timeout, func(t *testing.T) {
			set := []string{"terminationGracePeriodExtraSeconds=" + strconv.Itoa(tt.extra)}
			if tt.timeout == "" {
				set = append(set, "config.shutdown=null")
			} else {
				set = append(set, "config.shutdown.timeout="+tt.timeout)
			}
			objs, _, stage, err := validate(t, Options{Set: set})
			if err != nil {
				t.Fatalf("%s: %v", stage, err)
			}
			got := deployment(t, objs).Spec.Template.Spec.TerminationGracePeriodSeconds
			if got == nil || *got != tt.want {
				t.Errorf("terminationGracePeriodSeconds = %v, want %d", ptrString(got), tt.want)
			}
		})
	}
}

// TestNotesWarnIdleReplicas checks NOTES.txt warns when replicas would
// exceed the input partitions.
func TestNotesWarnIdleReplicas(t *testing.T) {
	for _, tt := range []struct {
		set  []string
		warn bool
	}{
		{[]string{"replicaCount=3"}, false},
		{[]string{"replicaCount=13"}, true},
		{[]string{"keda.enabled=true", "keda.maxReplicaCount=24"}, true},
		{[]string{"config.topics.partitions=48", "autoscaling.enabled=true", "autoscaling.maxReplicas=24"}, false},
	} {
		_, notes, err := Render(chartDir, Options{Set: tt.set})
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(notes, "WARNING"); got != tt.warn {
			t.Errorf("%v: warning %v, want %v; NOTES:\n%s", tt.set, got, tt.warn, notes)
		}
	}
}

// TestDecodeRejectsScaledObjectTypos checks the local ScaledObject type
// catches misspelled fields and non-string trigger metadata, as KEDA's CRD
// would, and Check catches misspelled trigger metadata keys, which KEDA
// would silently ignore.
func TestDecodeRejectsScaledObjectTypos(t *testing.T) {
	const good = `apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: w}
spec:
  scaleTargetRef: {name: w}
  minReplicaCount: 1
  triggers:
  - type: prometheus
    metadata: {serverAddress: "http://p:9090", query: "sum(x)", threshold: "10"}
`
	tests := []struct {
		name, yaml, stage, want string
	}{
		{"good", good, "", ""},
		{"misspelled field", strings.Replace(good, "minReplicaCount", "minReplicaCont", 1), "decode", "minReplicaCont"},
		{"number in metadata", strings.Replace(good, `threshold: "10"`, "threshold: 10", 1), "decode", "string"},
		{"misspelled metadata key", strings.Replace(good, "threshold:", "treshold:", 1), "check", "treshold"},
	}
	deploy := `apiVersion: apps/v1
kind: Deployment
metadata: {name: w}
spec:
  selector: {matchLabels: {a: b}}
  template:
    metadata: {labels: {a: b}}
    spec: {containers: [{name: c, image: i}]}
`
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := []Object{{Kind: "ScaledObject", APIVersion: "keda.sh/v1alpha1", Name: "w", YAML: []byte(tt.yaml)}}
			decoded, err := Decode(objs)
			stage := "decode"
			if err == nil {
				var d []Decoded
				d, err = Decode([]Object{{Kind: "Deployment", APIVersion: "apps/v1", Name: "w", YAML: []byte(deploy)}})
				if err != nil {
					t.Fatal(err)
				}
				d[0].Value.(*appsv1.Deployment).Spec.Replicas = nil
				c := &checker{}
				c.scaledObject(decoded[0].Object, decoded[0].Value.(*ScaledObject), d[0].Value.(*appsv1.Deployment))
				err, stage = errors.Join(c.errs...), "check"
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || stage != tt.stage || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %s error %v, want a %s error mentioning %q", stage, err, tt.stage, tt.want)
			}
		})
	}
}

func TestDecodeRejectsUnknownKind(t *testing.T) {
	_, err := Decode([]Object{{APIVersion: "v1", Kind: "Pood", Name: "x", YAML: []byte("apiVersion: v1\nkind: Pood\n")}})
	if !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("err = %v, want ErrUnknownKind", err)
	}
}

// TestCompose loads docker-compose.yml with the reference loader and checks
// the stack's wiring.
func TestCompose(t *testing.T) {
	p, err := LoadCompose(context.Background(), composeFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckCompose(p); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kafka", "redis", "topics", "worker", "loadgen", "prometheus", "grafana"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("no %s service", name)
		}
	}
	worker := p.Services["worker"]
	if worker.Deploy == nil || worker.Deploy.Replicas == nil || *worker.Deploy.Replicas != 2 {
		t.Errorf("worker replicas = %v, want 2", worker.Deploy)
	}
	for _, name := range []string{"worker", "loadgen"} {
		if c := p.Services[name].DependsOn["topics"].Condition; c != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s waits for topics with %q, want %q", name, c, types.ServiceConditionCompletedSuccessfully)
		}
	}
	if c := p.Services["topics"].DependsOn["kafka"].Condition; c != types.ServiceConditionHealthy {
		t.Errorf("topics waits for kafka with %q, want %q", c, types.ServiceConditionHealthy)
	}
	if cmd := p.Services["topics"].Command; !slices.Equal([]string(cmd), []string{"topics", "ensure"}) {
		t.Errorf("topics command = %q", cmd)
	}
	if !slices.Contains(p.Services["redis"].Command, "--appendonly") {
		t.Errorf("redis command %q does not turn AOF on", p.Services["redis"].Command)
	}
	for name, s := range p.Services {
		for k := range s.Environment {
			if strings.HasPrefix(k, "SW_") && strings.Contains(k, "PASSWORD") {
				t.Errorf("service %s sets %s in the compose file", name, k)
			}
		}
	}

	// Prometheus scrapes the workers on the port they listen on.
	addr := worker.Environment["SW_HTTP_ADDR"]
	if addr == nil {
		t.Fatal("worker sets no SW_HTTP_ADDR")
	}
	_, port, _ := strings.Cut(*addr, ":")
	b, err := os.ReadFile("../prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		ScrapeConfigs []struct {
			JobName      string `json:"job_name"`
			DNSSDConfigs []struct {
				Names []string `json:"names"`
				Port  int      `json:"port"`
			} `json:"dns_sd_configs"`
		} `json:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &prom); err != nil {
		t.Fatal(err)
	}
	scraped := false
	for _, sc := range prom.ScrapeConfigs {
		for _, d := range sc.DNSSDConfigs {
			if slices.Contains(d.Names, "worker") && strconv.Itoa(d.Port) == port {
				scraped = true
			}
		}
	}
	if !scraped {
		t.Errorf("prometheus.yml does not scrape the worker service on port %s", port)
	}
}

// TestComposeRejects proves the loader and CheckCompose catch a misspelled
// key, an unknown dependency and a wait on a service without a health check.
func TestComposeRejects(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"misspelled key", "services:\n  a:\n    image: x\n    restrat: always\n", "restrat"},
		{"unknown dependency", "services:\n  a:\n    image: x\n    depends_on: [b]\n", "b"},
		{"healthy without a health check", "services:\n  a:\n    image: x\n    depends_on:\n      b: {condition: service_healthy}\n  b:\n    image: y\n", "no health check"},
		{"missing bind mount", "services:\n  a:\n    image: x\n    volumes: [./nope.yml:/etc/nope.yml]\n", "nope.yml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "compose.yml")
			if err := os.WriteFile(path, []byte("name: t\n"+tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := LoadCompose(context.Background(), path, nil)
			if err == nil {
				err = CheckCompose(p)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func TestMain(m *testing.M) {
	// Helm's chart loader logs each symlink it follows (files/ links to
	// deploy/); the tests render the chart dozens of times.
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}
