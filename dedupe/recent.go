package dedupe

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
	set  map[pair]struct{}
	ring []pair // insertion order; ring[next] is the oldest once full
	next int
}

// pair is the set's key. Comparing both strings keeps the set exact: two
// distinct pairs never collide, whatever bytes the IDs contain, so a miss
// is never reported as a hit (a false hit would drop an event).
type pair struct{ agg, id string }

// NewRecent returns a Recent that holds at most capacity pairs. A capacity
// of zero or less holds nothing: Contains always reports false.
func NewRecent(capacity int) *Recent {
	capacity = max(capacity, 0)
	return &Recent{
		set:  make(map[pair]struct{}, capacity),
		ring: make([]pair, 0, capacity),
	}
}

// Contains reports whether the pair (agg, id) is held.
func (r *Recent) Contains(agg, id string) bool {
	_, ok := r.set[pair{agg, id}]
	return ok
}

// Add records the pair (agg, id), evicting the oldest pair when full. Adding
// a pair already held does nothing (it keeps its place in the eviction
// order).
func (r *Recent) Add(agg, id string) {
	if cap(r.ring) == 0 {
		return
	}
	p := pair{agg, id}
	n := len(r.set)
	r.set[p] = struct{}{} // one lookup both tells whether p is held and adds it
	if len(r.set) == n {
		return
	}
	if len(r.ring) < cap(r.ring) {
		r.ring = append(r.ring, p)
		return
	}
	delete(r.set, r.ring[r.next])
	r.ring[r.next] = p
	r.next = (r.next + 1) % len(r.ring)
}

// Len returns the number of pairs held.
func (r *Recent) Len() int { return len(r.set) }

// Reset forgets every pair and keeps the capacity, e.g. when the partition
// is revoked and its events may be applied elsewhere. It drops its
// references to the strings it was given.
func (r *Recent) Reset() {
	clear(r.set)
	clear(r.ring)
	r.ring = r.ring[:0]
	r.next = 0
}
