package observability

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Kind is a metric's type, as far as the catalog knows it.
type Kind int

// Metric kinds. KindUnknown is what a bare prometheus.Desc gives: it names
// the metric and its labels but not its type.
const (
	KindUnknown Kind = iota
	KindCounter
	KindGauge
	KindHistogram
	KindSummary
	KindUntyped
)

func (k Kind) String() string {
	return [...]string{"unknown", "counter", "gauge", "histogram", "summary", "untyped"}[k]
}

// Metric is one metric family a process exports.
type Metric struct {
	// Name is the family name; for histograms and summaries the base name
	// without _bucket, _sum or _count.
	Name string
	// Kind is the metric's type.
	Kind Kind
	// Labels are the label names the process itself puts on the series,
	// sorted, without le (histograms) or quantile (summaries).
	Labels []string
}

// Catalog is the set of metrics that queries may read, plus the target
// labels that Prometheus adds to every series at scrape time. Build it
// before checking; it is not safe for concurrent mutation.
type Catalog struct {
	metrics      map[string]Metric
	targetLabels []string
}

// NewCatalog returns an empty catalog whose series also carry targetLabels
// (for example namespace, pod, job and instance under Kubernetes).
func NewCatalog(targetLabels ...string) *Catalog {
	return &Catalog{metrics: map[string]Metric{}, targetLabels: slices.Clone(targetLabels)}
}

// Add records m. Adding a metric already present merges the two when they
// agree (an unknown kind takes the known one) and fails otherwise.
func (c *Catalog) Add(m Metric) error {
	m.Labels = slices.Sorted(slices.Values(m.Labels))
	old, ok := c.metrics[m.Name]
	if !ok {
		c.metrics[m.Name] = m
		return nil
	}
	if !slices.Equal(old.Labels, m.Labels) {
		return fmt.Errorf("metric %s registered twice with different labels: %v and %v", m.Name, old.Labels, m.Labels)
	}
	switch {
	case old.Kind == KindUnknown:
		c.metrics[m.Name] = m
	case m.Kind != KindUnknown && m.Kind != old.Kind:
		return fmt.Errorf("metric %s registered twice as a %v and a %v", m.Name, old.Kind, m.Kind)
	}
	return nil
}

// SetKind sets the kind of a metric already in the catalog, for metrics
// added from descriptions, which do not carry their type.
func (c *Catalog) SetKind(name string, k Kind) error {
	m, ok := c.metrics[name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownMetric, name)
	}
	if m.Kind != KindUnknown && m.Kind != k {
		return fmt.Errorf("metric %s is a %v, not a %v", name, m.Kind, k)
	}
	m.Kind = k
	c.metrics[name] = m
	return nil
}

// Metric returns the metric called name.
func (c *Catalog) Metric(name string) (Metric, bool) {
	m, ok := c.metrics[name]
	return m, ok
}

// Names returns the names of every metric in the catalog, sorted.
func (c *Catalog) Names() []string { return slices.Sorted(maps.Keys(c.metrics)) }

// resolve finds the metric a series name belongs to. le reports whether the
// series carry an le label (a histogram's _bucket series).
func (c *Catalog) resolve(series string) (m Metric, le bool, ok bool) {
	if m, ok := c.metrics[series]; ok {
		if m.Kind == KindSummary {
			m.Labels = append(slices.Clone(m.Labels), "quantile")
		}
		return m, false, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(series, suffix)
		if !found {
			continue
		}
		m, ok := c.metrics[base]
		if ok && (m.Kind == KindHistogram || m.Kind == KindSummary && suffix != "_bucket") {
			return m, suffix == "_bucket", true
		}
	}
	return Metric{}, false, false
}

// AddDescs adds the metrics that descs describe, with KindUnknown (a
// prometheus.Desc does not expose its type: use SetKind for histograms).
func (c *Catalog) AddDescs(descs []*prometheus.Desc) error {
	reg := prometheus.NewRegistry()
	if err := reg.Register(descCollector(descs)); err != nil {
		return fmt.Errorf("register descriptions: %w", err)
	}
	fams, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("gather descriptions: %w", err)
	}
	var errs []error
	for _, f := range fams {
		m := familyMetric(f)
		m.Kind = KindUnknown
		errs = append(errs, c.Add(m))
	}
	return errors.Join(errs...)
}

// AddGatherer adds every metric family g gathers, with its kind and labels.
// Vectors appear only once they have a child: gather after some work.
func (c *Catalog) AddGatherer(g prometheus.Gatherer) error {
	fams, err := g.Gather()
	if err != nil {
		return fmt.Errorf("gather: %w", err)
	}
	var errs []error
	for _, f := range fams {
		errs = append(errs, c.Add(familyMetric(f)))
	}
	return errors.Join(errs...)
}

func familyMetric(f *dto.MetricFamily) Metric {
	labels := map[string]bool{}
	for _, m := range f.GetMetric() {
		for _, lp := range m.GetLabel() {
			labels[lp.GetName()] = true
		}
	}
	kind := map[dto.MetricType]Kind{
		dto.MetricType_COUNTER: KindCounter, dto.MetricType_GAUGE: KindGauge,
		dto.MetricType_HISTOGRAM: KindHistogram, dto.MetricType_GAUGE_HISTOGRAM: KindHistogram,
		dto.MetricType_SUMMARY: KindSummary, dto.MetricType_UNTYPED: KindUntyped,
	}[f.GetType()]
	return Metric{Name: f.GetName(), Kind: kind, Labels: slices.Collect(maps.Keys(labels))}
}

// descCollector describes descs and collects one untyped sample for each,
// so that a registry reveals each description's name and label names.
type descCollector []*prometheus.Desc

func (dc descCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range dc {
		ch <- d
	}
}

func (dc descCollector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range dc {
		// A Desc hides its number of variable labels: try each count.
		for n := 0; n <= 16; n++ {
			values := slices.Repeat([]string{"x"}, n)
			if m, err := prometheus.NewConstMetric(d, prometheus.UntypedValue, 0, values...); err == nil {
				ch <- m
				break
			}
		}
	}
}
