package worker

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/sequencing"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/topics"
)

// queueDepth bounds the batches handed to a partition goroutine; at
// pauseDepth queued batches the partition's fetching is paused, and it
// resumes once the goroutine takes the queued batch. One batch waiting
// while one is processed keeps the goroutine busy; more would only hold
// fetched records in memory (measured: peak RSS 662 -> 533 MB at 1M users,
// same throughput).
const (
	queueDepth  = 16
	pauseDepth  = 1
	resumeDepth = 0
)

// errConflict reports that Redis rejected a state write: another owner
// wrote the aggregate (a zombie is fenced) or an event was already marked.
var errConflict = errors.New("state write rejected by Redis")

// partition owns one assigned input partition: its goroutine is the only
// one that touches the fields below the "goroutine-owned" line.
type partition struct {
	w     *Worker
	id    int32
	topic string

	queue   chan batch
	stopC   chan struct{}
	doneC   chan struct{}
	ctx     context.Context
	cancel  context.CancelFunc
	pauseMu sync.Mutex // makes the paused flag and the client's pause state change together
	paused  bool

	progress   sync.Mutex // guards the fields below it up to the line
	doneOffset int64      // everything below it is done; -1 before the first batch
	doneEpoch  int32
	hwm        int64
	oldest     time.Time   // timestamp of the oldest record not yet done; zero if none
	pendingTS  []time.Time // first record timestamp of each batch queued or in hand
	buffered   int
	bufBytes   int64

	committed int64 // last committed offset; guarded by Worker.commitMu

	// goroutine-owned
	dec      topics.Decoder
	proc     *processors.Processor
	buf      *sequencing.Buffer[*pending]
	held     map[int64]*pending // the buffered events by offset
	recent   *dedupe.Recent
	cache    map[string]*aggregate
	next     int64 // offset after the last record handed to process
	faulting bool  // retrying a failed Redis or Kafka call
	headers  []topics.Header
	b        batchState
}

// batch is one poll's records of the partition.
type batch struct {
	recs []*kgo.Record
	hwm  int64
}

// pending is a decoded event waiting to be applied.
type pending struct {
	rec  *kgo.Record
	ev   topics.Event
	skip bool // an unknown type: it takes its place in the sequence and changes nothing else
	seen bool // Redis holds its dedupe mark
	agg  *aggregate
}

// aggregate is one user's state as this partition knows it.
type aggregate struct {
	id      string
	version int64 // stored version the state was loaded at (0: none stored)
	loaded  bool
	st      processors.State

	key []byte // id as bytes: the key of every output record, shared by them

	// per batch
	touched bool
	marks   []string
	last    *pending // last event applied in this batch
}

// batchState is the work of one batch; it is reused between batches, and
// so are the memory of its output records and values: the client holds
// them only until ProduceSync returns.
type batchState struct {
	items    []pending
	aggs     []*aggregate // aggregates touched or loaded in this batch
	out      []*kgo.Record
	outTimes []time.Time // input record timestamps, for end-to-end latency
	dlqCount map[string]int
	n        tally

	// vals holds the encoded value of each output, one entry per out
	// (a DLQ record carries its own value: its entry is skipped); states
	// the binary state of each write.
	vals   pieces
	slabs  recordSlabs
	states pieces
	writes []state.Write
	owners []*aggregate
}

// pieces holds byte strings appended back to back into one reused buffer.
// The buffer moves while it grows, so the pieces are sliced out only once
// it is complete.
type pieces struct {
	buf  []byte
	ends []int // where each entry's piece ends in buf; -1: no piece
}

func (p *pieces) reset() { p.buf, p.ends = p.buf[:0], p.ends[:0] }

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
	anomalies                                                                            [2]int // high, critical
}

