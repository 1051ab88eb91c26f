package processors

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// t0 is a second-aligned event time: 2026-11-22T10:00:00Z, second X below.
var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC).UnixMilli()

// w is the default window, 5m, in milliseconds.
const w = int64(5 * 60 * 1000)

func event(i int, ms int64) *topics.Event {
	return &topics.Event{
		ID:          fmt.Sprintf("e-%d", i),
		Type:        topics.TypeUserActivity,
		AggregateID: "u-1",
		Time:        time.UnixMilli(ms).UTC(),
		Data:        topics.Activity{UserID: "u-1", Action: "click", Resource: "/home"},
	}
}

// rep returns n copies of ms.
func rep(ms int64, n int) []int64 { return slices.Repeat([]int64{ms}, n) }

func newProcessor(t testing.TB, mod func(*Config)) *Processor {
	t.Helper()
	cfg := DefaultConfig()
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

type wantFire struct {
	wc       int64
	cur, avg float64
	severity string
}

// TestAnomalyEdges checks every rule of the anomaly processor (docs/contract.md, "Processors") on both sides of its
// edge. Defaults unless said: W = 5m, M = 5, defaultAverageRate = 1/min,
// minAverageRate = 0.1/min, minEvents = 10. With t0 second-aligned at second
// X, events at t0 fill bucket X; currentRate = windowCount / 5 per minute.
func TestAnomalyEdges(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		// times of the events, applied in order
		times []int64
		// fires maps the index of every event that must fire; all others
		// must not.
		fires        map[int]wantFire
		rateCounted  []bool  // per event, when set
		windowCounts []int64 // per event, when set
	}{
		{
			// span 0 <= W: average = default 1, M×avg = 5. 25 events: 25/5 = 5
			// = M×avg, not above; 26 events: 5.2 > 5 fires; 5.2 <= 10: high.
			name:  "current rate exactly M×average does not fire, above fires",
			times: rep(t0, 26),
			fires: map[int]wantFire{25: {26, 5.2, 1, SeverityHigh}},
		},
		{
			// minEvents 30: the 29th event has rate 29/5 = 5.8 > 5 but 29 < 30;
			// the 30th fires with 6.
			name:  "windowCount minEvents-1 does not fire, minEvents fires",
			cfg:   func(c *Config) { c.Anomaly.MinEvents = 30 },
			times: rep(t0, 30),
			fires: map[int]wantFire{29: {30, 6, 1, SeverityHigh}},
		},
		{
			// minEvents 50 delays the first fire to 50 events: 50/5 = 10 =
			// 2×M×avg exactly, so high.
			name:  "severity at exactly 2×M×average is high",
			cfg:   func(c *Config) { c.Anomaly.MinEvents = 50 },
			times: rep(t0, 50),
			fires: map[int]wantFire{49: {50, 10, 1, SeverityHigh}},
		},
		{
			// 51/5 = 10.2 > 10 = 2×M×avg: critical.
			name:  "severity above 2×M×average is critical",
			cfg:   func(c *Config) { c.Anomaly.MinEvents = 51 },
			times: rep(t0, 51),
			fires: map[int]wantFire{50: {51, 10.2, 1, SeverityCritical}},
		},
		{
			// One event at t0, then a burst at t0+W: span = W exactly, so the
			// default average 1 applies. The burst's window (X, X+300] leaves
			// t0 out: the k-th burst event has windowCount k; k = 26 fires.
			name:  "span exactly W uses the default average",
			times: append([]int64{t0}, rep(t0+w, 26)...),
			fires: map[int]wantFire{26: {26, 5.2, 1, SeverityHigh}},
		},
		{
			// span = W+1ms: average = (total-wc)/(1ms) = 1×60000/min, so the
			// same burst fires nothing.
			name:  "span W+1ms uses the history average",
			times: append([]int64{t0}, rep(t0+w+1, 26)...),
		},
		{
			// span = W+30s: the k-th burst event has total k+1, wc k, average
			// 1/(0.5 min) = 2, M×avg = 10: k = 50 gives 10 (no), k = 51 gives
			// 10.2 (fires, high since 10.2 <= 20).
			name:  "history average at its threshold",
			times: append([]int64{t0}, rep(t0+w+30_000, 51)...),
			fires: map[int]wantFire{51: {51, 10.2, 2, SeverityHigh}},
		},
		{
			// max = t0. t0-W is <= max-W: not rate-counted, not in a bucket.
			// t0-W+1ms is rate-counted; its window holds only
			// itself (bucket X is later than it).
			name:         "rate-counted boundary at max - W",
			times:        []int64{t0, t0 - w, t0 - w + 1},
			rateCounted:  []bool{true, false, true},
			windowCounts: []int64{1, 0, 1},
		},
		{
			// 26 events at t0 fire at tp = t0. 25 events at t0+W-1ms (second
			// X+299, window (X-1, X+299] holds 26 + k) would fire (rate >=
			// 27/5 > 5, span W-1 so average 1) but t - tp = W-1 < W. At t0+W
			// (window (X, X+300]: 25 + 1 = 26, 5.2 > 5) t - tp = W: fires.
			name:  "cooldown W-1ms suppresses, W fires again",
			times: slices.Concat(rep(t0, 26), rep(t0+w-1, 25), []int64{t0 + w}),
			fires: map[int]wantFire{
				25: {26, 5.2, 1, SeverityHigh},
				51: {26, 5.2, 1, SeverityHigh},
			},
		},
		{
			// minEvents 0. One event at t0, then a burst 20 minutes after W:
			// average 1/20 = 0.05 is raised to 0.1, M×avg = 0.5. k = 2: 0.4 (it
			// would fire against 0.25 unclamped); k = 3: 0.6 fires, high (<= 1).
			name:  "minAverageRate clamps the history average",
			cfg:   func(c *Config) { c.Anomaly.MinEvents = 0 },
			times: append([]int64{t0}, rep(t0+w+20*60_000, 3)...),
			fires: map[int]wantFire{3: {3, 0.6, 0.1, SeverityHigh}},
		},
		{
			// default 0.05 is raised to 0.1: the same 0.4 / 0.6 edge at span 0.
			name: "minAverageRate clamps the default average",
			cfg: func(c *Config) {
				c.Anomaly.MinEvents = 0
				c.Anomaly.DefaultAverageRate = 0.05
			},
			times: rep(t0, 3),
			fires: map[int]wantFire{2: {3, 0.6, 0.1, SeverityHigh}},
		},
		{
			// W = 10m: rate = wc/10. M×avg = 0.7×3 = 2.1 exactly; in float64
			// 0.7*3 = 2.0999999999999996 < 2.1, which would fire at wc = 21.
			name: "parameters are exact decimals",
			cfg: func(c *Config) {
				c.Anomaly.Window = 10 * time.Minute
				c.Anomaly.Multiplier = 0.7
				c.Anomaly.DefaultAverageRate = 3
				c.Anomaly.MinEvents = 0
			},
			times: rep(t0, 22),
			fires: map[int]wantFire{21: {22, 2.2, 3, SeverityHigh}},
		},
		{
			// W = 1.5s: the window of second X+2 is (X+0.5, X+2], buckets X+1
			// and X+2. M is large so nothing fires.
			name: "window that is not whole seconds",
			cfg: func(c *Config) {
				c.Anomaly.Window = 1500 * time.Millisecond
				c.Anomaly.Multiplier = 1e6
			},
			times:        []int64{t0, t0 + 1400, t0 + 2999},
			windowCounts: []int64{1, 2, 2},
		},
		{
			// W = 1s: the window of X+2 is (X+1, X+2]: bucket X+2 only.
			name: "one-second window",
			cfg: func(c *Config) {
				c.Anomaly.Window = time.Second
				c.Anomaly.Multiplier = 1e6
			},
			times:        []int64{t0, t0 + 1400, t0 + 2999},
			windowCounts: []int64{1, 1, 1},
		},
		{
			// The first event at t0+60s; a burst at t0 is rate-counted (t0 >
			// max-W), its window (X-300, X] excludes the later bucket X+60,
			// and its span is 0 (firstActivityAt becomes t0): default average.
			name:  "events earlier than the first",
			times: append([]int64{t0 + 60_000}, rep(t0, 26)...),
			fires: map[int]wantFire{26: {26, 5.2, 1, SeverityHigh}},
		},
		{
			// Sub-second times floor to their second: .999 and .000 of the
			// next second are different buckets, both in the window.
			name:         "buckets floor to the second",
			cfg:          func(c *Config) { c.Anomaly.Multiplier = 1e6 },
			times:        []int64{t0 - 1, t0, t0 - w + 1000, t0 - w + 999},
			windowCounts: []int64{1, 2, 1, 1},
			rateCounted:  []bool{true, true, true, true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProcessor(t, tt.cfg)
			var s State
			for i, ms := range tt.times {
				fx := p.Apply(&s, event(i, ms))
				if tt.rateCounted != nil && fx.RateCounted != tt.rateCounted[i] {
					t.Errorf("event %d: RateCounted = %v, want %v", i, fx.RateCounted, tt.rateCounted[i])
				}
				if tt.windowCounts != nil && fx.WindowCount != tt.windowCounts[i] {
					t.Errorf("event %d: WindowCount = %d, want %d", i, fx.WindowCount, tt.windowCounts[i])
				}
				want, fire := tt.fires[i]
				switch {
				case !fire && fx.Anomaly != nil:
					t.Errorf("event %d fired %+v, want none", i, *fx.Anomaly)
				case fire && fx.Anomaly == nil:
					t.Errorf("event %d fired nothing, want %+v", i, want)
				case fire:
					got := *fx.Anomaly
					exp := topics.AnomalyData{
						UserID: "u-1", AnomalyType: "high-activity",
						CurrentRate: want.cur, AverageRate: want.avg,
						WindowCount: want.wc, Severity: want.severity,
					}
					if got != exp {
						t.Errorf("event %d fired %+v, want %+v", i, got, exp)
					}
				}
			}
		})
	}
}

