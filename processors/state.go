package processors

import (
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// OtherResource is the key under which a user's resources beyond
// Config.MaxResources are counted. The key is reserved: an event whose
// resource is literally "_other" also counts under it and takes none of the
// MaxResources slots, so State.Resources never holds more than
// MaxResources+1 keys.
const OtherResource = "_other"

// OtherAction is the key under which a user's actions beyond
// Config.MaxActions are counted, reserved as OtherResource is: State.Actions
// never holds more than MaxActions+1 keys.
const OtherAction = "_other"

// stateVersion is the first byte of the binary form of a State.
const stateVersion = 1

// flagParked is the bit of the flags byte that says a Park follows the
// anomaly time; states written before parking existed never set it, and
// decode as they did.
const flagParked = 2

// ErrCorruptState is wrapped by the errors of State.UnmarshalBinary.
var ErrCorruptState = errors.New("processors: corrupt state")

// Event times are clamped to ±2^50 ms (about ±35,000 years around 1970) so
// that no difference or product of times can overflow. RFC 3339 times (years
// 0000-9999) are far inside.
const (
	minMillis = -(1 << 50)
	maxMillis = 1 << 50
	// The seconds those times floor to.
	minSecond = -(1<<50)/1000 - 1
	maxSecond = (1 << 50) / 1000
)

// State is the aggregate of one user: the aggregation of §5.1 plus the
// little history anomaly detection needs. Its zero value is a user with no
// events. A State is not safe for concurrent use.
//
// Times are event times in Unix milliseconds (sub-millisecond digits are
// truncated when an event is applied).
//
// The counts per action and per resource are slices kept sorted by key
// rather than maps: a user has at most MaxActions+1 actions (a handful in
// practice) and MaxResources+1 resources, which binary search finds as fast as a map, and
// sorted counts are what the aggregated output and the binary form write, so
// neither copies nor sorts anything, and a state holds a fraction of the
// memory two maps take.
type State struct {
	// TotalActivity counts the user.activity events applied.
	TotalActivity int64
	// FirstActivityMillis is the minimum event time; meaningful only when
	// TotalActivity > 0.
	FirstActivityMillis int64
	// LastActivityMillis is the maximum event time; meaningful only when
	// TotalActivity > 0.
	LastActivityMillis int64
	// LastSequence is the sequence of the last sequenced event applied (or
	// advanced past), 0 until there is one.
	LastSequence int64

	// actions counts events per non-empty data.action, capped as
	// described at OtherAction, sorted by key, each key once.
	actions []topics.Count
	// resources counts events per non-empty data.resource, capped as
	// described at OtherResource, sorted by key, each key once.
	resources []topics.Count
	// buckets holds the rate-counted events per second. Seconds that no
	// future window can reach are pruned (Processor.Apply), which leaves at
	// most 2 × ceil(W/1s) of them.
	buckets buckets
	// lastAnomalyMillis is the event time of the last anomaly fired, valid
	// when anomalyFired.
	lastAnomalyMillis int64
	anomalyFired      bool

	// Park, when not nil, says that the user is parked: a record of the
	// user failed by itself and the user's later events are held on the
	// parked topic until a release (docs/contract.md, "Parked users").
	Park *Park
}

// Park is why and since when a user is parked.
type Park struct {
	// Partition and Offset locate the input record that parked the user:
	// the record sent to the DLQ. Offset also names the park: the records
	// held during it carry it.
	Partition int32
	Offset    int64
	// HeldThrough is the highest input offset of the user's partition
	// that has been dealt with while parked: a redelivered record at or
	// below it is not held again.
	HeldThrough int64
	// Reason is the DLQ reason of the record that parked the user.
	Reason string
}

// maxParkReason bounds the reason a state keeps.
const maxParkReason = 256

// AdvanceSequence records that the sequenced event seq (for instance one of
// an unknown type, which is skipped) took its place in the user's sequence.
// Nothing else changes. A seq <= 0 is ignored.
func (s *State) AdvanceSequence(seq int64) {
	if seq > 0 {
		s.LastSequence = seq
	}
}

// Actions returns the counts of events per non-empty data.action, capped as
// described at OtherAction, sorted by key, each key once. The slice is a read-only view of the state's own: do
// not change it, nor keep it past the next change of s.
func (s *State) Actions() []topics.Count { return s.actions }

// Resources returns the counts of events per non-empty data.resource, capped
// as described at OtherResource, sorted by key, each key once. The slice is
// a read-only view of the state's own: do not change it, nor keep it past
// the next change of s.
func (s *State) Resources() []topics.Count { return s.resources }

// Action returns the number of events of action a applied (0 for none).
func (s *State) Action(a string) int64 { return countOf(s.actions, a) }

// Resource returns the number of events counted under resource r (0 for
// none); see OtherResource for the resources beyond the cap.
func (s *State) Resource(r string) int64 { return countOf(s.resources, r) }

// find returns the index of key in counts, sorted by key, or the index at
// which to insert it, and whether it is there.
func find(counts []topics.Count, key string) (int, bool) {
	// sort.Search inlines with its closure, which slices.BinarySearchFunc
	// does not (BenchmarkApply shows the difference).
	i := sort.Search(len(counts), func(i int) bool { return counts[i].Key >= key })
	return i, i < len(counts) && counts[i].Key == key
}

func countOf(counts []topics.Count, key string) int64 {
	if i, ok := find(counts, key); ok {
		return counts[i].N
	}
	return 0
}

// countKey counts one event of key in counts and returns the counts.
func countKey(counts []topics.Count, key string) []topics.Count {
	i, ok := find(counts, key)
	if ok {
		counts[i].N++
		return counts
	}
	return insertKey(counts, i, key)
}

// insertKey inserts key with a count of 1 at index i of counts. The state
// keeps the key string itself: Apply's caller passes strings that share no
// larger buffer (topics.Decoder guarantees it for decoded events), so no
// copy is needed. A first key reserves room for a few more.
func insertKey(counts []topics.Count, i int, key string) []topics.Count {
	if counts == nil {
		counts = make([]topics.Count, 0, 4)
	}
	return slices.Insert(counts, i, topics.Count{Key: key, N: 1})
}

// Snapshot returns the aggregated output data of the user userID. The maps
// are fresh (never nil). The times are RFC 3339 UTC with milliseconds, and
// empty while TotalActivity is 0 (a user that so far only advanced its
// sequence). AppendAggregated writes the same output without the copies.
func (s *State) Snapshot(userID string) topics.AggregatedData {
	d := topics.AggregatedData{
		UserID:        userID,
		TotalActivity: s.TotalActivity,
		Actions:       countsMap(s.actions),
		Resources:     countsMap(s.resources),
		LastSequence:  s.LastSequence,
	}
	if s.TotalActivity > 0 {
		d.FirstActivityAt = topics.FormatTime(time.UnixMilli(s.FirstActivityMillis))
		d.LastActivityAt = topics.FormatTime(time.UnixMilli(s.LastActivityMillis))
	}
	return d
}

func countsMap(counts []topics.Count) map[string]int64 {
	m := make(map[string]int64, len(counts))
	for _, c := range counts {
		m[c.Key] = c.N
	}
	return m
}

// AppendAggregated appends the user.activity.aggregated output of the user
// userID to dst: the bytes topics.AppendAggregated writes for
// s.Snapshot(userID), written from the state as it is. It allocates nothing
// when dst has room (see topics.AppendAggregatedView).
func (s *State) AppendAggregated(dst []byte, m topics.OutputMeta, userID string) []byte {
	return topics.AppendAggregatedView(dst, m, &topics.AggregatedView{
		UserID:              userID,
		TotalActivity:       s.TotalActivity,
		Actions:             s.actions,
		Resources:           s.resources,
		FirstActivityMillis: s.FirstActivityMillis,
		LastActivityMillis:  s.LastActivityMillis,
		LastSequence:        s.LastSequence,
	})
}

// BucketCount returns the number of 1-second buckets the state holds.
func (s *State) BucketCount() int { return s.buckets.len() }
