package check

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// ConfigPath is where the worker's configuration file is mounted.
const ConfigPath = "/etc/streamworker/config.yaml"

// defaultShutdownTimeout is the worker's default shutdown.timeout.
const defaultShutdownTimeout = 30 * time.Second

// Check checks what strict decoding cannot: that the objects refer to each
// other correctly (selectors, ports, volumes, ConfigMaps, scale targets),
// that every pod meets the restricted Pod Security Standard and is given
// more time to stop than the worker's shutdown timeout, and that no
// configuration file holds a password. All problems are reported, joined.
func Check(objs []Decoded) error {
	c := &checker{configMaps: map[string]*corev1.ConfigMap{}, hookConfigMaps: map[string]*corev1.ConfigMap{}}
	seen := map[string]bool{}
	for _, o := range objs {
		id := o.Kind + "/" + o.Name
		if seen[id] && !o.Hook {
			c.errorf(o.Object, "rendered twice")
		}
		seen[id] = true
		switch v := o.Value.(type) {
		case *corev1.ConfigMap:
			if o.Hook {
				c.hookConfigMaps[v.Name] = v
			} else {
				c.configMaps[v.Name] = v
			}
		case *appsv1.Deployment:
			c.deployments = append(c.deployments, v)
		case *corev1.Service:
			c.services = append(c.services, v)
		}
	}
	var workers []*appsv1.Deployment
	for _, d := range c.deployments {
		if !isLagExporter(d) {
			workers = append(workers, d)
		}
	}
	if len(workers) != 1 || len(c.deployments) > 2 {
		c.errs = append(c.errs, fmt.Errorf("%d worker Deployments and %d lag exporters rendered, want 1 and at most 1",
			len(workers), len(c.deployments)-len(workers)))
		return errors.Join(c.errs...)
	}
	d := workers[0]
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *corev1.ConfigMap:
			c.configMap(o.Object, v)
		case *appsv1.Deployment:
			if isLagExporter(v) {
				c.lagExporter(o.Object, v)
			} else {
				c.deployment(o.Object, v)
			}
		case *batchv1.Job:
			c.job(o.Object, v)
		case *corev1.Service:
			c.service(o.Object, v)
		case *policyv1.PodDisruptionBudget:
			c.selects(o.Object, v.Spec.Selector, d.Spec.Template.Labels, "pods of Deployment "+d.Name)
		case *monitoringv1.ServiceMonitor:
			c.serviceMonitor(o.Object, v)
		case *monitoringv1.PrometheusRule:
			c.check(o.Object, len(v.Spec.Groups) > 0, "has no rule groups")
		case *ScaledObject:
			c.scaledObject(o.Object, v, d)
		case *autoscalingv2.HorizontalPodAutoscaler:
			c.check(o.Object, v.Spec.ScaleTargetRef.Kind == "Deployment" && v.Spec.ScaleTargetRef.Name == d.Name,
				"scales %s/%s, want Deployment/%s", v.Spec.ScaleTargetRef.Kind, v.Spec.ScaleTargetRef.Name, d.Name)
			c.check(o.Object, d.Spec.Replicas == nil, "Deployment %s sets replicas while autoscaled", d.Name)
			c.check(o.Object, len(v.Spec.Metrics) > 0, "has no metrics")
		}
	}
	return errors.Join(c.errs...)
}

type checker struct {
	configMaps     map[string]*corev1.ConfigMap // of the release's manifest
	hookConfigMaps map[string]*corev1.ConfigMap // rendered as hooks
	deployments    []*appsv1.Deployment
	services       []*corev1.Service
	errs           []error
}

func (c *checker) errorf(o Object, format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%v: %s", o, fmt.Sprintf(format, args...)))
}

func (c *checker) check(o Object, ok bool, format string, args ...any) {
	if !ok {
		c.errorf(o, format, args...)
	}
}

// selects checks that a label selector selects the given labels.
func (c *checker) selects(o Object, sel *metav1.LabelSelector, set map[string]string, what string) {
	if sel == nil {
		c.errorf(o, "has no selector")
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		c.errorf(o, "selector: %v", err)
		return
	}
	c.check(o, !s.Empty(), "selector selects everything")
	c.check(o, s.Matches(labels.Set(set)), "selector %v does not select the %s (labels %v)", s, what, set)
}