func TestAggregation(t *testing.T) {
	p := newProcessor(t, nil)
	var s State
	apply := func(ms int64, action, resource string, seq int64) {
		e := event(0, ms)
		e.Data.Action, e.Data.Resource, e.Sequence = action, resource, seq
		p.Apply(&s, e)
	}
	apply(t0+5_123, "click", "/a", 1)
	apply(t0+999, "view", "/b", 2)
	apply(t0+9_000, "click", "", 0) // unsequenced, no resource
	apply(t0+7_000, "", "/a", 3)    // no action
	if s.TotalActivity != 4 {
		t.Errorf("TotalActivity = %d, want 4", s.TotalActivity)
	}
	if want := []topics.Count{{Key: "click", N: 2}, {Key: "view", N: 1}}; !slices.Equal(s.Actions(), want) {
		t.Errorf("Actions = %v, want %v", s.Actions(), want)
	}
	if want := []topics.Count{{Key: "/a", N: 2}, {Key: "/b", N: 1}}; !slices.Equal(s.Resources(), want) {
		t.Errorf("Resources = %v, want %v", s.Resources(), want)
	}
	if s.Action("click") != 2 || s.Action("view") != 1 || s.Action("buy") != 0 || s.Action("") != 0 {
		t.Errorf("Action(click, view, buy, \"\") = %d, %d, %d, %d; want 2, 1, 0, 0", s.Action("click"), s.Action("view"), s.Action("buy"), s.Action(""))
	}
	if s.Resource("/a") != 2 || s.Resource("/b") != 1 || s.Resource("/0") != 0 || s.Resource("/z") != 0 {
		t.Errorf("Resource(/a, /b, /0, /z) = %d, %d, %d, %d; want 2, 1, 0, 0", s.Resource("/a"), s.Resource("/b"), s.Resource("/0"), s.Resource("/z"))
	}
	if s.FirstActivityMillis != t0+999 || s.LastActivityMillis != t0+9_000 {
		t.Errorf("first, last = %d, %d; want %d, %d", s.FirstActivityMillis, s.LastActivityMillis, t0+999, t0+9_000)
	}
	if s.LastSequence != 3 {
		t.Errorf("LastSequence = %d, want 3", s.LastSequence)
	}
	got := s.Snapshot("u-1")
	want := topics.AggregatedData{
		UserID:          "u-1",
		TotalActivity:   4,
		Actions:         map[string]int64{"click": 2, "view": 1},
		Resources:       map[string]int64{"/a": 2, "/b": 1},
		FirstActivityAt: "2026-11-22T10:00:00.999Z",
		LastActivityAt:  "2026-11-22T10:00:09.000Z",
		LastSequence:    3,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Snapshot = %+v, want %+v", got, want)
	}
	got.Actions["click"] = 100
	got.Resources["/c"] = 1
	if s.Action("click") != 2 || len(s.Resources()) != 2 {
		t.Error("Snapshot shares its maps with the state")
	}
}

