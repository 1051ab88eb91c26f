package processors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"slices"
	"strconv"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// ErrInvalidConfig is wrapped by every error New returns for a bad Config.
var ErrInvalidConfig = errors.New("processors: invalid config")

// Limits on the configuration.
const (
	// MaxWindow is the largest anomaly window accepted. It bounds the number
	// of 1-second buckets a user's state can hold (about 2 × the window in
	// seconds).
	MaxWindow = 24 * time.Hour
)

// Config holds the parameters of the three processors. Start from
// DefaultConfig and change what you need; New validates it.
type Config struct {
	// MaxResources is the number of distinct resources a user keeps its own
	// count for (aggregation.max_resources). Later new resources count under
	// OtherResource. 0 counts every resource under OtherResource.
	MaxResources int
	// MaxActions is the number of distinct actions a user keeps its own
	// count for (aggregation.max_actions). Later new actions count under
	// OtherAction. 0 counts every action under OtherAction.
	MaxActions int
	// Anomaly holds the parameters of the high-activity detector.
	Anomaly AnomalyConfig
	// Milestones holds the parameters of the milestone processor.
	Milestones MilestoneConfig
}

// AnomalyConfig holds the parameters of the high-activity detector
// (docs/contract.md, "Processors"). Rates are in events per minute.
type AnomalyConfig struct {
	// Window is W (anomaly.window): a whole number of milliseconds, at least
	// 1ms and at most MaxWindow.
	Window time.Duration
	// Multiplier is M (anomaly.multiplier), > 0.
	Multiplier float64
	// DefaultAverageRate is the average rate used while a user's history is
	// not longer than the window (anomaly.default_average_rate), >= 0.
	DefaultAverageRate float64
	// MinAverageRate is the floor of the average rate
	// (anomaly.min_average_rate), >= 0.
	MinAverageRate float64
	// MinEvents is the smallest window count that may fire
	// (anomaly.min_events), >= 0.
	MinEvents int
}

// MilestoneConfig holds the parameters of the milestone processor.
type MilestoneConfig struct {
	// Every reports a milestone when totalActivity becomes a multiple of it
	// (milestones.every). 0 disables the rule; negative is invalid.
	Every int64
	// Thresholds are extra counts (milestones.thresholds) reported when
	// totalActivity equals one of them; each must be >= 1. Order and repeats
	// do not matter.
	Thresholds []int64
}

// DefaultConfig returns the processors' defaults (the README's configuration table).
func DefaultConfig() Config {
	return Config{
		MaxResources: 1000,
		MaxActions:   100,
		Anomaly: AnomalyConfig{
			Window:             5 * time.Minute,
			Multiplier:         5,
			DefaultAverageRate: 1,
			MinAverageRate:     0.1,
			MinEvents:          10,
		},
		Milestones: MilestoneConfig{Every: 100},
	}
}

// Validate reports the first problem of c, wrapping ErrInvalidConfig.
func (c Config) Validate() error {
	_, err := compile(c)
	return err
}

// rat is an exact non-negative rational n/d with d > 0, kept in 64-bit
// parts so that comparisons need no allocation.
type rat struct{ n, d uint64 }

// less reports whether a < b exactly.
func (a rat) less(b rat) bool {
	return prod2(a.n, b.d).cmp(prod2(b.n, a.d)) < 0
}

// ratOf converts f exactly as written in its shortest decimal form (so 0.1 is
// 1/10, not the binary double nearest to it).
func ratOf(key string, f float64, positive bool) (rat, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || (positive && f == 0) {
		bound := ">= 0"
		if positive {
			bound = "> 0"
		}
		return rat{}, fmt.Errorf("%w: %s must be a finite number %s, got %v", ErrInvalidConfig, key, bound, f)
	}
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(f, 'g', -1, 64))
	if !ok {
		return rat{}, fmt.Errorf("%w: %s: cannot convert %v", ErrInvalidConfig, key, f)
	}
	if !r.Num().IsUint64() || !r.Denom().IsUint64() {
		return rat{}, fmt.Errorf("%w: %s = %v is too large or too precise (numerator and denominator must fit in 64 bits)", ErrInvalidConfig, key, f)
	}
	return rat{n: r.Num().Uint64(), d: r.Denom().Uint64()}, nil
}

