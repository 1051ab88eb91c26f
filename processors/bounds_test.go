package processors

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// Bounds of the fuzz streams' events (fuzzStream): labels of a few bytes.
var fuzzLimits = topics.Limits{MaxBytes: 1 << 20, MaxIDBytes: 8, MaxAggregateIDBytes: 8, MaxLabelBytes: 8, MaxTimeAhead: topics.DefaultMaxTimeAhead}

const fuzzLabelBytes = 8

// TestMaxActions: one user with 3,000 distinct actions keeps 100 of them
// and "_other" (issue 12, finding 8: 166 KB of state and a 178 KB output
// before the cap, which this test fails on).
func TestMaxActions(t *testing.T) {
	p := newProcessor(t, nil) // MaxActions 100
	var s State
	for i := range 3000 {
		e := event(0, t0)
		e.Data.Action = fmt.Sprintf("action-%04d", i)
		p.Apply(&s, e)
	}
	if len(s.Actions()) != 101 || s.Action(OtherAction) != 2900 || s.Action("action-0099") != 1 || s.Action("action-0100") != 0 {
		t.Fatalf("%d action keys, _other = %d", len(s.Actions()), s.Action(OtherAction))
	}
	checkCounts(t, s.Actions())
	b, _ := s.MarshalBinary()
	if len(b) > 4096 {
		t.Fatalf("state of %d bytes after 3,000 distinct actions", len(b))
	}

	zero := newProcessor(t, func(c *Config) { c.MaxActions = 0 })
	var z State
	zero.Apply(&z, event(0, t0))
	if want := []topics.Count{{Key: OtherAction, N: 1}}; len(z.Actions()) != 1 || z.Actions()[0] != want[0] {
		t.Errorf("MaxActions 0: Actions = %v, want %v", z.Actions(), want)
	}
	if _, err := New(func() Config { c := DefaultConfig(); c.MaxActions = -1; return c }()); err == nil ||
		!strings.Contains(err.Error(), "aggregation.max_actions") {
		t.Errorf("MaxActions -1: %v, want an error naming aggregation.max_actions", err)
	}
}

// TestStoredStateFolded: a state stored under larger caps (or before the
// action cap) is brought within the caps at its next change, counts kept.
func TestStoredStateFolded(t *testing.T) {
	wide := newProcessor(t, func(c *Config) { c.MaxActions, c.MaxResources = 500, 500 })
	var s State
	for i := range 300 {
		e := event(0, t0)
		e.Data.Action, e.Data.Resource = fmt.Sprintf("a%03d", i), fmt.Sprintf("/r%03d", i)
		wide.Apply(&s, e)
	}
	narrow := newProcessor(t, func(c *Config) { c.MaxActions, c.MaxResources = 10, 20 })
	e := event(0, t0)
	e.Data.Action, e.Data.Resource = "a000", "/new"
	narrow.Apply(&s, e)
	if len(s.Actions()) != 11 || s.Action("a000") != 2 || s.Action("a009") != 1 || s.Action(OtherAction) != 290 {
		t.Errorf("actions folded to %d keys, a000 %d, _other %d", len(s.Actions()), s.Action("a000"), s.Action(OtherAction))
	}
	if len(s.Resources()) != 21 || s.Resource(OtherResource) != 281 {
		t.Errorf("resources folded to %d keys, _other %d", len(s.Resources()), s.Resource(OtherResource))
	}
	checkCounts(t, s.Actions())
	checkCounts(t, s.Resources())
	var d State
	b, _ := s.MarshalBinary()
	if err := d.UnmarshalBinary(b); err != nil {
		t.Fatalf("folded state does not decode: %v", err)
	}
}

// TestMaxAggregatedBytes builds the largest aggregated output the bounds
// allow, every string at its worst escaping, and checks it is within
// MaxAggregatedBytes and close to it; and that the default bounds fit the
// producer's default record limit with room for the key and headers.
func TestMaxAggregatedBytes(t *testing.T) {
	lim := topics.Limits{MaxBytes: 1 << 20, MaxIDBytes: 40, MaxAggregateIDBytes: 30, MaxLabelBytes: 20, MaxTimeAhead: topics.DefaultMaxTimeAhead}
	cfg := DefaultConfig()
	cfg.MaxActions, cfg.MaxResources = 7, 9
	worst := func(n int, c byte) string { return strings.Repeat(string(c), n) }
	var s State
	s.TotalActivity = 1<<63 - 1
	s.LastSequence = topics.MaxSequence
	s.FirstActivityMillis, s.LastActivityMillis = minMillis, maxMillis
	for i := range cfg.MaxActions + 1 {
		s.actions = append(s.actions, topics.Count{Key: fmt.Sprintf("%c", 'a'+i) + worst(lim.MaxLabelBytes-1, 1), N: 1<<63 - 1})
	}
	for i := range cfg.MaxResources + 1 {
		s.resources = append(s.resources, topics.Count{Key: fmt.Sprintf("%c", 'a'+i) + worst(lim.MaxLabelBytes-1, 2), N: 1<<63 - 1})
	}
	agg, id := worst(lim.MaxAggregateIDBytes, 3), worst(lim.MaxIDBytes, 4)
	m := topics.OutputMeta{ID: topics.AggregateID(agg, id), AggregateID: agg, Time: time.UnixMilli(-1 << 62),
		CorrelationID: id, CausationID: id, TraceID: id}
	out := s.AppendAggregated(nil, m, agg)
	bound := cfg.MaxAggregatedBytes(lim)
	if len(out) > bound || bound-len(out) > 200 {
		t.Fatalf("worst output %d bytes, bound %d", len(out), bound)
	}

	// franz-go's default ProducerBatchMaxBytes, less the key, a
	// traceparent header and the batch and record framing.
	const producerDefault = 1_000_012
	def := DefaultConfig().MaxOutputBytes(topics.DefaultLimits())
	if room := producerDefault - def - topics.DefaultMaxAggregateIDBytes - len("traceparent") - 55 - 200; room < 0 {
		t.Fatalf("default bounds allow an aggregated output of %d bytes, over the producer's default %d", def, producerDefault)
	}
	t.Logf("default bounds: aggregated output at most %d bytes, state at most %d bytes",
		def, DefaultConfig().MaxStateBytes(topics.DefaultMaxLabelBytes))
}