func TestSubMillisecondTimesTruncate(t *testing.T) {
	p := newProcessor(t, nil)
	var s State
	e := event(0, 0)
	e.Time = time.Date(2026, 11, 22, 10, 0, 0, 123_999_999, time.FixedZone("x", 3600))
	p.Apply(&s, e)
	if got := s.Snapshot("u").FirstActivityAt; got != "2026-11-22T09:00:00.123Z" {
		t.Errorf("FirstActivityAt = %q", got)
	}
}

func TestSequence(t *testing.T) {
	p := newProcessor(t, nil)
	var s State
	if s.LastSequence != 0 {
		t.Errorf("LastSequence of a new user = %d, want 0", s.LastSequence)
	}
	s.AdvanceSequence(1) // an unknown type took sequence 1
	if s.LastSequence != 1 || s.TotalActivity != 0 {
		t.Errorf("after AdvanceSequence: %+v", s)
	}
	if d := s.Snapshot("u"); d.FirstActivityAt != "" || d.LastSequence != 1 || d.Actions == nil {
		t.Errorf("Snapshot without activity = %+v", d)
	}
	e := event(0, t0)
	e.Sequence = 2
	p.Apply(&s, e)
	e = event(1, t0)
	p.Apply(&s, e) // unsequenced: LastSequence stays
	if s.LastSequence != 2 {
		t.Errorf("LastSequence = %d, want 2", s.LastSequence)
	}
	s.AdvanceSequence(0)
	if s.LastSequence != 2 {
		t.Errorf("AdvanceSequence(0) changed LastSequence to %d", s.LastSequence)
	}
}

