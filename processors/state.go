package processors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
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

// MarshalBinary encodes s in a compact, deterministic binary form (counts in
// key order) that starts with a format version byte.
func (s *State) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, s.binarySizeHint()))
}

func (s *State) binarySizeHint() int {
	n := 1 + 5*binary.MaxVarintLen64 + 1 + 3*binary.MaxVarintLen64 + 4*s.BucketCount()
	for _, c := range s.actions {
		n += len(c.Key) + 4
	}
	for _, c := range s.resources {
		n += len(c.Key) + 4
	}
	return n
}

// AppendBinary appends the binary form of s (see MarshalBinary) to b. It
// allocates nothing when b has room.
func (s *State) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, stateVersion)
	b = binary.AppendVarint(b, s.TotalActivity)
	b = binary.AppendVarint(b, s.FirstActivityMillis)
	b = binary.AppendVarint(b, s.LastActivityMillis)
	b = binary.AppendVarint(b, s.LastSequence)
	var flags byte
	if s.anomalyFired {
		flags |= 1
	}
	if s.Park != nil {
		flags |= flagParked
	}
	b = append(b, flags)
	if s.anomalyFired {
		b = binary.AppendVarint(b, s.lastAnomalyMillis)
	}
	if k := s.Park; k != nil {
		b = binary.AppendVarint(b, int64(k.Partition))
		b = binary.AppendVarint(b, k.Offset)
		b = binary.AppendVarint(b, k.HeldThrough)
		reason := k.Reason[:min(len(k.Reason), maxParkReason)]
		b = binary.AppendUvarint(b, uint64(len(reason)))
		b = append(b, reason...)
	}
	b = appendCounts(b, s.actions)
	b = appendCounts(b, s.resources)
	live := s.buckets.live()
	b = binary.AppendUvarint(b, uint64(len(live)))
	prev := s.buckets.base
	for i, k := range live {
		if i == 0 {
			b = binary.AppendVarint(b, k.sec)
		} else {
			b = binary.AppendUvarint(b, uint64(k.sec-live[i-1].sec))
		}
		b = binary.AppendUvarint(b, uint64(k.cum-prev))
		prev = k.cum
	}
	return b, nil
}

// appendCounts appends the number of counts, then each key's length, key and
// count, in key order.
func appendCounts(b []byte, counts []topics.Count) []byte {
	b = binary.AppendUvarint(b, uint64(len(counts)))
	for _, c := range counts {
		b = binary.AppendUvarint(b, uint64(len(c.Key)))
		b = append(b, c.Key...)
		b = binary.AppendUvarint(b, uint64(c.N))
	}
	return b
}

// UnmarshalBinary replaces s with the state encoded in data by
// MarshalBinary. It checks the encoding and the state's invariants and
// returns an error wrapping ErrCorruptState when they do not hold; s is then
// unchanged. The decoded state shares no memory with data; all its keys are
// parts of one string, its counts and buckets one slice each.
func (s *State) UnmarshalBinary(data []byte) error {
	d := decoder{b: data}
	if v := d.byte(); d.err == nil && v != stateVersion {
		return fmt.Errorf("%w: unknown format version %d", ErrCorruptState, v)
	}
	var n State
	n.TotalActivity = d.varint()
	n.FirstActivityMillis = d.varint()
	n.LastActivityMillis = d.varint()
	n.LastSequence = d.varint()
	flags := d.byte()
	if flags&^(1|flagParked) != 0 {
		d.fail("unknown flags")
	}
	if flags&1 != 0 {
		n.anomalyFired = true
		n.lastAnomalyMillis = d.varint()
	}
	if flags&flagParked != 0 {
		k := &Park{}
		part := d.varint()
		k.Offset = d.varint()
		k.HeldThrough = d.varint()
		if l := d.length(1); l <= maxParkReason {
			k.Reason = string(d.b[d.p : d.p+l])
			d.p += l
		} else {
			d.fail("park reason too long")
		}
		if d.err == nil && (part < 0 || part > math.MaxInt32 || k.Offset < 0 || k.HeldThrough < k.Offset) {
			d.fail("park out of range")
		}
		k.Partition = int32(part)
		n.Park = k
	}
	actions := d.counts("actions")
	resources := d.counts("resources")
	if nb := d.length(2); nb > 0 {
		bs := make([]bucket, nb)
		for i := range bs {
			if i == 0 {
				bs[i].sec = d.varint()
			} else {
				delta := d.uvarint()
				if delta == 0 || delta > maxMillis {
					d.fail("bucket seconds not ascending")
				}
				bs[i].sec = bs[i-1].sec + int64(delta)
			}
			if sec := bs[i].sec; sec < minSecond || sec > maxSecond {
				d.fail("bucket second out of range")
			}
			c := d.count()
			if i > 0 {
				if c > n.TotalActivity-bs[i-1].cum {
					d.fail("bucket counts exceed totalActivity")
				}
				c += bs[i-1].cum
			}
			bs[i].cum = c
		}
		n.buckets.b = bs
	}
	if d.err == nil && d.left() != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return d.err
	}
	if total := actions.keyBytes + resources.keyBytes; total > 0 {
		var sb strings.Builder
		sb.Grow(total)
		actions.each(data, func(k []byte, _ int64) { sb.Write(k) })
		resources.each(data, func(k []byte, _ int64) { sb.Write(k) })
		keys := sb.String()
		n.actions, keys = actions.read(data, keys)
		n.resources, _ = resources.read(data, keys)
	}
	if err := n.check(); err != nil {
		return err
	}
	*s = n
	return nil
}

