package processors

import (
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/streamworker/streamworker/topics"
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

// BenchmarkStateSnapshotAppendAggregated encodes the aggregated output of a
// state through a Snapshot (map copies) into a reused buffer.
func BenchmarkStateSnapshotAppendAggregated(b *testing.B) {
	s := steadyState(b)
	m := topics.MetaFor(event(0, t0), topics.AggregateID("u-1", "e-0"))
	buf := make([]byte, 0, 4096)
	for b.Loop() {
		d := s.Snapshot("u-1")
		buf = topics.AppendAggregated(buf[:0], m, &d)
	}
	b.ReportMetric(float64(len(buf)), "bytes")
}

// BenchmarkStateAppendAggregated encodes the aggregated output of a state
// straight from the state into a reused buffer, as the worker does.
func BenchmarkStateAppendAggregated(b *testing.B) {
	s := steadyState(b)
	m := topics.MetaFor(event(0, t0), topics.AggregateID("u-1", "e-0"))
	buf := make([]byte, 0, 4096)
	for b.Loop() {
		buf = s.AppendAggregated(buf[:0], m, "u-1")
	}
	b.ReportMetric(float64(len(buf)), "bytes")
}

// typicalState returns a user with 3 actions, 5 resources and 4 buckets.
func typicalState(t testing.TB) State {
	var s State
	applyTypical(newProcessor(t, nil), &s)
	if s.BucketCount() != 4 {
		t.Fatalf("typical state has %d buckets", s.BucketCount())
	}
	return s
}

// applyTypical applies the events of typicalState to s.
func applyTypical(p *Processor, s *State) {
	for i := range 30 {
		e := event(i, t0+int64(i)*130)
		e.Data.Action = []string{"click", "view", "buy"}[i%3]
		e.Data.Resource = []string{"/home", "/cart", "/product/42", "/search", "/checkout"}[i%5]
		e.Sequence = int64(i + 1)
		p.Apply(s, e)
	}
}

// BenchmarkStateHeap reports the heap bytes a typical state holds (besides
// the State struct itself), decoded from its binary form (as the state cache
// loads it) and built by Apply.
func BenchmarkStateHeap(b *testing.B) {
	const n = 10_000
	typ := typicalState(b)
	data, _ := typ.MarshalBinary()
	measure := func(build func(*State)) float64 {
		states := make([]State, n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range states {
			build(&states[i])
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(states)
		return float64(after.HeapAlloc-before.HeapAlloc) / n
	}
	p := newProcessor(b, nil)
	var decoded, applied float64
	for b.Loop() {
		decoded = measure(func(s *State) {
			if err := s.UnmarshalBinary(data); err != nil {
				b.Fatal(err)
			}
		})
		applied = measure(func(s *State) { applyTypical(p, s) })
	}
	b.ReportMetric(decoded, "heapB/decoded")
	b.ReportMetric(applied, "heapB/applied")
	b.ReportMetric(float64(unsafe.Sizeof(State{})), "structB")
}