func TestResourceCap(t *testing.T) {
	p := newProcessor(t, nil) // MaxResources 1000
	var s State
	apply := func(r string) {
		e := event(0, t0)
		e.Data.Resource = r
		p.Apply(&s, e)
	}
	apply(OtherResource) // reserved: counts under _other, takes no slot
	for i := range 1000 {
		apply(fmt.Sprintf("/r/%d", i))
	}
	if len(s.Resources()) != 1001 || s.Resource(OtherResource) != 1 {
		t.Fatalf("after 1000 distinct: %d keys, _other = %d", len(s.Resources()), s.Resource(OtherResource))
	}
	apply("/r/1000") // the 1001st distinct resource
	apply("/r/1001")
	apply("/r/0") // an existing one keeps its own count
	apply(OtherResource)
	if len(s.Resources()) != 1001 {
		t.Errorf("%d keys, want 1001", len(s.Resources()))
	}
	if s.Resource(OtherResource) != 4 || s.Resource("/r/0") != 2 {
		t.Errorf("_other = %d, /r/0 = %d; want 4, 2", s.Resource(OtherResource), s.Resource("/r/0"))
	}
	if s.Resource("/r/1000") != 0 || s.Resource("/r/1001") != 0 {
		t.Error("a distinct resource beyond the cap got its own key")
	}
	checkCounts(t, s.Resources())

	zero := newProcessor(t, func(c *Config) { c.MaxResources = 0 })
	var z State
	e := event(0, t0)
	zero.Apply(&z, e)
	if want := []topics.Count{{Key: OtherResource, N: 1}}; !slices.Equal(z.Resources(), want) {
		t.Errorf("MaxResources 0: Resources = %v, want %v", z.Resources(), want)
	}
}

