package worker

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/topics"
)

// item is one decoded input event: of the batch in hand, or held in the
// reorder buffer (then with its own copy of the record).
type item struct {
	rec  *kgo.Record
	ev   topics.Event
	agg  *aggregate
	skip bool // an unknown type: it takes its place in the sequence and changes nothing else
	seen bool // Redis holds its dedupe mark
	kind itemKind
	// the park an item of kind parkUser starts; for kind heldEvent, the
	// park (its offset) the event was held in
	park    *poisonError
	episode int64
	// at is when the event was put in the reorder buffer (the partition's
	// sequencing clock); kept so that a batch run again after a failure
	// buffers it at its first time, not afresh (partition.reset).
	at time.Time
}

// itemKind says what an item asks of its aggregate (park.go).
type itemKind uint8

const (
	eventItem   itemKind = iota // an input event
	parkUser                    // park the user: its record failed by itself and went to the DLQ
	releaseUser                 // a release control record
	heldEvent                   // an event read back from the parked topic by a release
)

// aggregate is one user's state as the partition knows it. The partition's
// cache holds aggregates from batch to batch.
type aggregate struct {
	id      string
	key     []byte // id as bytes: the key of every output record, shared by them
	version int64  // stored version the state was loaded at (0: none stored)
	loaded  bool
	// checkMarks is set when a write of this aggregate was rejected for
	// a mark that already existed (an applied event ID sent again above
	// the last sequence): every event of it then has its mark read
	// before the write (load.go).
	checkMarks bool
	st         processors.State
	// change is this aggregate's entry in the batch in hand, plus one; 0
	// when the batch has not touched it.
	change int
	// releasing is set while the batch in hand releases the park at
	// releaseEpisode (park.go).
	releasing      bool
	releaseEpisode int64
}

// change is what the batch in hand does to one aggregate.
type change struct {
	agg *aggregate
	// changed reports that the state changed: it is persisted with marks.
	changed bool
	// marks are the IDs of the events applied, whose dedupe marks are
	// written with the state.
	marks []string
	// applied holds the marks too once there are more than linearMarks of
	// them, so that a user with many events in one batch is not checked
	// against each of its earlier ones
	applied map[string]struct{}
	// last is the last event applied, the cause of the coalesced
	// aggregated output; nil when none was.
	last *item
}

// batch is the work of one batch of one partition: its items, the
// aggregates it touched and their changes, and its outputs. It is reused
// from batch to batch, and so is the memory of its output records and
// values: the client holds them only until the produce returns.
type batch struct {
	items []item
	// segments holds the items of the polls merged before the newest
	// (merge.go)
	segments [][]item
	changes  []*change // reused: the entries past len keep their memory

	// what load asks the store for
	need      []string
	marks     []state.Mark
	markItems []int // the item of each mark
	later     []int // items whose mark read waits for their aggregate's state

	out      []*kgo.Record
	outTimes []time.Time // input record timestamps, for end-to-end latency
	vals     pieces      // the value of each output, one entry per out; a DLQ record carries its own
	slabs    recordSlabs
	scratch  []byte // where an output value is encoded before emit copies it

	states pieces // the binary state of each write
	writes []state.Write
	owners []*aggregate

	// unbuffered are the events the batch took out of the
	// reorder buffer: a failed attempt runs them again (partition.reset)
	unbuffered []*item

	dlqCount   map[string]int
	releases   []*aggregate // the users the batch releases (park.go)
	releasedAt []parkedAt   // and those whose park it cleared
	n          tally
	oversize   *poisonError // the first output that could not be produced, and the record that caused it
}

// touch returns a's change in the batch, adding one if the batch has not
// touched a yet.
func (b *batch) touch(a *aggregate) *change {
	if a.change > 0 {
		return b.changes[a.change-1]
	}
	var c *change
	if n := len(b.changes); n < cap(b.changes) {
		c = b.changes[:n+1][n]
	}
	if c == nil {
		c = new(change)
	}
	clear(c.applied)
	*c = change{agg: a, marks: c.marks[:0], applied: c.applied} // keep the marks' memory
	b.changes = append(b.changes, c)
	a.change = len(b.changes)
	return c
}

// keptMarks bounds the marks whose memory a change keeps for the next
// batch.
const keptMarks = 256

// linearMarks is how many marks a change looks through one by one; past
// it, they are kept in a set as well.
const linearMarks = 16

// mark records that the event id was applied to the change's aggregate.
func (c *change) mark(id string) {
	c.marks = append(c.marks, id)
	switch n := len(c.marks); {
	case n > linearMarks+1:
		c.applied[id] = struct{}{}
	case n == linearMarks+1:
		if c.applied == nil {
			c.applied = make(map[string]struct{}, 2*n)
		}
		for _, m := range c.marks {
			c.applied[m] = struct{}{}
		}
	}
}

