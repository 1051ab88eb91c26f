// Package check validates streamworker's deployment files offline: it
// renders the Helm chart with the Helm SDK as `helm template` does,
// strict-decodes every rendered object into its Kubernetes, prometheus-operator
// or KEDA type (an unknown or misspelled field is an error), checks how the
// objects refer to each other, and loads docker-compose.yml with the Compose
// specification's reference loader.
//
// It is a module of its own so that Helm's and Kubernetes' dependencies stay
// out of the product's module. Its functions are safe for concurrent use.
package check

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
	"sigs.k8s.io/yaml"
)

// KubeVersion is the Kubernetes version the chart is rendered and checked for.
var KubeVersion = chartutil.KubeVersion{Version: "v1.30.0", Major: "1", Minor: "30"}

// APIVersions are the custom resource APIs the chart may render, announced
// as available like `helm template --api-versions` would.
var APIVersions = chartutil.VersionSet{
	"monitoring.coreos.com/v1",
	"monitoring.coreos.com/v1/ServiceMonitor",
	"monitoring.coreos.com/v1/PrometheusRule",
	"keda.sh/v1alpha1",
	"keda.sh/v1alpha1/ScaledObject",
}

// Object is one rendered Kubernetes object.
type Object struct {
	Source     string // template that rendered it, e.g. streamworker/templates/deployment.yaml
	Hook       bool   // a Helm hook (not part of the release's manifest)
	APIVersion string
	Kind       string
	Name       string
	YAML       []byte
}

// String names the object for error messages.
func (o Object) String() string {
	return fmt.Sprintf("%s %s (%s)", o.Kind, o.Name, o.Source)
}

// Options are the inputs of Render besides the chart.
type Options struct {
	ValuesFiles []string // like helm -f, later files win
	Set         []string // like helm --set key=value, applied after the files
	SetString   []string // like helm --set-string key=value
	Release     string   // release name; "" means "streamworker"
	Namespace   string   // "" means "streamworker"
}

// Render renders the chart in chartDir as `helm template` does for
// KubeVersion with APIVersions available, validating the values against
// values.schema.json. It returns the objects of the manifest and of the
// hooks, in that order, and the rendered NOTES.txt.
func Render(chartDir string, opts Options) ([]Object, string, error) {
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, "", fmt.Errorf("load chart: %w", err)
	}
	vals, err := (&values.Options{ValueFiles: opts.ValuesFiles, Values: opts.Set, StringValues: opts.SetString}).MergeValues(getter.Providers{})
	if err != nil {
		return nil, "", fmt.Errorf("values: %w", err)
	}
	inst := action.NewInstall(&action.Configuration{})
	inst.ClientOnly = true
	inst.DryRun = true
	inst.Replace = true
	inst.ReleaseName = cmp.Or(opts.Release, "streamworker")
	inst.Namespace = cmp.Or(opts.Namespace, "streamworker")
	kv := KubeVersion
	inst.KubeVersion = &kv
	inst.APIVersions = APIVersions
	rel, err := inst.Run(chrt, vals)
	if err != nil {
		return nil, "", fmt.Errorf("render: %w", err)
	}
	objs, err := splitManifest(rel.Manifest, false)
	if err != nil {
		return nil, "", err
	}
	for _, h := range rel.Hooks {
		hs, err := splitManifest("# Source: "+h.Path+"\n"+h.Manifest, true)
		if err != nil {
			return nil, "", err
		}
		objs = append(objs, hs...)
	}
	return objs, rel.Info.Notes, nil
}

// splitManifest splits a rendered manifest into its objects; each takes its
// source from the "# Source:" comment before it.
func splitManifest(manifest string, hook bool) ([]Object, error) {
	var objs []Object
	var errs []error
	source := ""
	for _, doc := range splitDocuments(manifest) {
		sc := bufio.NewScanner(strings.NewReader(doc))
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), "# Source: "); ok {
				source = s
			}
		}
		if isEmptyYAML(doc) {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			errs = append(errs, fmt.Errorf("%s: not YAML: %w", source, err))
			continue
		}
		objs = append(objs, Object{
			Source: source, Hook: hook, APIVersion: head.APIVersion, Kind: head.Kind,
			Name: head.Metadata.Name, YAML: []byte(doc),
		})
	}
	return objs, errors.Join(errs...)
}

// splitDocuments splits a YAML stream at its "---" lines.
func splitDocuments(s string) []string {
	var docs []string
	var cur bytes.Buffer
	for line := range strings.Lines(s) {
		if strings.TrimRight(line, " \r\n") == "---" {
			docs = append(docs, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteString(line)
	}
	return append(docs, cur.String())
}

// isEmptyYAML reports whether a document holds only comments and blank lines.
func isEmptyYAML(doc string) bool {
	for line := range strings.Lines(doc) {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			return false
		}
	}
	return true
}
