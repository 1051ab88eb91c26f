package dedupe

import (
	"hash/maphash"
	"math"
)

// Recent is a bounded in-memory set of recently applied (aggregate, event ID)
// pairs of one partition, evicting the oldest entry first when full. It lets
// the runtime drop a redelivered event without asking Redis; a miss proves
// nothing (the authoritative marks are in Redis), so only add a pair once
// its effect is durable.
//
// Contains, Add and Len are O(1) and do not allocate. Add keeps the strings
// it is given rather than copying them, so they stay reachable until the
// pair is evicted: pass strings the caller holds anyway (an aggregate's ID,
// a decoded event ID), not views into a large or reused buffer. Recent is
// not safe for concurrent use: it belongs to one partition's goroutine.
type Recent struct {
	seed  maphash.Seed
	index map[uint64]int32 // hash of a pair -> its slot in ring
	ring  []entry          // insertion order; ring[next] is the oldest once full
	next  int
	// hashOf, when set (only by tests), replaces hash.
	hashOf func(agg, id string) uint64
}

// entry is a pair with its hash. The index is keyed by the hash alone, so
// that a lookup hashes two strings into an integer key; the pair in the slot
// it points to is then compared in full, which keeps the set exact: a pair
// whose hash collides with another's is reported missing (a miss proves
// nothing), never present (a false hit would drop an event).
type entry struct {
	agg, id string
	h       uint64
}

// NewRecent returns a Recent that holds at most capacity pairs. A capacity
// of zero or less holds nothing: Contains always reports false.
func NewRecent(capacity int) *Recent {
	capacity = min(max(capacity, 0), math.MaxInt32)
	return &Recent{
		seed:  maphash.MakeSeed(),
		index: make(map[uint64]int32, capacity),
		ring:  make([]entry, 0, capacity),
	}
}

// hash returns the index key of the pair (agg, id).
func (r *Recent) hash(agg, id string) uint64 {
	if r.hashOf != nil {
		return r.hashOf(agg, id)
	}
	// Odd multiplier: the key is a bijection of the ID's hash for each
	// aggregate, so pairs of one aggregate collide only when their IDs'
	// hashes do.
	return maphash.String(r.seed, agg)*0x9e3779b97f4a7c15 ^ maphash.String(r.seed, id)
}

// Contains reports whether the pair (agg, id) is held.
func (r *Recent) Contains(agg, id string) bool {
	if cap(r.ring) == 0 {
		return false
	}
	i, ok := r.index[r.hash(agg, id)]
	return ok && r.ring[i].id == id && r.ring[i].agg == agg
}

// Add records the pair (agg, id), evicting the oldest pair when full. Adding
// a pair already held does nothing (it keeps its place in the eviction
// order); neither does adding a pair whose hash collides with a held one's.
func (r *Recent) Add(agg, id string) {
	if cap(r.ring) == 0 {
		return
	}
	h := r.hash(agg, id)
	if _, ok := r.index[h]; ok {
		return
	}
	e := entry{agg, id, h}
	if len(r.ring) < cap(r.ring) {
		r.index[h] = int32(len(r.ring))
		r.ring = append(r.ring, e)
		return
	}
	delete(r.index, r.ring[r.next].h)
	r.index[h] = int32(r.next)
	r.ring[r.next] = e
	r.next = (r.next + 1) % len(r.ring)
}

// Len returns the number of pairs held.
func (r *Recent) Len() int { return len(r.index) }

// Reset forgets every pair and keeps the capacity, e.g. when the partition
// is revoked and its events may be applied elsewhere. It drops its
// references to the strings it was given.
func (r *Recent) Reset() {
	clear(r.index)
	clear(r.ring)
	r.ring = r.ring[:0]
	r.next = 0
}
