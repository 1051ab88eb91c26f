// Package processors holds the three processors of user.activity events:
// aggregation, high-activity anomaly detection and milestones
// (docs/contract.md, "Processors").
//
// They are one deterministic function of (state, event), Processor.Apply,
// that uses event time only, never the wall clock, so a replay from any
// offset reproduces the same state and outputs. The package imports no Kafka
// or Redis client; State has a compact binary form for the state store.
//
// Decisions where the contract is silent, all of which Apply documents too: event
// times are truncated to milliseconds; an empty data.action or data.resource
// is not counted in the maps (totalActivity still counts the event); the
// resource key "_other" is reserved for the overflow count; the history span
// of §5.2 is measured from firstActivityAt including the event being applied.
package processors

import (
	"math/big"
	"math/bits"
	"slices"

	"github.com/streamworker/streamworker/topics"
)

// Anomaly output values.
const (
	// AnomalyHighActivity is the anomalyType of every anomaly output.
	AnomalyHighActivity = "high-activity"
	// SeverityHigh is the severity of an anomaly whose current rate is above
	// M × averageRate but not above 2 × M × averageRate.
	SeverityHigh = "high"
	// SeverityCritical is the severity of an anomaly whose current rate is
	// above 2 × M × averageRate.
	SeverityCritical = "critical"
)

// msPerMinute converts rates per millisecond to rates per minute.
const msPerMinute = 60_000

// Processor applies user.activity events to user states. It holds only its
// validated configuration and is safe for concurrent use; the States it
// changes are not.
type Processor struct {
	c compiled
}

// New returns a Processor for cfg, or an error wrapping ErrInvalidConfig.
func New(cfg Config) (*Processor, error) {
	c, err := compile(cfg)
	if err != nil {
		return nil, err
	}
	return &Processor{c: c}, nil
}

// Effects is what applying one event produced besides the state change. It
// allocates nothing unless an anomaly fires.
type Effects struct {
	// Milestone is the totalActivity count reached, to be published as a
	// user.milestone.reached output; 0 when none was. An event adds one to
	// totalActivity, so it reaches at most one milestone, reported once
	// even when the count is both a multiple of Every and a threshold.
	Milestone int64
	// Anomaly is the anomaly.detected data, or nil when none fired.
	Anomaly *topics.AnomalyData
	// RateCounted reports whether the event entered the anomaly buckets.
	RateCounted bool
	// WindowCount is the number of rate-counted events in the event's
	// window, the event included; 0 when the event was not rate-counted.
	WindowCount int64
}

// Apply applies the user.activity event e to the state s of its user and
// returns the outputs it causes. It does not look at e.Type or at
// e.AggregateID except as the anomaly's userId. In order:
//
// Aggregation (§5.1). TotalActivity grows by one; the counts of e.Data.Action
// and of e.Data.Resource grow by one when non-empty (capped, see OtherAction
// and OtherResource; a state that holds more keys than the caps, stored
// under larger ones, has the keys past them in key order folded into
// "_other"); the first/last activity times become the min/max event
// time; LastSequence becomes e.Sequence when it is > 0. The event time t is
// e.Time truncated to the millisecond.
//
// Milestones (§5.3). See Effects.Milestone.
//
// Anomaly (§5.2), with W the window in ms and every comparison exact:
//   - e is rate-counted unless t <= (max event time before e) - W; the first
//     event of a user is always rate-counted. Otherwise it is not evaluated.
//   - windowCount counts the rate-counted events, e included, whose second
//     lies in (s-W, s], s = floor(t / 1s).
//   - currentRate = windowCount / (W in minutes).
//   - span = t - firstActivityAt, firstActivityAt being the minimum event
//     time including e (so span >= 0). averageRate = (totalActivity -
//     windowCount) / ((span - W) in minutes) when span > W, else
//     DefaultAverageRate; then at least MinAverageRate.
//   - It fires when windowCount >= MinEvents, currentRate > M × averageRate,
//     and no anomaly fired before at a time tp with t - tp < W. Severity is
//     critical when currentRate > 2 × M × averageRate, else high.
func (p *Processor) Apply(s *State, e *topics.Event) Effects {
	c := &p.c
	t := min(max(e.Time.UnixMilli(), minMillis), maxMillis)
	firstEvent := s.TotalActivity == 0
	maxBefore := s.LastActivityMillis

	// Aggregation.
	s.TotalActivity++
	if a := e.Data.Action; a != "" {
		s.actions = countCapped(s.actions, a, OtherAction, c.maxActions)
	}
	if r := e.Data.Resource; r != "" {
		s.resources = countCapped(s.resources, r, OtherResource, c.maxResources)
	}
	if len(s.actions) > c.maxActions+1 || len(s.resources) > c.maxResources+1 {
		// A state written under a larger cap, or before there was one.
		s.actions = foldExcess(s.actions, OtherAction, c.maxActions)
		s.resources = foldExcess(s.resources, OtherResource, c.maxResources)
	}
	if firstEvent || t < s.FirstActivityMillis {
		s.FirstActivityMillis = t
	}
	if firstEvent || t > s.LastActivityMillis {
		s.LastActivityMillis = t
	}
	if e.Sequence > 0 {
		s.LastSequence = e.Sequence
	}

	// Milestones.
	fx := Effects{Milestone: c.milestone(s.TotalActivity)}

	// Anomaly.
	if !firstEvent && t <= maxBefore-c.windowMs {
		return fx
	}
	fx.RateCounted = true
	sec := floorDiv(t, 1000)
	s.buckets.add(sec)
	wc := s.buckets.count(sec-c.windowSecs+1, sec)
	fx.WindowCount = wc
	// A later rate-counted event has a time >= LastActivity - W + 1, so its
	// window starts at or after the second below; older buckets are dead.
	s.buckets.prune(floorDiv(s.LastActivityMillis-c.windowMs+1, 1000) - c.windowSecs + 1)
	if wc < c.minEvents {
		return fx
	}
	if s.anomalyFired && t-s.lastAnomalyMillis < c.windowMs {
		return fx
	}
	fx.Anomaly = c.evaluate(s, t, wc, e.AggregateID)
	if fx.Anomaly != nil {
		s.anomalyFired = true
		s.lastAnomalyMillis = t
	}
	return fx
}