func TestMilestones(t *testing.T) {
	tests := []struct {
		name       string
		every      int64
		thresholds []int64
		n          int
		want       []int64
	}{
		{"every 100", 100, nil, 350, []int64{100, 200, 300}},
		{"every and thresholds, shared once", 100, []int64{250, 1, 100, 10, 50, 10}, 300, []int64{1, 10, 50, 100, 200, 250, 300}},
		{"thresholds only", 0, []int64{3, 5}, 10, []int64{3, 5}},
		{"every 1", 1, nil, 4, []int64{1, 2, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProcessor(t, func(c *Config) {
				c.Milestones = MilestoneConfig{Every: tt.every, Thresholds: tt.thresholds}
			})
			var s State
			var got []int64
			for i := range tt.n {
				// one event per 10 minutes: no anomaly interferes
				if fx := p.Apply(&s, event(i, t0+int64(i)*600_000)); fx.Milestone != 0 {
					if fx.Milestone != s.TotalActivity {
						t.Errorf("Milestone %d reported at total %d", fx.Milestone, s.TotalActivity)
					}
					got = append(got, fx.Milestone)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("milestones = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"zero max resources", func(c *Config) { c.MaxResources = 0 }, true},
		{"negative max resources", func(c *Config) { c.MaxResources = -1 }, false},
		{"zero window", func(c *Config) { c.Anomaly.Window = 0 }, false},
		{"sub-millisecond window", func(c *Config) { c.Anomaly.Window = time.Second + time.Microsecond }, false},
		{"window too long", func(c *Config) { c.Anomaly.Window = MaxWindow + time.Second }, false},
		{"longest window", func(c *Config) { c.Anomaly.Window = MaxWindow }, true},
		{"zero multiplier", func(c *Config) { c.Anomaly.Multiplier = 0 }, false},
		{"NaN multiplier", func(c *Config) { c.Anomaly.Multiplier = math.NaN() }, false},
		{"infinite default rate", func(c *Config) { c.Anomaly.DefaultAverageRate = math.Inf(1) }, false},
		{"negative min rate", func(c *Config) { c.Anomaly.MinAverageRate = -0.1 }, false},
		{"zero rates", func(c *Config) { c.Anomaly.MinAverageRate, c.Anomaly.DefaultAverageRate = 0, 0 }, true},
		{"too precise rate", func(c *Config) { c.Anomaly.MinAverageRate = 1e-30 }, false},
		{"too large multiplier", func(c *Config) { c.Anomaly.Multiplier = 1e30 }, false},
		{"negative min events", func(c *Config) { c.Anomaly.MinEvents = -1 }, false},
		{"negative every", func(c *Config) { c.Milestones.Every = -1 }, false},
		{"zero threshold", func(c *Config) { c.Milestones.Thresholds = []int64{1, 0} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.mod(&cfg)
			p, err := New(cfg)
			if tt.ok {
				if err != nil || p == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("New error = %v, want ErrInvalidConfig", err)
			}
			if cfg.Validate() == nil {
				t.Error("Validate accepted what New rejects")
			}
		})
	}
}

func TestRatOfIsExactDecimal(t *testing.T) {
	for f, want := range map[float64]rat{0.1: {1, 10}, 5: {5, 1}, 0.7: {7, 10}, 1.25e-3: {1, 800}, 0: {0, 1}} {
		got, err := ratOf("x", f, false)
		if err != nil || got != want {
			t.Errorf("ratOf(%v) = %v, %v; want %v", f, got, err, want)
		}
	}
}

func TestU256(t *testing.T) {
	// (2^64-1)^4 = 2^256 - 4·2^192 + 6·2^128 - 4·2^64 + 1, whose limbs are
	// 1, 2^64-4, 5 (6 less the borrow of -4·2^64) and 2^64-4.
	m := ^uint64(0)
	got := u256{m}.mul(m).mul(m).mul(m)
	want := u256{1, ^uint64(0) - 3, 5, ^uint64(0) - 3}
	if got != want {
		t.Errorf("(2^64-1)^4 = %x, want %x", got, want)
	}
	if prod2(3, 5).cmp(prod2(5, 3)) != 0 || prod2(3, 5).cmp(prod2(4, 4)) != -1 || (u256{0, 1}).cmp(u256{m}) != 1 {
		t.Error("cmp")
	}
}
