package processors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// OtherResource is the key under which a user's resources beyond
// Config.MaxResources are counted. The key is reserved: an event whose
// resource is literally "_other" also counts under it and takes none of the
// MaxResources slots, so the map never holds more than MaxResources+1 keys.
const OtherResource = "_other"

// stateVersion is the first byte of the binary form of a State.
const stateVersion = 1

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
type State struct {
	// TotalActivity counts the user.activity events applied.
	TotalActivity int64
	// Actions counts events per non-empty data.action. Nil when empty.
	Actions map[string]int64
	// Resources counts events per non-empty data.resource, capped as
	// described at OtherResource. Nil when empty.
	Resources map[string]int64
	// FirstActivityMillis is the minimum event time; meaningful only when
	// TotalActivity > 0.
	FirstActivityMillis int64
	// LastActivityMillis is the maximum event time; meaningful only when
	// TotalActivity > 0.
	LastActivityMillis int64
	// LastSequence is the sequence of the last sequenced event applied (or
	// advanced past), 0 until there is one.
	LastSequence int64

	// buckets holds the rate-counted events per second. Seconds that no
	// future window can reach are pruned (Processor.Apply), which leaves at
	// most 2 × ceil(W/1s) of them.
	buckets buckets
	// lastAnomalyMillis is the event time of the last anomaly fired, valid
	// when anomalyFired.
	lastAnomalyMillis int64
	anomalyFired      bool
}

// NextSequence returns the sequence this user expects next:
// LastSequence + 1.
func (s *State) NextSequence() int64 { return s.LastSequence + 1 }

// AdvanceSequence records that the sequenced event seq (for instance one of
// an unknown type, which is skipped) took its place in the user's sequence.
// Nothing else changes. A seq <= 0 is ignored.
func (s *State) AdvanceSequence(seq int64) {
	if seq > 0 {
		s.LastSequence = seq
	}
}

// Snapshot returns the aggregated output data of the user userID. The maps
// are copies (never nil). The times are RFC 3339 UTC with milliseconds, and
// empty while TotalActivity is 0 (a user that so far only advanced its
// sequence).
func (s *State) Snapshot(userID string) topics.AggregatedData {
	d := topics.AggregatedData{
		UserID:        userID,
		TotalActivity: s.TotalActivity,
		Actions:       make(map[string]int64, len(s.Actions)),
		Resources:     make(map[string]int64, len(s.Resources)),
		LastSequence:  s.LastSequence,
	}
	maps.Copy(d.Actions, s.Actions)
	maps.Copy(d.Resources, s.Resources)
	if s.TotalActivity > 0 {
		d.FirstActivityAt = topics.FormatTime(time.UnixMilli(s.FirstActivityMillis))
		d.LastActivityAt = topics.FormatTime(time.UnixMilli(s.LastActivityMillis))
	}
	return d
}

// BucketCount returns the number of 1-second buckets the state holds.
func (s *State) BucketCount() int { return s.buckets.len() }

// MarshalBinary encodes s in a compact, deterministic binary form (maps in
// key order) that starts with a format version byte.
func (s *State) MarshalBinary() ([]byte, error) {
	return s.AppendBinary(make([]byte, 0, s.binarySizeHint()))
}

func (s *State) binarySizeHint() int {
	n := 1 + 5*binary.MaxVarintLen64 + 1 + 3*binary.MaxVarintLen64 + 4*s.BucketCount()
	for k := range s.Actions {
		n += len(k) + 4
	}
	for k := range s.Resources {
		n += len(k) + 4
	}
	return n
}

// AppendBinary appends the binary form of s (see MarshalBinary) to b.
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
	b = append(b, flags)
	if s.anomalyFired {
		b = binary.AppendVarint(b, s.lastAnomalyMillis)
	}
	b = appendCounts(b, s.Actions)
	b = appendCounts(b, s.Resources)
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

func appendCounts(b []byte, m map[string]int64) []byte {
	b = binary.AppendUvarint(b, uint64(len(m)))
	if len(m) == 0 {
		return b
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = binary.AppendUvarint(b, uint64(len(k)))
		b = append(b, k...)
		b = binary.AppendUvarint(b, uint64(m[k]))
	}
	return b
}

// UnmarshalBinary replaces s with the state encoded in data by
// MarshalBinary. It checks the encoding and the state's invariants and
// returns an error wrapping ErrCorruptState when they do not hold; s is then
// unchanged.
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
	if flags&^1 != 0 {
		d.fail("unknown flags")
	}
	if flags&1 != 0 {
		n.anomalyFired = true
		n.lastAnomalyMillis = d.varint()
	}
	n.Actions = d.counts("actions")
	n.Resources = d.counts("resources")
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
			len(s.Actions) != 0 || len(s.Resources) != 0 || s.buckets.len() != 0 {
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
	for _, m := range []map[string]int64{s.Actions, s.Resources} {
		var sum int64
		for _, c := range m {
			if c > s.TotalActivity-sum {
				return bad("counts exceed totalActivity")
			}
			sum += c
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

// counts reads a map written by appendCounts; keys must be strictly
// ascending so that every state has exactly one encoding.
func (d *decoder) counts(what string) map[string]int64 {
	n := d.length(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]int64, n)
	prev := ""
	for i := range n {
		l := d.uvarint()
		if d.err != nil {
			return nil
		}
		if l == 0 || l > uint64(d.left()) {
			d.fail(what + ": bad key length")
			return nil
		}
		k := string(d.b[d.p : d.p+int(l)])
		d.p += int(l)
		if i > 0 && k <= prev {
			d.fail(what + ": keys not ascending")
			return nil
		}
		prev = k
		m[k] = d.count()
	}
	return m
}