// compiled is a validated Config in the form Apply uses.
type compiled struct {
	maxResources int
	maxActions   int
	windowMs     int64 // W in milliseconds
	windowSecs   int64 // ceil(W / 1s): a window holds the buckets [s-windowSecs+1, s]
	minEvents    int64
	mult         rat
	defaultAvg   rat
	minAvg       rat
	baseAvg      rat // max(defaultAvg, minAvg): the average while span <= W
	every        int64
	thresholds   []int64 // sorted, distinct
}

func compile(c Config) (compiled, error) {
	var p compiled
	if c.MaxResources < 0 {
		return p, fmt.Errorf("%w: aggregation.max_resources must be >= 0, got %d", ErrInvalidConfig, c.MaxResources)
	}
	p.maxResources = c.MaxResources
	if c.MaxActions < 0 {
		return p, fmt.Errorf("%w: aggregation.max_actions must be >= 0, got %d", ErrInvalidConfig, c.MaxActions)
	}
	p.maxActions = c.MaxActions
	a := c.Anomaly
	if a.Window < time.Millisecond || a.Window > MaxWindow || a.Window%time.Millisecond != 0 {
		return p, fmt.Errorf("%w: anomaly.window must be a whole number of milliseconds in [1ms, %v], got %v", ErrInvalidConfig, MaxWindow, a.Window)
	}
	p.windowMs = a.Window.Milliseconds()
	p.windowSecs = (p.windowMs + 999) / 1000
	if a.MinEvents < 0 {
		return p, fmt.Errorf("%w: anomaly.min_events must be >= 0, got %d", ErrInvalidConfig, a.MinEvents)
	}
	p.minEvents = int64(a.MinEvents)
	var err error
	if p.mult, err = ratOf("anomaly.multiplier", a.Multiplier, true); err != nil {
		return p, err
	}
	if p.defaultAvg, err = ratOf("anomaly.default_average_rate", a.DefaultAverageRate, false); err != nil {
		return p, err
	}
	if p.minAvg, err = ratOf("anomaly.min_average_rate", a.MinAverageRate, false); err != nil {
		return p, err
	}
	p.baseAvg = p.defaultAvg
	if p.baseAvg.less(p.minAvg) {
		p.baseAvg = p.minAvg
	}
	m := c.Milestones
	if m.Every < 0 {
		return p, fmt.Errorf("%w: milestones.every must be >= 0, got %d", ErrInvalidConfig, m.Every)
	}
	p.every = m.Every
	for _, th := range m.Thresholds {
		if th < 1 {
			return p, fmt.Errorf("%w: milestones.thresholds must be >= 1, got %d", ErrInvalidConfig, th)
		}
	}
	p.thresholds = slices.Compact(slices.Sorted(slices.Values(m.Thresholds)))
	return p, nil
}

// MaxAggregatedBytes returns the largest user.activity.aggregated output
// value a valid c can produce for events decoded under l: the state holds
// at most MaxActions+1 action and MaxResources+1 resource keys, "_other"
// included (see topics.MaxAggregatedBytes). The worker checks it against
// kafka.max_message_bytes before anything runs. It holds for states built
// under l and c; a state stored before the label bounds existed may hold
// longer keys.
func (c Config) MaxAggregatedBytes(l topics.Limits) int {
	return topics.MaxAggregatedBytes(l, c.MaxActions+1, c.MaxResources+1)
}

// MaxOutputBytes returns the largest output value of any kind (see
// topics.MaxOutputBytes) under a valid c and l: what must fit in
// kafka.max_message_bytes, with the record's key and headers.
func (c Config) MaxOutputBytes(l topics.Limits) int {
	return topics.MaxOutputBytes(l, c.MaxActions+1, c.MaxResources+1)
}

// MaxStateBytes returns the largest binary form (State.MarshalBinary) of a
// user's state under a valid c, when no action or resource is longer than
// maxLabelBytes: the size a state store must accept for one user.
func (c Config) MaxStateBytes(maxLabelBytes int) int {
	const v = binary.MaxVarintLen64
	label := max(maxLabelBytes, len(OtherResource))
	windowSecs := int((c.Anomaly.Window.Milliseconds() + 999) / 1000)
	n := 1 + 4*v + 1 + v // version, four numbers, flags, last anomaly time
	for _, keys := range []int{c.MaxActions + 1, c.MaxResources + 1} {
		n += v + keys*(v+label+v) // count, then per key: length, key, count
	}
	return n + v + 2*windowSecs*(v+v) // count, then per bucket: second, count
}
