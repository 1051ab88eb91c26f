package sequencing

import (
	"cmp"
	"fmt"
	"iter"
	"slices"
	"time"
)

// AddResult is the outcome of Buffer.Add.
type AddResult uint8

// Add results.
const (
	// Buffered: the event is held.
	Buffered AddResult = iota
	// Duplicate: an event with the same ID is already buffered for the
	// aggregate (whatever its sequence). Drop the new one and count it as a
	// duplicate.
	Duplicate
	// Conflict: another event (a different ID) is already buffered for the
	// aggregate with the same sequence. Nothing is buffered; the caller
	// sends the new one to the DLQ (reason "sequence_conflict"). The first
	// one keeps the place, as it would have if the gap had filled in between.
	Conflict
	// FullAggregate: the aggregate already holds MaxPerAggregate events.
	// Nothing is buffered; the caller gives up the aggregate's gap and
	// classifies the event again.
	FullAggregate
	// FullPartition: the partition's count or bytes would exceed their
	// bounds (always so for an event larger than MaxBytes). Nothing is
	// buffered; the caller gives up a gap (this aggregate's, or the oldest,
	// see Oldest) or applies the event past its own gap.
	FullPartition
)

// String returns the result's name.
func (r AddResult) String() string {
	switch r {
	case Buffered:
		return "buffered"
	case Duplicate:
		return "duplicate"
	case Conflict:
		return "conflict"
	case FullAggregate:
		return "full_aggregate"
	case FullPartition:
		return "full_partition"
	}
	return fmt.Sprintf("AddResult(%d)", uint8(r))
}

// Buffer is the reorder buffer of one partition: events of any aggregate
// waiting for their predecessors, with the offset of each record so that the
// partition's commit point stays behind them. T is whatever the caller needs
// to apply the event later (the decoded event, its record).
//
// A Buffer is not safe for concurrent use: each partition's goroutine owns
// its own.
type Buffer[T any] struct {
	cfg   Config
	aggs  map[string]*aggregate[T]
	free  []*aggregate[T] // emptied aggregates, reused to avoid allocation
	n     int
	bytes int64
	// offsets holds the offset (and item) of every buffered event, and
	// removed the offsets of events gone since; both are min-heaps and the
	// minimum of offsets that is not at the top of removed is MinOffset
	// (lazy deletion).
	offsets heap[T]
	removed heap[struct{}]
}

// Reuse of emptied aggregates: at most maxFree of them, each keeping an
// entries array of at most maxKeptEntries.
const (
	maxFree        = 1024
	maxKeptEntries = 16
)

type aggregate[T any] struct {
	entries  []entry[T] // entries[head:] are buffered, ascending by seq
	head     int
	bytes    int64
	openedAt time.Time
}

type entry[T any] struct {
	seq    int64
	id     string
	offset int64
	size   int64
	at     time.Time // when it was buffered
	item   T
}

func (a *aggregate[T]) live() []entry[T] { return a.entries[a.head:] }

// find returns the index in live() of the first entry with a sequence >=
// seq, and whether its sequence is seq.
func (a *aggregate[T]) find(seq int64) (int, bool) {
	return slices.BinarySearchFunc(a.live(), seq, func(e entry[T], seq int64) int {
		return cmp.Compare(e.seq, seq)
	})
}

// NewBuffer returns an empty Buffer bounded by cfg; fields of cfg that are
// zero or negative take their defaults (see Config.Validate).
func NewBuffer[T any](cfg Config) *Buffer[T] {
	return &Buffer[T]{cfg: cfg.withDefaults(), aggs: make(map[string]*aggregate[T])}
}

// Holds reports whether the event id of aggregate agg is buffered, in
// O(events buffered for agg).
func (b *Buffer[T]) Holds(agg, id string) bool {
	if b.n == 0 {
		return false
	}
	a := b.aggs[agg]
	return a != nil && slices.ContainsFunc(a.live(), func(e entry[T]) bool { return e.id == id })
}