func (p *partition) flushTally() {
	m, n, t := p.w.m, &p.b.n, p.topic
	add := func(c *prometheus.CounterVec, v int, labels ...string) {
		if v > 0 {
			c.WithLabelValues(labels...).Add(float64(v))
		}
	}
	add(m.consumed, n.consumed, t)
	add(m.keyMismatch, n.keyMismatch, t)
	add(m.skipped, n.skipped, t, "unknown_type")
	add(m.duplicates, n.duplicates, t)
	add(m.late, n.late, t)
	add(m.processed, n.processed, t)
	add(m.stale, n.stale, t)
	add(m.gaps, n.gaps, t)
	add(m.anomalies, n.anomalies[0], processors.SeverityHigh)
	add(m.anomalies, n.anomalies[1], processors.SeverityCritical)
	if n.milestones > 0 {
		m.milestones.Add(float64(n.milestones))
	}
	for reason, c := range p.b.dlqCount {
		m.dlq.WithLabelValues(reason).Add(float64(c))
	}
}

func newPartition(w *Worker, id int32) *partition {
	proc, _ := processors.New(w.opts.Processors) // validated in New
	ctx, cancel := context.WithCancel(w.abort)
	p := &partition{
		w:          w,
		id:         id,
		topic:      w.opts.Topics.Input,
		queue:      make(chan batch, queueDepth),
		stopC:      make(chan struct{}),
		doneC:      make(chan struct{}),
		ctx:        ctx,
		cancel:     cancel,
		doneOffset: -1,
		committed:  -1,
		next:       -1,
		dec:        topics.Decoder{MaxBytes: w.opts.MaxInputBytes},
		proc:       proc,
		buf:        sequencing.NewBuffer[*pending](w.opts.Sequencing),
		held:       make(map[int64]*pending),
		recent:     dedupe.NewRecent(w.opts.RecentSize),
		cache:      make(map[string]*aggregate),
	}
	p.b.dlqCount = make(map[string]int)
	return p
}

// enqueue hands a poll's records to the goroutine; it never blocks the poll
// loop for long: at pauseDepth queued batches fetching pauses.
func (p *partition) enqueue(recs []*kgo.Record, hwm int64) {
	p.progress.Lock()
	p.hwm = hwm
	if len(recs) > 0 {
		p.pendingTS = append(p.pendingTS, recs[0].Timestamp)
		if p.oldest.IsZero() {
			p.oldest = recs[0].Timestamp
		}
	}
	p.progress.Unlock()
	if len(recs) == 0 {
		return
	}
	select {
	case p.queue <- batch{recs: recs, hwm: hwm}:
	case <-p.doneC:
		return
	}
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	if len(p.queue) >= pauseDepth {
		p.pauseLocked()
	}
}

// pauseLocked pauses fetching; the caller holds pauseMu.
func (p *partition) pauseLocked() {
	if !p.paused {
		p.paused = true
		p.w.cl.PauseFetchPartitions(map[string][]int32{p.topic: {p.id}})
	}
}

// run processes batches until stopped. On stop it finishes the batch in
// hand and drops the queued ones: they are not committed, so the next owner
// reads them again.
func (p *partition) run() {
	defer close(p.doneC)
	tick := time.NewTicker(max(p.w.opts.Sequencing.GapTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-p.stopC:
			return
		case <-p.ctx.Done():
			return
		case b := <-p.queue:
			p.maybeResume()
			p.process(b.recs)
		case <-tick.C:
			if p.buf.Len() > 0 {
				p.process(nil) // give up expired gaps
			}
		}
	}
}

// maybeResume resumes fetching when the partition paused it and is neither
// behind on queued batches nor retrying a failed call.
func (p *partition) maybeResume() {
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	if p.paused && !p.faulting && len(p.queue) <= resumeDepth {
		p.paused = false
		p.w.cl.ResumeFetchPartitions(map[string][]int32{p.topic: {p.id}})
	}
}

// stopAndWait asks the goroutine to finish its batch and waits for it.
func (p *partition) stopAndWait() {
	select {
	case <-p.stopC:
	default:
		close(p.stopC)
	}
	<-p.doneC
	p.cancel()
	if p.faulting { // the goroutine has exited: its fields are ours now
		p.faulting = false
		p.w.faulting.Add(-1)
	}
}