// evaluate compares the rates of a rate-counted event at time t whose window
// holds wc events, and returns the anomaly data if it fires.
//
// With currentRate = wc·60000 / W and averageRate = an1·an2 / ad, the test
// currentRate > k·(Mn/Md)·averageRate becomes wc·60000·Md·ad > k·W·Mn·an1·an2.
// Bounds: wc < 2^63, Md, ad, Mn, an1 < 2^64, W < 2^27, an2 <= 60000 < 2^16,
// k <= 2, so the left side is below 2^207 and the right below 2^172: u256 is
// exact.
func (c *compiled) evaluate(s *State, t, wc int64, userID string) *topics.AnomalyData {
	var an1, an2, ad uint64
	if span := t - s.FirstActivityMillis; span > c.windowMs {
		an1, an2, ad = uint64(s.TotalActivity-wc), msPerMinute, uint64(span-c.windowMs)
		// max(average, minAverage): average < minAverage ⇔ an1·an2·minD < minN·ad.
		if (u256{an1}).mul(an2).mul(c.minAvg.d).cmp(prod2(c.minAvg.n, ad)) < 0 {
			an1, an2, ad = c.minAvg.n, 1, c.minAvg.d
		}
	} else {
		an1, an2, ad = c.baseAvg.n, 1, c.baseAvg.d
	}
	lhs := u256{uint64(wc)}.mul(msPerMinute).mul(c.mult.d).mul(ad)
	rhs := u256{uint64(c.windowMs)}.mul(c.mult.n).mul(an1).mul(an2)
	if lhs.cmp(rhs) <= 0 {
		return nil
	}
	sev := SeverityHigh
	if lhs.cmp(rhs.mul(2)) > 0 {
		sev = SeverityCritical
	}
	return &topics.AnomalyData{
		UserID:      userID,
		AnomalyType: AnomalyHighActivity,
		CurrentRate: ratFloat(uint64(wc), msPerMinute, uint64(c.windowMs)),
		AverageRate: ratFloat(an1, an2, ad),
		WindowCount: wc,
		Severity:    sev,
	}
}

// countCapped counts one event of key (non-empty) in counts, which keep at
// most maxKeys keys of their own: a new key beyond them, and the reserved
// key other itself, count under other, which takes none of the maxKeys
// slots. It returns the counts.
func countCapped(counts []topics.Count, key, other string, maxKeys int) []topics.Count {
	if key != other {
		i, ok := find(counts, key)
		if ok {
			counts[i].N++
			return counts
		}
		distinct := len(counts)
		if _, ok := find(counts, other); ok {
			distinct--
		}
		if distinct < maxKeys {
			return insertKey(counts, i, key)
		}
	}
	return countKey(counts, other)
}

// foldExcess returns counts with at most maxKeys keys besides other: the
// keys past the first maxKeys in key order count under other. A state only
// holds more when it was written under a larger cap (or before the cap
// existed); folding it at its next change keeps every state, and so every
// output, within the bounds, whatever was stored before.
func foldExcess(counts []topics.Count, other string, maxKeys int) []topics.Count {
	var folded int64
	kept := counts[:0]
	var otherN int64
	for _, c := range counts {
		switch {
		case c.Key == other:
			otherN = c.N
		case len(kept) < maxKeys:
			kept = append(kept, c)
		default:
			folded += c.N
		}
	}
	if otherN+folded == 0 {
		return kept
	}
	i, _ := find(kept, other)
	return slices.Insert(kept, i, topics.Count{Key: other, N: otherN + folded})
}

// milestone returns total if it is a milestone, else 0.
func (c *compiled) milestone(total int64) int64 {
	if c.every > 0 && total%c.every == 0 {
		return total
	}
	if _, ok := slices.BinarySearch(c.thresholds, total); ok {
		return total
	}
	return 0
}

// ratFloat returns the float64 nearest to n1·n2 / d (d > 0).
func ratFloat(n1, n2, d uint64) float64 {
	const exact = 1 << 53 // integers below it convert to float64 exactly
	hi, lo := bits.Mul64(n1, n2)
	if hi == 0 && lo < exact && d < exact {
		return float64(lo) / float64(d) // one correctly rounded division
	}
	num := new(big.Int).Mul(new(big.Int).SetUint64(n1), new(big.Int).SetUint64(n2))
	f, _ := new(big.Rat).SetFrac(num, new(big.Int).SetUint64(d)).Float64()
	return f
}

// floorDiv returns floor(a / b) for b > 0.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}