// Add buffers the event id of aggregate agg with sequence seq, read from the
// record at offset whose size in bytes is size, at time now. The caller adds
// only events Classify says to buffer (seq > expected). The gap timer of agg
// starts at now when agg had nothing buffered. The ID check makes Add
// O(events buffered for agg); the rest is O(log) amortized.
func (b *Buffer[T]) Add(agg string, seq int64, id string, offset int64, size int, now time.Time, item T) AddResult {
	sz := max(int64(size), 0)
	a := b.aggs[agg]
	i := 0
	if a != nil {
		if b.Holds(agg, id) {
			return Duplicate
		}
		var found bool
		if i, found = a.find(seq); found {
			return Conflict
		}
		if len(a.live()) >= b.cfg.MaxPerAggregate {
			return FullAggregate
		}
	}
	if b.n >= b.cfg.MaxPerPartition || sz > b.cfg.MaxBytes-b.bytes {
		return FullPartition
	}
	if a == nil {
		a = b.newAggregate(now)
		b.aggs[agg] = a
	}
	e := entry[T]{seq: seq, id: id, offset: offset, size: sz, at: now, item: item}
	if live := a.live(); i == len(live) {
		if a.head > 0 && len(a.entries) == cap(a.entries) {
			a.compact()
		}
		a.entries = append(a.entries, e)
	} else {
		a.compact()
		a.entries = slices.Insert(a.entries, i, e)
	}
	a.bytes += sz
	b.n++
	b.bytes += sz
	b.offsets.push(offset, item)
	return Buffered
}

func (b *Buffer[T]) newAggregate(now time.Time) *aggregate[T] {
	var a *aggregate[T]
	if n := len(b.free); n > 0 {
		a = b.free[n-1]
		b.free[n-1] = nil
		b.free = b.free[:n-1]
	} else {
		a = new(aggregate[T])
	}
	a.openedAt = now
	return a
}

// compact moves the buffered entries to the front.
func (a *aggregate[T]) compact() {
	if a.head == 0 {
		return
	}
	n := copy(a.entries, a.entries[a.head:])
	clear(a.entries[n:])
	a.entries = a.entries[:n]
	a.head = 0
}

// Pop removes and returns the event buffered for agg with sequence
// expected, if there is one.
func (b *Buffer[T]) Pop(agg string, expected int64) (T, bool) {
	var zero T
	a := b.aggs[agg]
	if a == nil {
		return zero, false
	}
	i, found := a.find(expected)
	if !found {
		return zero, false
	}
	live := a.live()
	e := live[i]
	if i == 0 {
		live[0] = entry[T]{} // release the item
		a.head++
	} else {
		a.entries = slices.Delete(a.entries, a.head+i, a.head+i+1)
	}
	a.bytes -= e.size
	b.n--
	b.bytes -= e.size
	b.removed.push(e.offset, struct{}{})
	if len(a.live()) == 0 {
		b.release(agg, a)
	}
	b.maybeRebuild()
	return e.item, true
}

// release forgets the emptied aggregate a of agg and keeps it for reuse.
func (b *Buffer[T]) release(agg string, a *aggregate[T]) {
	delete(b.aggs, agg)
	if cap(a.entries) > maxKeptEntries {
		a.entries = nil // do not keep a burst's memory around
	} else {
		clear(a.entries[:cap(a.entries)])
		a.entries = a.entries[:0]
	}
	a.head = 0
	a.bytes = 0
	a.openedAt = time.Time{}
	if len(b.free) < maxFree {
		b.free = append(b.free, a)
	}
}

// Lowest returns the lowest sequence buffered for agg.
func (b *Buffer[T]) Lowest(agg string) (seq int64, ok bool) {
	a := b.aggs[agg]
	if a == nil {
		return 0, false
	}
	return a.live()[0].seq, true
}

// Expired appends to dst the aggregates whose gap has been open for
// GapTimeout or longer at now, oldest gap first (ties by name), and returns
// the extended slice.
func (b *Buffer[T]) Expired(now time.Time, dst []string) []string {
	if len(b.aggs) == 0 {
		return dst
	}
	start := len(dst)
	for agg := range b.aggs {
		if b.GapExpired(agg, now) {
			dst = append(dst, agg)
		}
	}
	slices.SortFunc(dst[start:], func(x, y string) int {
		if c := b.aggs[x].openedAt.Compare(b.aggs[y].openedAt); c != 0 {
			return c
		}
		return cmp.Compare(x, y)
	})
	return dst
}

// Oldest returns the aggregate whose gap opened first (ties by name), a
// candidate to give up when the partition is full.
func (b *Buffer[T]) Oldest() (agg string, ok bool) {
	var oldest *aggregate[T]
	for k, a := range b.aggs {
		if oldest == nil || a.openedAt.Before(oldest.openedAt) || (a.openedAt.Equal(oldest.openedAt) && k < agg) {
			agg, oldest = k, a
		}
	}
	return agg, oldest != nil
}