// committable returns the offset to commit: every record below it is done.
func (p *partition) committable() (kgo.EpochOffset, bool) {
	p.progress.Lock()
	defer p.progress.Unlock()
	return kgo.EpochOffset{Epoch: p.doneEpoch, Offset: p.doneOffset}, p.doneOffset >= 0
}

// process runs one batch through the pipeline. A nil batch only gives up
// expired gaps. It returns when the batch is done or the partition is
// cancelled; an abandoned batch is simply not marked done.
func (p *partition) process(recs []*kgo.Record) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		err := p.processOnce(recs)
		if err == nil {
			break
		}
		if p.ctx.Err() != nil {
			return
		}
		// Redis rejected a write (this partition's view of an aggregate
		// is stale) or a call failed in a way retrying in place cannot
		// mend. Never skip the batch: rebuild the partition's state from
		// Redis and run the unfinished records again; dedupe marks make
		// that safe.
		p.w.m.partitionResets.Inc()
		if errors.Is(err, errConflict) {
			p.w.log.Warn("state write rejected; rebuilding partition state from Redis",
				"partition", p.id, "attempt", attempt+1)
		} else {
			p.fault(true, "batch", err)
		}
		recs = p.reset(recs)
		if !p.sleep(backoff(p.w.opts.RetryInitial, p.w.opts.RetryMax, attempt)) {
			return
		}
	}
	p.fault(false, "batch", nil)
	if len(recs) > 0 {
		p.w.m.batchSeconds.Observe(time.Since(start).Seconds())
	}
}

// reset forgets every aggregate, buffered event and remembered ID, and
// returns the records still to do: the buffered ones and recs, in offset
// order.
func (p *partition) reset(recs []*kgo.Record) []*kgo.Record {
	var again []*kgo.Record
	for _, pd := range p.held {
		again = append(again, pd.rec)
	}
	again = append(again, recs...)
	slices.SortFunc(again, func(a, b *kgo.Record) int { return cmp.Compare(a.Offset, b.Offset) })
	again = slices.CompactFunc(again, func(a, b *kgo.Record) bool { return a.Offset == b.Offset })
	p.buf.Reset()
	clear(p.held)
	clear(p.cache)
	p.recent.Reset()
	return again
}

func (p *partition) processOnce(recs []*kgo.Record) error {
	b := &p.b
	p.resetBatch()
	now := p.w.opts.Now()
	for _, r := range recs {
		p.decode(r)
	}
	if err := p.load(); err != nil {
		return err
	}
	for i := range b.items {
		p.sequence(&b.items[i], now)
	}
	p.expireGaps(now)
	if p.w.opts.CoalesceAggregates {
		for _, a := range b.aggs {
			if a.last != nil {
				p.emitAggregate(a, a.last)
			}
		}
	}
	if err := p.produce(); err != nil {
		return err
	}
	if err := p.persist(); err != nil {
		return err
	}
	p.flushTally()
	if n := len(recs); n > 0 {
		p.next = recs[n-1].Offset + 1
	}
	p.markDone(recs)
	p.evict()
	return nil
}

func (p *partition) resetBatch() {
	b := &p.b
	for _, a := range b.aggs {
		a.touched, a.marks, a.last = false, a.marks[:0], nil
	}
	clear(b.items)
	b.items = b.items[:0]
	b.aggs = b.aggs[:0]
	clear(b.out)
	b.out = b.out[:0]
	b.outTimes = b.outTimes[:0]
	b.vals.reset()
	b.slabs.reset()
	clear(b.dlqCount)
	b.n = tally{}
}

