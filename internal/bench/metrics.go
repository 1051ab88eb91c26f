package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// families is one scrape of a /metrics endpoint, by metric family name.
type families map[string]*dto.MetricFamily

// scrape reads url (a Prometheus text endpoint) with client.
func scrape(ctx context.Context, client *http.Client, url string) (families, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("bench: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("bench: scrape %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("bench: parse %s: %w", url, err)
	}
	return mfs, nil
}

// labelsMatch reports whether m has every label in want (a value of "!x"
// means any value but x).
func labelsMatch(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		got := ""
		for _, lp := range m.GetLabel() {
			if lp.GetName() == k {
				got = lp.GetValue()
			}
		}
		if len(v) > 0 && v[0] == '!' {
			if got == v[1:] {
				return false
			}
		} else if got != v {
			return false
		}
	}
	return true
}

// sum adds the values of the series of name that match want: counters,
// gauges and untyped values, or the sample counts of histograms and
// summaries. ok is false when the family is absent.
func (f families) sum(name string, want map[string]string) (v float64, ok bool) {
	mf := f[name]
	if mf == nil {
		return 0, false
	}
	for _, m := range mf.GetMetric() {
		if !labelsMatch(m, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			v += m.GetCounter().GetValue()
		case m.Gauge != nil:
			v += m.GetGauge().GetValue()
		case m.Untyped != nil:
			v += m.GetUntyped().GetValue()
		case m.Histogram != nil:
			v += float64(m.GetHistogram().GetSampleCount())
		case m.Summary != nil:
			v += float64(m.GetSummary().GetSampleCount())
		}
	}
	return v, true
}

// value is sum without the presence flag.
func (f families) value(name string, want map[string]string) float64 {
	v, _ := f.sum(name, want)
	return v
}

// histogramQuantile estimates quantile q of the histogram name (all its
// series merged) by linear interpolation within buckets, as PromQL's
// histogram_quantile does. It returns NaN when there are no samples.
func (f families) histogramQuantile(name string, q float64) float64 {
	mf := f[name]
	if mf == nil {
		return math.NaN()
	}
	cum := map[float64]float64{}
	var count float64
	for _, m := range mf.GetMetric() {
		h := m.GetHistogram()
		if h == nil {
			continue
		}
		count += float64(h.GetSampleCount())
		for _, b := range h.GetBucket() {
			cum[b.GetUpperBound()] += float64(b.GetCumulativeCount())
		}
	}
	if count == 0 {
		return math.NaN()
	}
	bounds := make([]float64, 0, len(cum)+1)
	for ub := range cum {
		bounds = append(bounds, ub)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 || !math.IsInf(bounds[len(bounds)-1], 1) {
		bounds = append(bounds, math.Inf(1))
		cum[math.Inf(1)] = count
	}
	rank := q * count
	prevBound, prevCount := 0.0, 0.0
	for i, ub := range bounds {
		c := cum[ub]
		if c >= rank {
			if math.IsInf(ub, 1) {
				// The top bucket has no upper bound: report the
				// highest finite one.
				if i > 0 {
					return bounds[i-1]
				}
				return math.NaN()
			}
			if c == prevCount {
				return ub
			}
			return prevBound + (ub-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = ub, c
	}
	return bounds[len(bounds)-1]
}