// marked reports whether the event id was applied to the change's
// aggregate in this batch.
func (c *change) marked(id string) bool {
	if len(c.marks) > linearMarks {
		_, ok := c.applied[id]
		return ok
	}
	return slices.Contains(c.marks, id)
}

// reset forgets the previous batch, keeping its memory.
func (b *batch) reset() {
	for _, c := range b.changes {
		c.agg.change = 0
		clear(c.marks)
		c.agg, c.last = nil, nil
		if len(c.marks) > keptMarks { // one hot user's batch: do not hold its memory for good
			c.marks, c.applied = nil, nil
		}
	}
	b.changes = b.changes[:0]
	b.oversize = nil
	clear(b.items)
	b.items = b.items[:0]
	b.resetSegments()
	clear(b.need[:cap(b.need)])
	clear(b.marks[:cap(b.marks)])
	clear(b.out)
	b.out = b.out[:0]
	b.outTimes = b.outTimes[:0]
	b.vals.reset()
	b.slabs.reset()
	clear(b.unbuffered)
	b.unbuffered = b.unbuffered[:0]
	clear(b.dlqCount)
	clear(b.releases)
	b.releases, b.releasedAt = b.releases[:0], b.releasedAt[:0]
	b.n = tally{}
}

// pieces holds byte strings appended back to back into one reused buffer.
// The buffer moves while it grows, so the pieces are sliced out only once
// it is complete.
type pieces struct {
	buf  []byte
	ends []int // where each entry's piece ends in buf; -1: no piece
}

func (p *pieces) reset() { p.buf, p.ends = p.buf[:0], p.ends[:0] }

// add appends v as the next entry.
func (p *pieces) add(v []byte) {
	p.buf = append(p.buf, v...)
	p.end()
}

// end closes the piece appended to buf since the previous entry.
func (p *pieces) end() { p.ends = append(p.ends, len(p.buf)) }

// skip adds an entry without a piece.
func (p *pieces) skip() { p.ends = append(p.ends, -1) }

// each calls f with the index and the bytes of every entry with a piece.
func (p *pieces) each(f func(i int, b []byte)) {
	start := 0
	for i, end := range p.ends {
		if end < 0 {
			continue
		}
		f(i, p.buf[start:end:end])
		start = end
	}
}

// recordSlabs hands out output records from fixed-size chunks, reused
// from batch to batch, so that a batch's outputs cost no allocation once
// the chunks exist. A chunk never grows, so the records keep their
// addresses while the client holds them.
type recordSlabs struct {
	chunks [][]kgo.Record
	used   int // records handed out in this batch
}

const slabSize = 256

func (s *recordSlabs) next() *kgo.Record {
	c, i := s.used/slabSize, s.used%slabSize
	if c == len(s.chunks) {
		s.chunks = append(s.chunks, make([]kgo.Record, slabSize))
	}
	s.used++
	r := &s.chunks[c][i]
	*r = kgo.Record{}
	return r
}

// reset makes every record available again; call it only once the client
// is done with them.
func (s *recordSlabs) reset() { s.used = 0 }

// tally counts what a batch did; it reaches the metrics only once the batch
// is done, so a batch run again after a failure is counted once.
type tally struct {
	consumed, keyMismatch, skipped, duplicates, late, processed, stale, milestones, gaps int
	held, parked, released                                                               int
	anomalies                                                                            [2]int // high, critical
}

// flush adds the batch's tally and DLQ counts to the metrics.
func (b *batch) flush(m *metrics, topic string) {
	n := &b.n
	add := func(c *prometheus.CounterVec, v int, labels ...string) {
		if v > 0 {
			c.WithLabelValues(labels...).Add(float64(v))
		}
	}
	add(m.consumed, n.consumed, topic)
	add(m.keyMismatch, n.keyMismatch, topic)
	add(m.skipped, n.skipped, topic, "unknown_type")
	add(m.duplicates, n.duplicates, topic)
	add(m.late, n.late, topic)
	add(m.processed, n.processed, topic)
	add(m.stale, n.stale, topic)
	add(m.gaps, n.gaps, topic)
	add(m.held, n.held, topic)
	add(m.parked, n.parked, topic)
	add(m.released, n.released, topic)
	add(m.anomalies, n.anomalies[0], processors.SeverityHigh)
	add(m.anomalies, n.anomalies[1], processors.SeverityCritical)
	if n.milestones > 0 {
		m.milestones.Add(float64(n.milestones))
	}
	for reason, c := range b.dlqCount {
		m.dlq.WithLabelValues(reason).Add(float64(c))
	}
}