// decode validates one record; bad ones go to the DLQ, unknown types are
// skipped or sent to the DLQ by policy.
func (p *partition) decode(r *kgo.Record) {
	p.b.n.consumed++
	p.headers = p.headers[:0]
	for _, h := range r.Headers {
		p.headers = append(p.headers, topics.Header{Key: h.Key, Value: h.Value})
	}
	ev, err := p.dec.Decode(&topics.Record{Key: r.Key, Value: r.Value, Headers: p.headers, Timestamp: r.Timestamp})
	if err != nil {
		var verr *topics.ValidationError
		reason := "invalid"
		if errors.As(err, &verr) {
			reason = string(verr.Reason)
		}
		p.dlq(r, "", reason, err.Error(), "decoder")
		return
	}
	if ev.KeyMismatch {
		p.b.n.keyMismatch++
	}
	skip := false
	if ev.Type != topics.TypeUserActivity {
		if p.w.opts.UnknownTypes == UnknownDLQ {
			p.dlq(r, ev.ID, "unknown_type", "unknown event type "+ev.Type, "decoder")
			return
		}
		if ev.Sequence == 0 {
			p.b.n.skipped++
			return
		}
		skip = true // sequenced: it still takes its place in the sequence
	}
	p.b.items = append(p.b.items, pending{rec: r, ev: ev, skip: skip})
}

// load fetches, in one Redis round trip, the state of every aggregate of the
// batch not in the cache and the dedupe marks of every event that might
// have been applied already. An event whose sequence is at or above its
// aggregate's expected one cannot have been applied, so it needs no check.
func (p *partition) load() error {
	b := &p.b
	var need []string
	var marks []stateMark
	for i := range b.items {
		it := &b.items[i]
		a := p.cache[it.ev.AggregateID]
		if a == nil {
			a = &aggregate{id: it.ev.AggregateID}
			p.cache[a.id] = a
		}
		it.agg = a
		if !a.touched {
			a.touched = true // "in this batch"; reset below
			b.aggs = append(b.aggs, a)
			if !a.loaded {
				need = append(need, a.id)
			}
		}
		if p.recent.Contains(a.id, it.ev.ID) {
			continue
		}
		if !a.loaded || it.ev.Sequence == 0 || it.ev.Sequence <= a.st.LastSequence {
			marks = append(marks, stateMark{Aggregate: a.id, EventID: it.ev.ID, item: i})
		}
	}
	for _, a := range b.aggs {
		a.touched = false
	}
	if len(need) == 0 && len(marks) == 0 {
		return nil
	}
	snaps, seen, err := p.fetch(need, marks)
	if err != nil {
		return err
	}
	for i, id := range need {
		a := p.cache[id]
		a.version = snaps[i].Version
		a.st = processors.State{}
		if len(snaps[i].Data) > 0 {
			if err := a.st.UnmarshalBinary(snaps[i].Data); err != nil {
				// A state this build cannot read must not be
				// overwritten: the partition stops here, retrying
				// and not ready, until a person looks.
				p.w.log.Error("unreadable stored state", "partition", p.id, "aggregate", id, "err", err)
				return err
			}
		}
		a.loaded = true
	}
	for i, mk := range marks {
		b.items[mk.item].seen = seen[i]
	}
	return nil
}

// sequence applies, buffers, or drops one event (DESIGN §6).
func (p *partition) sequence(it *pending, now time.Time) {
	a := it.agg
	// Seen in Redis, recently applied, or applied earlier in this batch (the
	// recent front is bounded, a batch's own marks are not).
	if it.seen || p.recent.Contains(a.id, it.ev.ID) || slices.Contains(a.marks, it.ev.ID) {
		p.b.n.duplicates++
		return
	}
	seq := it.ev.Sequence
	if seq == 0 {
		p.apply(a, it)
		return
	}
	for {
		expected := a.st.LastSequence + 1
		switch {
		case seq == expected:
			p.apply(a, it)
			p.drain(a)
			return
		case seq < expected:
			p.b.n.late++
			p.dlq(it.rec, it.ev.ID, "late", "sequence "+itoa(seq)+" is below the expected "+itoa(expected)+
				" and the event was never applied (its gap was given up)", "sequencer")
			return
		}
		pd := new(pending)
		*pd = *it
		// A held record must not pin its whole fetch buffer.
		pd.rec = cloneRecord(it.rec)
		switch p.buf.Add(a.id, seq, it.ev.ID, it.rec.Offset, len(it.rec.Value), now, pd) {
		case sequencing.Buffered:
			p.held[it.rec.Offset] = pd
			return
		case sequencing.Duplicate:
			p.b.n.duplicates++
			return
		case sequencing.Conflict:
			p.dlq(it.rec, it.ev.ID, "sequence_conflict", "another event with sequence "+itoa(seq)+" is already buffered", "sequencer")
			return
		case sequencing.FullAggregate:
			p.giveUp(a, now)
		case sequencing.FullPartition:
			// The partition's buffer is full: give up its oldest gap.
			victim, _ := p.buf.Oldest()
			p.giveUp(p.cache[victim], now)
		}
	}
}

