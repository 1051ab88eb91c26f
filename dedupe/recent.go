package dedupe

import "encoding/binary"

// Recent is a bounded in-memory set of recently applied (aggregate, event ID)
// pairs of one partition, evicting the oldest entry first when full. It lets
// the runtime drop a redelivered event without asking Redis; a miss proves
// nothing (the authoritative marks are in Redis), so only add a pair once
// its effect is durable.
//
// Contains, Add and Len are O(1); Contains does not allocate and Add
// allocates one string per new pair. Recent is not safe for concurrent use:
// it belongs to one partition's goroutine.
type Recent struct {
	set  map[string]struct{}
	ring []string // insertion order; ring[next] is the oldest once full
	next int
	buf  []byte // scratch for lookups
}

// NewRecent returns a Recent that holds at most capacity pairs. A capacity
// of zero or less holds nothing: Contains always reports false.
func NewRecent(capacity int) *Recent {
	capacity = max(capacity, 0)
	return &Recent{
		set:  make(map[string]struct{}, capacity),
		ring: make([]string, 0, capacity),
	}
}

// Contains reports whether the pair (agg, id) is held.
func (r *Recent) Contains(agg, id string) bool {
	r.buf = appendPair(r.buf[:0], agg, id)
	_, ok := r.set[string(r.buf)] // no allocation: the compiler converts in place
	return ok
}

// Add records the pair (agg, id), evicting the oldest pair when full. Adding
// a pair already held does nothing (it keeps its place in the eviction
// order).
func (r *Recent) Add(agg, id string) {
	if cap(r.ring) == 0 || r.Contains(agg, id) {
		return
	}
	key := string(r.buf) // Contains left the pair in r.buf
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, key)
	} else {
		delete(r.set, r.ring[r.next])
		r.ring[r.next] = key
		r.next = (r.next + 1) % len(r.ring)
	}
	r.set[key] = struct{}{}
}

// Len returns the number of pairs held.
func (r *Recent) Len() int { return len(r.set) }

// Reset forgets every pair and keeps the capacity, e.g. when the partition
// is revoked and its events may be applied elsewhere.
func (r *Recent) Reset() {
	clear(r.set)
	clear(r.ring)
	r.ring = r.ring[:0]
	r.next = 0
}

// appendPair encodes a pair as uvarint(len(agg)) + agg + id: the length
// prefix keeps the encoding one-to-one whatever bytes the IDs contain.
func appendPair(dst []byte, agg, id string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(agg)))
	dst = append(dst, agg...)
	return append(dst, id...)
}