// configMap checks a configuration file: it must parse and hold no password.
// The dashboard ConfigMap must hold valid JSON.
func (c *checker) configMap(o Object, cm *corev1.ConfigMap) {
	for name, data := range cm.Data {
		switch {
		case strings.HasSuffix(name, ".json"):
			c.check(o, json.Valid([]byte(data)), "%s is not valid JSON", name)
		case name == "config.yaml":
			var cfg map[string]any
			if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
				c.errorf(o, "config.yaml: %v", err)
				continue
			}
			for _, k := range leafKeys("", cfg) {
				c.check(o, !strings.HasSuffix(k, ".password"), "config.yaml sets %s: passwords come from Secrets", k)
			}
		}
	}
}

func leafKeys(prefix string, m map[string]any) []string {
	var out []string
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			out = append(out, leafKeys(prefix+k+".", sub)...)
			continue
		}
		out = append(out, prefix+k)
	}
	return out
}

// shutdownTimeout returns shutdown.timeout of a config.yaml.
func shutdownTimeout(cm *corev1.ConfigMap) (time.Duration, error) {
	var cfg struct {
		Shutdown struct {
			Timeout string `json:"timeout"`
		} `json:"shutdown"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg); err != nil {
		return 0, err
	}
	if cfg.Shutdown.Timeout == "" {
		return defaultShutdownTimeout, nil
	}
	return time.ParseDuration(cfg.Shutdown.Timeout)
}

func (c *checker) deployment(o Object, d *appsv1.Deployment) {
	c.selects(o, d.Spec.Selector, d.Spec.Template.Labels, "Deployment's own pods")
	cm := c.pod(o, &d.Spec.Template.Spec, c.configMaps)
	ctr := container(&d.Spec.Template.Spec, "streamworker")
	if ctr == nil {
		c.errorf(o, "has no container named streamworker")
		return
	}
	for _, p := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", ctr.LivenessProbe, "/livez"}, {"readiness", ctr.ReadinessProbe, "/readyz"}, {"startup", ctr.StartupProbe, "/livez"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			c.errorf(o, "has no HTTP %s probe", p.name)
			continue
		}
		c.check(o, p.probe.HTTPGet.Path == p.path, "%s probe path %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
		c.check(o, hasPort(ctr, p.probe.HTTPGet.Port.String()), "%s probe port %s is not a container port", p.name, p.probe.HTTPGet.Port.String())
	}
	c.check(o, slices.Equal(ctr.Args, []string{"run", "--config", ConfigPath}), "args %q, want run --config %s", ctr.Args, ConfigPath)
	if cm == nil {
		return
	}
	timeout, err := shutdownTimeout(cm)
	if err != nil {
		c.errorf(o, "ConfigMap %s: shutdown.timeout: %v", cm.Name, err)
		return
	}
	grace := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	c.check(o, grace != nil && time.Duration(*grace)*time.Second > timeout,
		"terminationGracePeriodSeconds %v must exceed shutdown.timeout %v", ptrString(grace), timeout)
	if port := httpPort(cm); port != "" {
		c.check(o, hasPort(ctr, port), "config http.addr port %s is not a container port", port)
	}
}

func ptrString(p *int64) string {
	if p == nil {
		return "unset"
	}
	return strconv.FormatInt(*p, 10)
}

// httpPort returns the port of http.addr in a config.yaml, "" if unset.
func httpPort(cm *corev1.ConfigMap) string {
	var cfg struct {
		HTTP struct {
			Addr string `json:"addr"`
		} `json:"http"`
	}
	if yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg) != nil || cfg.HTTP.Addr == "" {
		return ""
	}
	_, port, _ := strings.Cut(cfg.HTTP.Addr, ":")
	return port
}

func (c *checker) job(o Object, j *batchv1.Job) {
	c.check(o, o.Hook, "the topics Job must be a Helm hook")
	c.check(o, j.Spec.Template.Spec.RestartPolicy == corev1.RestartPolicyNever || j.Spec.Template.Spec.RestartPolicy == corev1.RestartPolicyOnFailure,
		"restartPolicy %q", j.Spec.Template.Spec.RestartPolicy)
	c.check(o, j.Spec.Template.Spec.ServiceAccountName == "", "a pre-install hook cannot use the release's ServiceAccount %q", j.Spec.Template.Spec.ServiceAccountName)
	// A pre-install hook runs before the release's ConfigMap exists.
	c.pod(o, &j.Spec.Template.Spec, c.hookConfigMaps)
	for _, ctr := range j.Spec.Template.Spec.Containers {
		c.check(o, slices.Equal(ctr.Args, []string{"topics", "ensure", "--config", ConfigPath}), "args %q, want topics ensure --config %s", ctr.Args, ConfigPath)
	}
}

func container(spec *corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	return nil
}

func hasPort(ctr *corev1.Container, port string) bool {
	for _, p := range ctr.Ports {
		if p.Name == port || strconv.Itoa(int(p.ContainerPort)) == port {
			return true
		}
	}
	return false
}

// pod checks a pod spec: every volume mount has its volume, every ConfigMap
// volume names a ConfigMap among cms, the configuration file is mounted, and
// the pod meets the restricted Pod Security Standard. It returns the
// ConfigMap mounted as the configuration file.
func (c *checker) pod(o Object, spec *corev1.PodSpec, cms map[string]*corev1.ConfigMap) *corev1.ConfigMap {
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		c.check(o, volumes[v.Name].Name == "", "volume %s defined twice", v.Name)
		volumes[v.Name] = v
		if v.ConfigMap != nil {
			c.check(o, cms[v.ConfigMap.Name] != nil, "volume %s: ConfigMap %s is not rendered where the pod can use it", v.Name, v.ConfigMap.Name)
		}
	}
	c.restricted(o, spec)
	var config *corev1.ConfigMap
	for _, ctr := range spec.Containers {
		for _, m := range ctr.VolumeMounts {
			v, ok := volumes[m.Name]
			if !ok {
				c.errorf(o, "container %s mounts undefined volume %s", ctr.Name, m.Name)
				continue
			}
			if m.MountPath == ConfigPath && v.ConfigMap != nil {
				config = cms[v.ConfigMap.Name]
			}
		}
		for _, e := range ctr.Env {
			c.check(o, !strings.HasSuffix(e.Name, "PASSWORD") || e.Value == "", "env %s: a password must come from a Secret (valueFrom), not a value", e.Name)
		}
	}
	c.check(o, config != nil, "no ConfigMap is mounted at %s", ConfigPath)
	return config
}

// restricted checks the restricted Pod Security Standard's rules that a
// chart controls: non-root, no privilege escalation, every capability
// dropped, RuntimeDefault seccomp; plus a read-only root filesystem.
func (c *checker) restricted(o Object, spec *corev1.PodSpec) {
	psc := spec.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	for _, ctr := range spec.Containers {
		sc := ctr.SecurityContext
		if sc == nil {
			c.errorf(o, "container %s has no securityContext", ctr.Name)
			continue
		}
		nonRoot := (sc.RunAsNonRoot != nil && *sc.RunAsNonRoot) || (sc.RunAsNonRoot == nil && psc.RunAsNonRoot != nil && *psc.RunAsNonRoot)
		c.check(o, nonRoot, "container %s: runAsNonRoot is not true", ctr.Name)
		uid := sc.RunAsUser
		if uid == nil {
			uid = psc.RunAsUser
		}
		c.check(o, uid == nil || *uid != 0, "container %s runs as uid 0", ctr.Name)
		c.check(o, sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "container %s: allowPrivilegeEscalation is not false", ctr.Name)
		c.check(o, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "container %s: readOnlyRootFilesystem is not true", ctr.Name)
		c.check(o, sc.Privileged == nil || !*sc.Privileged, "container %s is privileged", ctr.Name)
		c.check(o, sc.Capabilities != nil && slices.Contains(sc.Capabilities.Drop, "ALL"), "container %s does not drop ALL capabilities", ctr.Name)
		c.check(o, sc.Capabilities == nil || len(sc.Capabilities.Add) == 0, "container %s adds capabilities", ctr.Name)
		seccomp := sc.SeccompProfile
		if seccomp == nil {
			seccomp = psc.SeccompProfile
		}
		c.check(o, seccomp != nil && (seccomp.Type == corev1.SeccompProfileTypeRuntimeDefault || seccomp.Type == corev1.SeccompProfileTypeLocalhost),
			"container %s: seccompProfile is not RuntimeDefault", ctr.Name)
	}
}

// service checks that s selects the pods of exactly one Deployment, and
// that its target ports are ports of that Deployment's container.
func (c *checker) service(o Object, s *corev1.Service) {
	var d *appsv1.Deployment
	n := 0
	for _, dd := range c.deployments {
		if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(dd.Spec.Template.Labels)) {
			d, n = dd, n+1
		}
	}
	if n != 1 {
		c.errorf(o, "selector %v selects the pods of %d Deployments, want 1", s.Spec.Selector, n)
		return
	}
	ctr := &d.Spec.Template.Spec.Containers[0]
	for _, p := range s.Spec.Ports {
		c.check(o, hasPort(ctr, p.TargetPort.String()), "port %s: targetPort %s is not a port of Deployment %s", p.Name, p.TargetPort.String(), d.Name)
	}
}

// isLagExporter reports whether d is the chart's group lag exporter.
func isLagExporter(d *appsv1.Deployment) bool {
	return d.Spec.Template.Labels["app.kubernetes.io/component"] == "lag-exporter"
}

// lagExporter checks the lag exporter's Deployment: it selects its own
// pods (and so not the workers'), one replica (two would export every
// series twice), the restricted pod standard, and runs lag-exporter.
func (c *checker) lagExporter(o Object, d *appsv1.Deployment) {
	c.selects(o, d.Spec.Selector, d.Spec.Template.Labels, "Deployment's own pods")
	c.pod(o, &d.Spec.Template.Spec, c.configMaps)
	c.check(o, d.Spec.Replicas != nil && *d.Spec.Replicas == 1, "replicas %s, want 1", ptrString32(d.Spec.Replicas))
	ctr := container(&d.Spec.Template.Spec, "lag-exporter")
	c.check(o, ctr != nil && len(ctr.Args) > 0 && ctr.Args[0] == "lag-exporter", "has no container lag-exporter running streamworker lag-exporter")
}

func ptrString32(p *int32) string {
	if p == nil {
		return "unset"
	}
	return strconv.FormatInt(int64(*p), 10)
}

func (c *checker) serviceMonitor(o Object, sm *monitoringv1.ServiceMonitor) {
	s, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	if err != nil {
		c.errorf(o, "selector: %v", err)
		return
	}
	for _, ep := range sm.Spec.Endpoints {
		found := false
		for _, svc := range c.services {
			if !s.Matches(labels.Set(svc.Labels)) {
				continue
			}
			for _, p := range svc.Spec.Ports {
				found = found || p.Name == ep.Port
			}
		}
		c.check(o, found, "endpoint port %q is not a port of a Service it selects", ep.Port)
	}
}

func (c *checker) scaledObject(o Object, so *ScaledObject, d *appsv1.Deployment) {
	ref := so.Spec.ScaleTargetRef
	c.check(o, ref != nil && ref.Name == d.Name && (ref.Kind == "" || ref.Kind == "Deployment"),
		"scaleTargetRef does not name Deployment %s", d.Name)
	c.check(o, d.Spec.Replicas == nil, "Deployment %s sets replicas while KEDA scales it", d.Name)
	c.check(o, len(so.Spec.Triggers) > 0, "has no triggers")
	if so.Spec.MinReplicaCount != nil && so.Spec.MaxReplicaCount != nil {
		c.check(o, *so.Spec.MinReplicaCount <= *so.Spec.MaxReplicaCount, "minReplicaCount exceeds maxReplicaCount")
	}
	for _, t := range so.Spec.Triggers {
		known, ok := triggerMetadata[t.Type]
		if !ok {
			c.errorf(o, "trigger type %q is not one the chart renders", t.Type)
			continue
		}
		for k := range t.Metadata {
			c.check(o, known[k], "trigger %s: unknown metadata key %q", t.Type, k)
		}
		for _, k := range requiredMetadata[t.Type] {
			c.check(o, t.Metadata[k] != "", "trigger %s: metadata %s is empty", t.Type, k)
		}
	}
}