// apply runs the processors for one event and queues its outputs.
func (p *partition) apply(a *aggregate, it *pending) {
	a.touched = true
	a.marks = append(a.marks, it.ev.ID)
	p.recent.Add(a.id, it.ev.ID)
	if it.skip {
		a.st.AdvanceSequence(it.ev.Sequence)
		p.b.n.skipped++
		return
	}
	a.last = it
	eff := p.proc.Apply(&a.st, &it.ev)
	p.b.n.processed++
	if !eff.RateCounted {
		p.b.n.stale++
	}
	names := &p.w.opts.Topics
	b := &p.b
	if count := eff.Milestone; count > 0 {
		d := topics.MilestoneData{UserID: a.id, Milestone: "activity", Count: count}
		meta := topics.MetaFor(&it.ev, topics.MilestoneID(a.id, count))
		b.vals.buf = topics.AppendMilestone(b.vals.buf, meta, &d)
		p.output(names.Milestones, it)
		b.n.milestones++
	}
	if eff.Anomaly != nil {
		meta := topics.MetaFor(&it.ev, topics.AnomalyID(a.id, it.ev.ID))
		b.vals.buf = topics.AppendAnomaly(b.vals.buf, meta, eff.Anomaly)
		p.output(names.Anomalies, it)
		if eff.Anomaly.Severity == processors.SeverityCritical {
			b.n.anomalies[1]++
		} else {
			b.n.anomalies[0]++
		}
	}
	if !p.w.opts.CoalesceAggregates {
		p.emitAggregate(a, it)
	}
}

// drain applies the buffered successors of a's last sequence.
func (p *partition) drain(a *aggregate) {
	for {
		pd, ok := p.pop(a)
		if !ok {
			return
		}
		p.apply(a, pd)
	}
}

// pop removes a's buffered event with the expected sequence, if any.
func (p *partition) pop(a *aggregate) (*pending, bool) {
	pd, ok := p.buf.Pop(a.id, a.st.LastSequence+1)
	if ok {
		delete(p.held, pd.rec.Offset)
	}
	return pd, ok
}

// giveUp skips a's gap: it records the gap, moves the expected sequence to
// the lowest buffered one and applies what follows contiguously.
func (p *partition) giveUp(a *aggregate, now time.Time) {
	lowest, ok := p.buf.Lowest(a.id)
	if !ok {
		return
	}
	expected := a.st.LastSequence + 1
	a.st.LastSequence = lowest - 1
	a.touched = true
	first, _ := p.pop(a)
	d := topics.GapData{AggregateID: a.id, Expected: expected, ResumedAt: lowest, Skipped: lowest - expected}
	meta := topics.MetaFor(&first.ev, topics.GapID(a.id, expected, lowest))
	p.b.vals.buf = topics.AppendGap(p.b.vals.buf, meta, &d)
	p.output(p.w.opts.Topics.Gaps, first)
	p.b.n.gaps++
	p.w.log.Info("sequence gap given up", "partition", p.id, "aggregate", a.id,
		"expected", expected, "resumed_at", lowest, "offset", first.rec.Offset, "event_id", first.ev.ID)
	p.apply(a, first)
	p.drain(a)
	p.buf.GiveUp(a.id, now)
}

