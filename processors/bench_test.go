package processors

import (
	"fmt"
	"testing"
	"time"
)

func benchApply(b *testing.B, step time.Duration) {
	p := newProcessor(b, nil)
	var s State
	e := event(0, t0)
	base := e.Time
	fires := 0
	i := 0
	for b.Loop() {
		e.Time = base.Add(time.Duration(i) * step)
		e.Data.Resource = resources[i%len(resources)]
		if p.Apply(&s, e).Anomaly != nil {
			fires++
		}
		i++
	}
	b.ReportMetric(float64(s.BucketCount()), "buckets")
	b.ReportMetric(float64(fires)/float64(i), "fires/op")
}

var resources = func() []string {
	r := make([]string, 20)
	for i := range r {
		r[i] = fmt.Sprintf("/page/%d", i)
	}
	return r
}()

// BenchmarkApply: one event every 700ms (about 430 in a 5m window, no
// anomaly once the history is longer than the window).
func BenchmarkApply(b *testing.B) { benchApply(b, 700*time.Millisecond) }

// BenchmarkApplyBurst: one event every 2ms, 500 per bucket; an anomaly fires
// once per window (cooldown).
func BenchmarkApplyBurst(b *testing.B) { benchApply(b, 2*time.Millisecond) }

func steadyState(b *testing.B) State {
	p := newProcessor(b, nil)
	var s State
	for i := range 2000 {
		e := event(i, t0+int64(i)*700)
		e.Data.Action = []string{"click", "view", "buy", "scroll", "share"}[i%5]
		e.Data.Resource = resources[i%len(resources)]
		e.Sequence = int64(i + 1)
		p.Apply(&s, e)
	}
	return s
}

func BenchmarkStateMarshal(b *testing.B) {
	s := steadyState(b)
	buf := make([]byte, 0, 4096)
	var n int
	for b.Loop() {
		out, _ := s.AppendBinary(buf[:0])
		n = len(out)
	}
	b.ReportMetric(float64(n), "bytes")
}

func BenchmarkStateUnmarshal(b *testing.B) {
	s := steadyState(b)
	data, _ := s.MarshalBinary()
	for b.Loop() {
		var d State
		if err := d.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(data)), "bytes")
}