// check verifies the invariants a decoded state must satisfy.
func (s *State) check() error {
	bad := func(what string) error { return fmt.Errorf("%w: %s", ErrCorruptState, what) }
	if s.TotalActivity < 0 || s.LastSequence < 0 {
		return bad("negative count")
	}
	if s.TotalActivity == 0 {
		if s.FirstActivityMillis != 0 || s.LastActivityMillis != 0 || s.anomalyFired ||
			len(s.actions) != 0 || len(s.resources) != 0 || s.buckets.len() != 0 {
			return bad("activity recorded without events")
		}
		return nil
	}
	inRange := func(ms int64) bool { return ms >= minMillis && ms <= maxMillis }
	if !inRange(s.FirstActivityMillis) || !inRange(s.LastActivityMillis) || s.FirstActivityMillis > s.LastActivityMillis {
		return bad("activity times out of range")
	}
	if s.anomalyFired && !inRange(s.lastAnomalyMillis) {
		return bad("anomaly time out of range")
	}
	for _, counts := range [2][]topics.Count{s.actions, s.resources} {
		var sum int64
		for _, c := range counts {
			if c.N > s.TotalActivity-sum {
				return bad("counts exceed totalActivity")
			}
			sum += c.N
		}
	}
	if live := s.buckets.live(); len(live) > 0 && live[len(live)-1].cum > s.TotalActivity {
		return bad("bucket counts exceed totalActivity")
	}
	return nil
}

// decoder reads the binary form; the first error sticks. It advances an
// index rather than reslicing, which keeps pointer writes (and GC write
// barriers) out of the loop.
type decoder struct {
	b   []byte
	p   int // read position
	err error
}

// left returns the number of unread bytes.
func (d *decoder) left() int { return len(d.b) - d.p }

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorruptState, what)
	}
	d.p = len(d.b)
}

func (d *decoder) byte() byte {
	if d.p >= len(d.b) {
		d.fail("truncated")
		return 0
	}
	v := d.b[d.p]
	d.p++
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b[d.p:])
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.p += n
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b[d.p:])
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.p += n
	return v
}

// count reads a count, which must be in [1, MaxInt64].
func (d *decoder) count() int64 {
	v := d.uvarint()
	if d.err == nil && (v == 0 || v > math.MaxInt64) {
		d.fail("count out of range")
		return 0
	}
	return int64(v)
}

// length reads the number of following elements, each at least minSize
// bytes long, and checks that many bytes remain.
func (d *decoder) length(minSize int) int {
	v := d.uvarint()
	if d.err == nil && v > uint64(d.left()/minSize) {
		d.fail("length exceeds data")
		return 0
	}
	return int(v)
}

// countsSection locates a section written by appendCounts that
// decoder.counts has checked.
type countsSection struct {
	start    int // the offset of the first key's length
	n        int // the number of keys
	keyBytes int // the sum of their lengths
}

// counts checks a section written by appendCounts and skips it; keys must be
// non-empty and strictly ascending so that every state has exactly one
// encoding.
func (d *decoder) counts(what string) countsSection {
	n := d.length(2)
	sec := countsSection{start: d.p, n: n}
	var prev []byte
	for i := range n {
		l := d.uvarint()
		if d.err != nil {
			return countsSection{}
		}
		if l == 0 || l > uint64(d.left()) {
			d.fail(what + ": bad key length")
			return countsSection{}
		}
		k := d.b[d.p : d.p+int(l)]
		d.p += int(l)
		if i > 0 && bytes.Compare(k, prev) <= 0 {
			d.fail(what + ": keys not ascending")
			return countsSection{}
		}
		prev = k
		sec.keyBytes += int(l)
		d.count()
	}
	return sec
}

// each calls f with every key and count of the checked section in data.
func (sec countsSection) each(data []byte, f func(key []byte, n int64)) {
	p := sec.start
	for range sec.n {
		l, w := binary.Uvarint(data[p:])
		p += w
		k := data[p : p+int(l)]
		p += int(l)
		c, w := binary.Uvarint(data[p:])
		p += w
		f(k, int64(c))
	}
}

// read returns the counts of the checked section in data, taking their keys
// in order from the front of keys, and what is left of keys.
func (sec countsSection) read(data []byte, keys string) ([]topics.Count, string) {
	if sec.n == 0 {
		return nil, keys
	}
	counts := make([]topics.Count, 0, sec.n)
	sec.each(data, func(k []byte, n int64) {
		counts = append(counts, topics.Count{Key: keys[:len(k)], N: n})
		keys = keys[len(k):]
	})
	return counts, keys
}
