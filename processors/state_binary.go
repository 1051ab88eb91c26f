// The binary form of a State, as the store keeps it: versioned, compact, and
// checked field by field when read (a corrupt or hostile value is an error,
// never a panic or an unbounded allocation).

package processors

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/streamworker/streamworker/topics"
)

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

func (d *decoder) varint() int64 { return readVarint(d, binary.Varint, "bad varint") }

func (d *decoder) uvarint() uint64 { return readVarint(d, binary.Uvarint, "bad uvarint") }

// readVarint reads one varint with read, or fails d with what.
func readVarint[T int64 | uint64](d *decoder, read func([]byte) (T, int), what string) T {
	v, n := read(d.b[d.p:])
	if n <= 0 {
		d.fail(what)
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