// expireGaps gives up every gap open longer than the gap timeout.
func (p *partition) expireGaps(now time.Time) {
	for _, id := range p.buf.Expired(now, nil) {
		a := p.cache[id]
		if a == nil {
			continue
		}
		if !slices.Contains(p.b.aggs, a) {
			p.b.aggs = append(p.b.aggs, a)
		}
		p.giveUp(a, now)
	}
}

func (p *partition) emitAggregate(a *aggregate, it *pending) {
	meta := topics.MetaFor(&it.ev, topics.AggregateID(a.id, it.ev.ID))
	p.b.vals.buf = a.st.AppendAggregated(p.b.vals.buf, meta, a.id)
	p.output(p.w.opts.Topics.Aggregates, it)
}

// output queues one output record caused by it, whose value was just
// appended to the batch's vals.buf.
func (p *partition) output(topic string, it *pending) {
	b := &p.b
	a := it.agg
	if a.key == nil {
		a.key = []byte(a.id)
	}
	r := b.slabs.next()
	r.Topic, r.Key = topic, a.key
	if it.ev.TraceParent != "" {
		r.Headers = []kgo.RecordHeader{{Key: "traceparent", Value: []byte(it.ev.TraceParent)}}
	}
	b.out = append(b.out, r)
	b.vals.end()
	b.outTimes = append(b.outTimes, it.rec.Timestamp)
}

// dlq queues the original record for the dead-letter topic with the reason;
// eventID is empty when the record did not decode.
func (p *partition) dlq(r *kgo.Record, eventID, reason, detail, processor string) {
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+6)
	hs = append(hs, r.Headers...)
	hs = append(hs,
		kgo.RecordHeader{Key: "dlq.reason", Value: []byte(reason)},
		kgo.RecordHeader{Key: "dlq.error", Value: []byte(detail)},
		kgo.RecordHeader{Key: "dlq.processor", Value: []byte(processor)},
		kgo.RecordHeader{Key: "dlq.topic", Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: "dlq.partition", Value: []byte(itoa(int64(r.Partition)))},
		kgo.RecordHeader{Key: "dlq.offset", Value: []byte(itoa(r.Offset))},
	)
	p.b.out = append(p.b.out, &kgo.Record{Topic: p.w.opts.Topics.DLQ, Key: r.Key, Value: r.Value, Headers: hs})
	p.b.vals.skip()
	p.b.outTimes = append(p.b.outTimes, r.Timestamp)
	p.b.dlqCount[reason]++
	p.w.log.Warn("record sent to the DLQ", "partition", r.Partition, "offset", r.Offset, "event_id", eventID,
		"reason", reason, "processor", processor, "error", detail)
}

// produce sends every queued output and waits for all acknowledgements,
// retrying failed records with backoff until they are acknowledged or the
// partition is cancelled.
func (p *partition) produce() error {
	b := &p.b
	if len(b.out) == 0 {
		return nil
	}
	b.vals.each(func(i int, v []byte) { b.out[i].Value = v })
	todo := b.out
	for attempt := 0; ; attempt++ {
		results := p.w.cl.ProduceSync(p.ctx, todo...)
		var failed []*kgo.Record
		var firstErr error
		for _, res := range results {
			if res.Err != nil {
				failed = append(failed, res.Record)
				firstErr = res.Err
			}
		}
		if len(failed) == 0 {
			break
		}
		if p.ctx.Err() != nil {
			return p.ctx.Err()
		}
		p.w.m.produceErrors.Add(float64(len(failed)))
		p.fault(true, "produce", firstErr)
		if !p.sleep(backoff(p.w.opts.RetryInitial, p.w.opts.RetryMax, attempt)) {
			return p.ctx.Err()
		}
		todo = failed
	}
	p.fault(false, "produce", nil)
	acked := time.Now()
	for i, r := range b.out {
		p.w.m.outputs.WithLabelValues(r.Topic).Inc()
		if ts := b.outTimes[i]; !ts.IsZero() {
			p.w.m.endToEnd.Observe(acked.Sub(ts).Seconds())
		}
	}
	return nil
}

