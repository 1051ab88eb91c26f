package check

import (
	"errors"
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// ErrUnknownKind is returned for an object whose apiVersion and kind the
// checks do not know.
var ErrUnknownKind = errors.New("unknown apiVersion and kind")

// goTypes maps "apiVersion/kind" to a constructor of the object's Go type.
var goTypes = map[string]func() any{
	"v1/ConfigMap":                            func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                               func() any { return new(corev1.Secret) },
	"v1/Service":                              func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                       func() any { return new(corev1.ServiceAccount) },
	"apps/v1/Deployment":                      func() any { return new(appsv1.Deployment) },
	"batch/v1/Job":                            func() any { return new(batchv1.Job) },
	"policy/v1/PodDisruptionBudget":           func() any { return new(policyv1.PodDisruptionBudget) },
	"autoscaling/v2/HorizontalPodAutoscaler":  func() any { return new(autoscalingv2.HorizontalPodAutoscaler) },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any { return new(monitoringv1.ServiceMonitor) },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return new(monitoringv1.PrometheusRule) },
	"keda.sh/v1alpha1/ScaledObject":           func() any { return new(ScaledObject) },
}

// Decoded is a rendered object with its typed value.
type Decoded struct {
	Object
	Value any // e.g. *appsv1.Deployment
}

// Decode strict-decodes every object into its type: an unknown field (a
// misspelling; names are case-sensitive), a duplicate field, a value of the
// wrong type or an unknown kind is an error naming the object. All problems
// are reported, joined.
func Decode(objs []Object) ([]Decoded, error) {
	var out []Decoded
	var errs []error
	for _, o := range objs {
		newValue, ok := goTypes[o.APIVersion+"/"+o.Kind]
		if !ok {
			errs = append(errs, fmt.Errorf("%v: %w %s/%s", o, ErrUnknownKind, o.APIVersion, o.Kind))
			continue
		}
		v := newValue()
		if err := decodeStrict(o.YAML, v); err != nil {
			errs = append(errs, fmt.Errorf("%v: %w", o, err))
			continue
		}
		out = append(out, Decoded{Object: o, Value: v})
	}
	return out, errors.Join(errs...)
}

// decodeStrict decodes a YAML object into v as the Kubernetes API server's
// strict field validation does: YAML to JSON with duplicate keys rejected
// (a number stays a number, so a number where the API wants a string is an
// error, as kubectl apply would find), then case-sensitive JSON decoding
// that reports every unknown and duplicate field, not just the first.
func decodeStrict(y []byte, v any) error {
	j, err := yaml.YAMLToJSONStrict(y)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, v)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

// ScaledObject mirrors the fields of KEDA's keda.sh/v1alpha1 ScaledObject
// (KEDA 2.x, apis/keda/v1alpha1) that a chart sets, so that strict decoding
// rejects misspelled ones. Status is left out: a chart never renders it.
type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              ScaledObjectSpec `json:"spec"`
}

// ScaledObjectSpec is KEDA's ScaledObjectSpec.
type ScaledObjectSpec struct {
	ScaleTargetRef        *ScaleTarget    `json:"scaleTargetRef"`
	PollingInterval       *int32          `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32          `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32          `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32          `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32          `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32          `json:"maxReplicaCount,omitempty"`
	Advanced              *AdvancedConfig `json:"advanced,omitempty"`
	Triggers              []ScaleTrigger  `json:"triggers"`
	Fallback              *Fallback       `json:"fallback,omitempty"`
}

// ScaleTarget is KEDA's reference to the scaled workload.
type ScaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

// AdvancedConfig is KEDA's advanced scaling configuration.
type AdvancedConfig struct {
	HorizontalPodAutoscalerConfig *HorizontalPodAutoscalerConfig `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool                           `json:"restoreToOriginalReplicaCount,omitempty"`
	ScalingModifiers              *ScalingModifiers              `json:"scalingModifiers,omitempty"`
}

// HorizontalPodAutoscalerConfig configures the HPA that KEDA manages.
type HorizontalPodAutoscalerConfig struct {
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	Name     string                                         `json:"name,omitempty"`
}

// ScalingModifiers is KEDA's formula over several triggers.
type ScalingModifiers struct {
	Formula          string                         `json:"formula,omitempty"`
	Target           string                         `json:"target,omitempty"`
	ActivationTarget string                         `json:"activationTarget,omitempty"`
	MetricType       autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

// Fallback is the replica count KEDA keeps while a scaler fails.
type Fallback struct {
	FailureThreshold int32  `json:"failureThreshold"`
	Replicas         int32  `json:"replicas"`
	Behavior         string `json:"behavior,omitempty"`
}

// ScaleTrigger is one KEDA scaler. Metadata values are strings in KEDA's
// CRD: a number there is a decode error.
type ScaleTrigger struct {
	Type              string                         `json:"type"`
	Name              string                         `json:"name,omitempty"`
	UseCachedMetrics  bool                           `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string              `json:"metadata"`
	AuthenticationRef *AuthenticationRef             `json:"authenticationRef,omitempty"`
	MetricType        autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

// AuthenticationRef names a (Cluster)TriggerAuthentication.
type AuthenticationRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

// triggerMetadata lists the metadata keys KEDA's scalers read, by trigger
// type, for the triggers the chart renders: a misspelled key is silently
// ignored by KEDA, so the checks reject it.
var triggerMetadata = map[string]map[string]bool{
	"prometheus": set("serverAddress", "query", "queryParameters", "threshold", "activationThreshold",
		"namespace", "customHeaders", "ignoreNullValues", "unsafeSsl", "timeout", "authModes"),
	"kafka": set("bootstrapServers", "consumerGroup", "topic", "lagThreshold", "activationLagThreshold",
		"offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag", "scaleToZeroOnInvalidOffset",
		"limitToPartitionsWithLag", "partitionLimitation", "version", "sasl", "tls", "unsafeSsl",
		"ensureEvenDistributionOfPartitions"),
}

// requiredMetadata lists the metadata keys a trigger type cannot do without.
var requiredMetadata = map[string][]string{
	"prometheus": {"serverAddress", "query", "threshold"},
	"kafka":      {"bootstrapServers", "consumerGroup", "topic"},
}

func set(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}
