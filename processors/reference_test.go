package processors

import (
	"fmt"
	"maps"
	"math/big"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// refModel is an obviously correct, slow reading of docs/contract.md, "Processors": it keeps
// every event and recomputes everything by brute force in big.Rat.
type refModel struct {
	cfg       Config
	times     []int64 // every event's time, in ms
	counted   []bool  // whether each was rate-counted
	actions   map[string]int64
	resources map[string]int64
	distinct  []string // resources with their own key, in order of arrival
	distinctA []string // actions with their own key, in order of arrival
	lastSeq   int64
	fired     bool
	tp        int64
}

func bigRat(f float64) *big.Rat {
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	if !ok {
		panic(f)
	}
	return r
}

func ratInt(n int64) *big.Rat { return new(big.Rat).SetInt64(n) }

// floorSec is floor(ms / 1000) through big.Int (Div is Euclidean: floor for a
// positive divisor).
func floorSec(ms int64) int64 {
	return new(big.Int).Div(big.NewInt(ms), big.NewInt(1000)).Int64()
}

func (m *refModel) apply(e *topics.Event) Effects {
	t := e.Time.UnixMilli()
	wMs := m.cfg.Anomaly.Window.Milliseconds()
	var fx Effects

	// Aggregation.
	if a := e.Data.Action; a != "" {
		switch {
		case a != OtherAction && slices.Contains(m.distinctA, a):
			m.actions[a]++
		case a != OtherAction && len(m.distinctA) < m.cfg.MaxActions:
			m.distinctA = append(m.distinctA, a)
			m.actions[a]++
		default:
			m.actions[OtherAction]++
		}
	}
	if r := e.Data.Resource; r != "" {
		switch {
		case r != OtherResource && slices.Contains(m.distinct, r):
			m.resources[r]++
		case r != OtherResource && len(m.distinct) < m.cfg.MaxResources:
			m.distinct = append(m.distinct, r)
			m.resources[r]++
		default:
			m.resources[OtherResource]++
		}
	}
	if e.Sequence > 0 {
		m.lastSeq = e.Sequence
	}
	haveMax := len(m.times) > 0
	var maxBefore int64
	if haveMax {
		maxBefore = slices.Max(m.times)
	}
	m.times = append(m.times, t)
	total := int64(len(m.times))

	// Milestones.
	if (m.cfg.Milestones.Every > 0 && total%m.cfg.Milestones.Every == 0) || slices.Contains(m.cfg.Milestones.Thresholds, total) {
		fx.Milestone = total
	}

	// Anomaly.
	rc := !haveMax || !(t <= maxBefore-wMs)
	m.counted = append(m.counted, rc)
	if !rc {
		return fx
	}
	fx.RateCounted = true
	// The window is the seconds b in (s - W, s], W in seconds; times 1000:
	// 1000·b > 1000·s - W(ms), exact in integers.
	s := floorSec(t)
	var wc int64
	for i, ti := range m.times {
		b := floorSec(ti)
		if m.counted[i] && 1000*b > 1000*s-wMs && b <= s {
			wc++
		}
	}
	fx.WindowCount = wc
	wMin := new(big.Rat).SetFrac64(wMs, 60_000)
	cur := new(big.Rat).Quo(ratInt(wc), wMin)
	first := slices.Min(m.times)
	span := t - first
	var avg *big.Rat
	if span > wMs {
		avg = new(big.Rat).Quo(ratInt(total-wc), new(big.Rat).SetFrac64(span-wMs, 60_000))
	} else {
		avg = bigRat(m.cfg.Anomaly.DefaultAverageRate)
	}
	if minAvg := bigRat(m.cfg.Anomaly.MinAverageRate); avg.Cmp(minAvg) < 0 {
		avg = minAvg
	}
	mAvg := new(big.Rat).Mul(bigRat(m.cfg.Anomaly.Multiplier), avg)
	if cur.Cmp(mAvg) <= 0 || wc < int64(m.cfg.Anomaly.MinEvents) || (m.fired && t-m.tp < wMs) {
		return fx
	}
	sev := SeverityHigh
	if cur.Cmp(new(big.Rat).Mul(ratInt(2), mAvg)) > 0 {
		sev = SeverityCritical
	}
	cf, _ := cur.Float64()
	af, _ := avg.Float64()
	fx.Anomaly = &topics.AnomalyData{
		UserID: e.AggregateID, AnomalyType: "high-activity",
		CurrentRate: cf, AverageRate: af, WindowCount: wc, Severity: sev,
	}
	m.fired, m.tp = true, t
	return fx
}

// randomConfig returns the defaults or a configuration that makes windows
// small and anomalies frequent.
func randomConfig(r *rand.Rand) Config {
	cfg := DefaultConfig()
	if r.IntN(4) == 0 {
		return cfg
	}
	pick := func(xs ...float64) float64 { return xs[r.IntN(len(xs))] }
	cfg.Anomaly.Window = []time.Duration{time.Second, 1500 * time.Millisecond, 3 * time.Second, 10 * time.Second, 10*time.Second + 7*time.Millisecond, time.Minute}[r.IntN(6)]
	cfg.Anomaly.Multiplier = pick(0.5, 0.7, 1, 1.5, 2, 5)
	cfg.Anomaly.DefaultAverageRate = pick(0, 0.05, 0.1, 1, 3, 30)
	cfg.Anomaly.MinAverageRate = pick(0, 0.1, 0.25, 2, 20)
	cfg.Anomaly.MinEvents = []int{0, 1, 3, 10}[r.IntN(4)]
	cfg.MaxResources = []int{0, 1, 3, 1000}[r.IntN(4)]
	cfg.MaxActions = []int{0, 1, 2, 100}[r.IntN(4)]
	cfg.Milestones.Every = []int64{0, 1, 7, 100}[r.IntN(4)]
	for range r.IntN(3) {
		cfg.Milestones.Thresholds = append(cfg.Milestones.Thresholds, 1+r.Int64N(30))
	}
	return cfg
}

// randomStream returns n events of one user whose times mix bursts, steady
// activity, gaps and out-of-order times, with many landing exactly on the
// edges of §5.2 (max - W, whole seconds, W after the previous one).
func randomStream(r *rand.Rand, n int, window time.Duration) []*topics.Event {
	wMs := window.Milliseconds()
	cur := t0 + r.Int64N(1000)
	maxT := cur
	events := make([]*topics.Event, n)
	for i := range events {
		var t int64
		switch k := r.IntN(100); {
		case k < 35: // burst
			t = cur + r.Int64N(3)
		case k < 55: // steady
			t = cur + r.Int64N(wMs/10+1)
		case k < 62: // gap
			t = cur + wMs + r.Int64N(3*wMs)
		case k < 70: // exactly W or W±1ms after the current time
			t = cur + wMs + r.Int64N(3) - 1
		case k < 78: // around max - W
			t = maxT - wMs + r.Int64N(3) - 1
		case k < 88: // back in time within 2W
			t = maxT - r.Int64N(2*wMs+1)
		case k < 94: // second boundaries
			t = floorSec(cur)*1000 + 1000 + r.Int64N(2) - 1
		default: // far back (before the first event)
			t = t0 - r.Int64N(10*wMs)
		}
		if r.IntN(3) > 0 || t > cur {
			cur = t
		}
		maxT = max(maxT, t)
		e := &topics.Event{
			ID:          "e-" + strconv.Itoa(i),
			Type:        topics.TypeUserActivity,
			AggregateID: "u-7",
			Time:        time.UnixMilli(t).UTC(),
			Data: topics.Activity{
				Action:   []string{"", "click", "view", "buy", OtherAction}[r.IntN(5)],
				Resource: []string{"", "/a", "/b", "/c", "/d", "/e", OtherResource}[r.IntN(7)],
			},
		}
		if r.IntN(2) == 0 {
			e.Sequence = int64(i + 1)
		}
		events[i] = e
	}
	return events
}

// TestReferenceModel compares Processor with refModel on thousands of random
// streams, event by event, and checks the state through a binary round trip
// now and then.
func TestReferenceModel(t *testing.T) {
	streams := 2000
	if testing.Short() || raceEnabled {
		streams = 200
	}
	r := rand.New(rand.NewPCG(1, 2))
	var fires, critical, notCounted int
	for stream := range streams {
		cfg := randomConfig(r)
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m := &refModel{cfg: cfg, actions: map[string]int64{}, resources: map[string]int64{}}
		var s State
		for i, e := range randomStream(r, 1+r.IntN(250), cfg.Anomaly.Window) {
			got := p.Apply(&s, e)
			want := m.apply(e)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("stream %d (%+v), event %d at %d: got %s, want %s", stream, cfg, i, e.Time.UnixMilli(), fxString(got), fxString(want))
			}
			if got.Anomaly != nil {
				fires++
				if got.Anomaly.Severity == SeverityCritical {
					critical++
				}
			}
			if !got.RateCounted {
				notCounted++
			}
			checkCounts(t, s.Actions())
			checkCounts(t, s.Resources())
			if s.TotalActivity != int64(len(m.times)) || !maps.Equal(countsMap(s.Actions()), m.actions) || !maps.Equal(countsMap(s.Resources()), m.resources) ||
				s.FirstActivityMillis != slices.Min(m.times) || s.LastActivityMillis != slices.Max(m.times) || s.LastSequence != m.lastSeq {
				t.Fatalf("stream %d, event %d: state %+v disagrees with the model", stream, i, s)
			}
			if r.IntN(20) == 0 {
				b, err := s.MarshalBinary()
				if err != nil {
					t.Fatal(err)
				}
				var d State
				if err := d.UnmarshalBinary(b); err != nil {
					t.Fatalf("UnmarshalBinary: %v", err)
				}
				s = d
			}
		}
	}
	t.Logf("%d anomalies (%d critical), %d events not rate-counted", fires, critical, notCounted)
	if fires < streams/10 || critical == 0 || notCounted == 0 {
		t.Errorf("the streams exercise too little: %d anomalies, %d critical, %d not rate-counted", fires, critical, notCounted)
	}
}

func fxString(fx Effects) string {
	a := "none"
	if fx.Anomaly != nil {
		a = fmt.Sprintf("%+v", *fx.Anomaly)
	}
	return fmt.Sprintf("{Milestone:%d RateCounted:%v WindowCount:%d Anomaly:%s}", fx.Milestone, fx.RateCounted, fx.WindowCount, a)
}