// markDone moves the partition's commit point: past every record of the
// batch, but never past a record still held in the reorder buffer.
func (p *partition) markDone(recs []*kgo.Record) {
	p.progress.Lock()
	defer p.progress.Unlock()
	if n := len(recs); n > 0 {
		p.doneEpoch = recs[n-1].LeaderEpoch
	}
	if p.next >= 0 {
		p.doneOffset = p.next
	}
	if len(recs) > 0 && len(p.pendingTS) > 0 {
		p.pendingTS = p.pendingTS[1:]
	}
	p.oldest = time.Time{}
	if len(p.pendingTS) > 0 {
		p.oldest = p.pendingTS[0]
	}
	if off, ok := p.buf.MinOffset(); ok {
		p.doneOffset = off
		if pd, ok := p.held[off]; ok {
			p.oldest = pd.rec.Timestamp
		}
	}
	p.buffered = p.buf.Len()
	p.bufBytes = p.buf.Bytes()
}

// evict keeps the cache within its share of state.cache_size. Aggregates
// with buffered events stay: their expected sequence lives here.
func (p *partition) evict() {
	if p.w.opts.CacheSize < 0 {
		for id := range p.cache {
			if _, ok := p.buf.Lowest(id); !ok {
				delete(p.cache, id)
			}
		}
		return
	}
	// The worker's cache is shared evenly by its partitions.
	capacity := max(p.w.opts.CacheSize/max(int(p.w.owned.Load()), 1), 1024)
	if len(p.cache) <= capacity {
		return
	}
	target := capacity * 9 / 10
	for id := range p.cache {
		if len(p.cache) <= target {
			return
		}
		if _, ok := p.buf.Lowest(id); !ok {
			delete(p.cache, id)
		}
	}
}

// fault records whether the partition is retrying a failed call: fetching
// pauses and the worker reports not ready until the call succeeds.
func (p *partition) fault(on bool, op string, err error) {
	if on {
		p.pauseMu.Lock()
		p.pauseLocked()
		p.pauseMu.Unlock()
		if !p.faulting {
			p.faulting = true
			p.w.faulting.Add(1)
		}
		p.w.log.Warn("retrying", "partition", p.id, "op", op, "err", err)
		return
	}
	if p.faulting {
		p.faulting = false
		p.w.faulting.Add(-1)
		p.w.log.Info("recovered", "partition", p.id, "op", op)
		p.maybeResume()
	}
}

// sleep waits d unless the partition is cancelled first.
func (p *partition) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.ctx.Done():
		return false
	}
}

// clearGauges removes the partition's labelled series.
func (p *partition) clearGauges() {
	part := itoa(int64(p.id))
	p.w.m.processedLag.DeleteLabelValues(p.topic, part)
	p.w.m.lagSeconds.DeleteLabelValues(p.topic, part)
	p.w.m.consumerLag.DeleteLabelValues(p.w.opts.Group, p.topic, part)
}

// backoff is the capped exponential backoff before retry attempt+1.
func backoff(initial, maxd time.Duration, attempt int) time.Duration {
	d := initial
	for i := 0; i < attempt && d < maxd; i++ {
		d *= 2
	}
	return min(d, maxd)
}

// cloneRecord copies what the worker keeps of a record.
func cloneRecord(r *kgo.Record) *kgo.Record {
	c := &kgo.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, LeaderEpoch: r.LeaderEpoch,
		Timestamp: r.Timestamp, Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)}
	for _, h := range r.Headers {
		c.Headers = append(c.Headers, kgo.RecordHeader{Key: h.Key, Value: bytes.Clone(h.Value)})
	}
	return c
}