// GiveUp records that the caller gave up agg's gap (and drained what
// followed it): if events stay buffered for agg, behind a further gap, that
// gap's timer runs from when the earliest of them was buffered, not from
// now. A restarted timer would let a producer that skips every other
// sequence hold its first buffered record, and so the partition's commit
// point, for MaxPerAggregate gap timeouts; this way no record is held
// longer than one GapTimeout by timers (GapExpired may then be true at
// once). Without buffered events it does nothing.
func (b *Buffer[T]) GiveUp(agg string) {
	a := b.aggs[agg]
	if a == nil {
		return
	}
	live := a.live()
	a.openedAt = live[0].at
	for _, e := range live[1:] {
		if e.at.Before(a.openedAt) {
			a.openedAt = e.at
		}
	}
}

// GapExpired reports whether agg's gap has been open for GapTimeout or
// longer at now (see Expired).
func (b *Buffer[T]) GapExpired(agg string, now time.Time) bool {
	a := b.aggs[agg]
	return a != nil && now.Sub(a.openedAt) >= b.cfg.GapTimeout
}

// MinOffset returns the lowest offset of any buffered event and that
// event's item: the partition may commit no offset above it (committing
// offset o means "resume at o"). It costs O(1) plus the amortized cleanup of
// removed offsets.
func (b *Buffer[T]) MinOffset() (int64, T, bool) {
	for len(b.removed) > 0 && b.offsets[0].offset == b.removed[0].offset {
		b.offsets.pop()
		b.removed.pop()
	}
	if len(b.offsets) == 0 {
		var zero T
		return 0, zero, false
	}
	return b.offsets[0].offset, b.offsets[0].item, true
}

// All yields the aggregate and item of every buffered event, in no
// particular order. The buffer must not change while it runs.
func (b *Buffer[T]) All() iter.Seq2[string, T] {
	return func(yield func(string, T) bool) {
		for agg, a := range b.aggs {
			for _, e := range a.live() {
				if !yield(agg, e.item) {
					return
				}
			}
		}
	}
}

// Drop forgets every event buffered for agg.
func (b *Buffer[T]) Drop(agg string) {
	a := b.aggs[agg]
	if a == nil {
		return
	}
	for _, e := range a.live() {
		b.removed.push(e.offset, struct{}{})
	}
	b.n -= len(a.live())
	b.bytes -= a.bytes
	b.release(agg, a)
	b.maybeRebuild()
}

// maybeRebuild applies the removed offsets to the offsets heap once they
// outnumber the buffered events, so that both heaps stay within a few times
// the buffer's size (a long-held low offset would otherwise keep every later
// removal waiting).
func (b *Buffer[T]) maybeRebuild() {
	if len(b.removed) <= max(64, b.n) {
		return
	}
	slices.SortFunc(b.offsets, func(x, y heapEntry[T]) int { return cmp.Compare(x.offset, y.offset) })
	slices.SortFunc(b.removed, func(x, y heapEntry[struct{}]) int { return cmp.Compare(x.offset, y.offset) })
	kept := b.offsets[:0]
	j := 0
	for _, e := range b.offsets {
		for j < len(b.removed) && b.removed[j].offset < e.offset {
			j++ // cannot happen: every removed offset was buffered
		}
		if j < len(b.removed) && b.removed[j].offset == e.offset {
			j++
			continue
		}
		kept = append(kept, e)
	}
	clear(b.offsets[len(kept):]) // release the items
	b.offsets = kept             // ascending, so a valid min-heap
	b.removed = b.removed[:0]
}

// Reset forgets every buffered event, as after the partition is revoked.
func (b *Buffer[T]) Reset() {
	clear(b.aggs)
	b.free = b.free[:0]
	b.n, b.bytes = 0, 0
	clear(b.offsets)
	b.offsets = b.offsets[:0]
	b.removed = b.removed[:0]
}

// Len returns the number of buffered events.
func (b *Buffer[T]) Len() int { return b.n }

// Bytes returns the bytes of the buffered events.
func (b *Buffer[T]) Bytes() int64 { return b.bytes }

// heap is a binary min-heap of offsets, each with a value.
type heap[V any] []heapEntry[V]

type heapEntry[V any] struct {
	offset int64
	item   V
}

func (h *heap[V]) push(offset int64, v V) {
	x := heapEntry[V]{offset, v}
	*h = append(*h, x)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if s[p].offset <= x.offset {
			break
		}
		s[i] = s[p]
		i = p
	}
	s[i] = x
}

func (h *heap[V]) pop() {
	s := *h
	n := len(s) - 1
	x := s[n]
	s[n] = heapEntry[V]{} // release the item
	s = s[:n]
	i := 0
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && s[c+1].offset < s[c].offset {
			c++
		}
		if x.offset <= s[c].offset {
			break
		}
		s[i] = s[c]
		i = c
	}
	if n > 0 {
		s[i] = x
	}
	*h = s
}
