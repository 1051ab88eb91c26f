package worker

// The sequence stage takes b.items (with their aggregates loaded) and, per
// event in partition order, drops it as a duplicate, applies it through the
// processors, holds it in the reorder buffer until its predecessors are
// applied, or sends it to the DLQ as late (docs/contract.md, "Sequencing").
// It hands on the batch's changes (each aggregate's new state and the marks
// of the events applied) and its outputs, queued through emit.

import (
	"time"

	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/sequencing"
	"github.com/streamworker/streamworker/topics"
)

// sequenceAll sequences every item of the batch's newest segment and gives
// up the gaps that expired at now.
func (p *partition) sequenceAll(now time.Time) {
	b := &p.b
	for i := range b.items {
		p.sequence(&b.items[i], now)
	}
	p.finishReleases(now)
	for _, id := range p.buf.Expired(now, nil) {
		// Every expired gap of the aggregate: what stays buffered after
		// one keeps the time it was buffered.
		for a := p.cache[id]; a != nil && p.buf.GapExpired(id, now); {
			p.giveUp(a)
		}
	}
}

// emitAggregates emits the coalesced aggregated outputs of the batch: one
// per aggregate, from its state after the batch's last applied event.
func (p *partition) emitAggregates() {
	if !p.w.opts.CoalesceAggregates {
		return
	}
	for _, c := range p.b.changes {
		if c.last != nil {
			p.emitAggregate(c.agg, c.last)
		}
	}
}

// sequence applies, buffers, or drops one event.
func (p *partition) sequence(it *item, now time.Time) {
	a := it.agg
	if p.parkSequence(a, it, now) {
		return
	}
	// Seen in the store, recently applied, applied earlier in this batch
	// (the recent front is bounded, a batch's own marks are not), or
	// held in the reorder buffer under another sequence.
	if it.seen || p.recent.Contains(a.id, it.ev.ID) || p.b.touch(a).marked(it.ev.ID) || p.buf.Holds(a.id, it.ev.ID) {
		p.b.n.duplicates++
		return
	}
	if p.holdIfParked(a, it) {
		return
	}
	seq := it.ev.Sequence
	for {
		expected := sequencing.Expected(a.st.LastSequence)
		switch sequencing.Classify(expected, seq) {
		case sequencing.DecisionApply:
			p.apply(a, it)
			if seq > 0 {
				p.drain(a)
			}
			return
		case sequencing.DecisionBehind, sequencing.DecisionInvalid:
			p.b.n.late++
			p.dlq(it.rec, it.ev.ID, "late", "sequence "+itoa(seq)+" is below the expected "+itoa(expected)+
				" and the event was never applied (its gap was given up)", "sequencer")
			return
		}
		held := &item{rec: cloneRecord(it.rec), ev: it.ev, agg: a, skip: it.skip, kind: it.kind, episode: it.episode, at: p.bufferedAt(it.rec.Offset, now)}
		switch p.buf.Add(a.id, seq, it.ev.ID, it.rec.Offset, heldSize(it.rec), held.at, held) {
		case sequencing.Buffered:
			return
		case sequencing.Duplicate:
			p.b.n.duplicates++
			return
		case sequencing.Conflict:
			p.dlq(it.rec, it.ev.ID, "sequence_conflict", "another event with sequence "+itoa(seq)+" is already buffered", "sequencer")
			return
		case sequencing.FullAggregate:
			p.giveUp(a)
		case sequencing.FullPartition:
			// Give up the oldest gap to make room; with nothing
			// buffered, the event does not fit at all: give up its own
			// gap by applying it where it stands.
			victim, ok := p.buf.Oldest()
			if !ok {
				p.skipTo(a, seq, it)
				continue
			}
			p.giveUp(p.cache[victim])
		}
	}
}

// applyHook, when set (only by tests), runs before the processors on every
// event applied: it lets a test make one event panic.
var applyHook func(*topics.Event)

// apply runs the processors for one event and queues its outputs.
func (p *partition) apply(a *aggregate, it *item) {
	p.cur, p.curAgg = it.rec, a.id
	c := p.b.touch(a)
	c.changed = true
	c.mark(it.ev.ID)
	p.recent.Add(a.id, it.ev.ID)
	if it.skip {
		a.st.AdvanceSequence(it.ev.Sequence)
		p.b.n.skipped++
		return
	}
	c.last = it
	if applyHook != nil {
		applyHook(&it.ev)
	}
	eff := p.proc.Apply(&a.st, &it.ev)
	n := &p.b.n
	n.processed++
	if !eff.RateCounted {
		n.stale++
	}
	names := &p.w.opts.Topics
	if count := eff.Milestone; count > 0 {
		d := topics.MilestoneData{UserID: a.id, Milestone: "activity", Count: count}
		meta := topics.MetaFor(&it.ev, topics.MilestoneID(a.id, count))
		p.b.scratch = topics.AppendMilestone(p.b.scratch[:0], meta, &d)
		p.emit(names.Milestones, it, p.b.scratch)
		n.milestones++
	}
	if eff.Anomaly != nil {
		meta := topics.MetaFor(&it.ev, topics.AnomalyID(a.id, it.ev.ID))
		p.b.scratch = topics.AppendAnomaly(p.b.scratch[:0], meta, eff.Anomaly)
		p.emit(names.Anomalies, it, p.b.scratch)
		if eff.Anomaly.Severity == processors.SeverityCritical {
			n.anomalies[1]++
		} else {
			n.anomalies[0]++
		}
	}
	if !p.w.opts.CoalesceAggregates {
		p.emitAggregate(a, it)
	}
}

// drain applies the buffered successors of a's last sequence.
func (p *partition) drain(a *aggregate) {
	for {
		it, ok := p.unbuffer(a.id, sequencing.Expected(a.st.LastSequence))
		if !ok {
			return
		}
		p.apply(a, it)
	}
}

// unbuffer takes the event of aggregate agg with sequence seq out of the
// reorder buffer. The batch keeps its record, so that a failed attempt runs
// it again (reset): the buffer no longer has it.
func (p *partition) unbuffer(agg string, seq int64) (*item, bool) {
	it, ok := p.buf.Pop(agg, seq)
	if ok && it.kind == eventItem { // a held event of a release is read again from the parked topic
		p.b.unbuffered = append(p.b.unbuffered, it)
	}
	return it, ok
}

// giveUp skips a's gap: it moves the expected sequence to the lowest
// buffered one and applies what follows contiguously.
func (p *partition) giveUp(a *aggregate) {
	lowest, ok := p.buf.Lowest(a.id)
	if !ok {
		return
	}
	first, _ := p.unbuffer(a.id, lowest)
	p.skipTo(a, lowest, first)
	p.apply(a, first)
	p.drain(a)
	p.buf.GiveUp(a.id)
}

// skipTo records the gap before a's sequence seq, caused by it, and makes
// seq the expected sequence.
func (p *partition) skipTo(a *aggregate, seq int64, it *item) {
	p.cur, p.curAgg = it.rec, a.id
	expected := sequencing.Expected(a.st.LastSequence)
	a.st.LastSequence = seq - 1
	p.b.touch(a).changed = true
	d := topics.GapData{AggregateID: a.id, Expected: expected, ResumedAt: seq, Skipped: seq - expected}
	meta := topics.MetaFor(&it.ev, topics.GapID(a.id, expected, seq))
	p.b.scratch = topics.AppendGap(p.b.scratch[:0], meta, &d)
	p.emit(p.w.opts.Topics.Gaps, it, p.b.scratch)
	p.b.n.gaps++
	if p.gapLog.allow(p, p.w.opts.Now(), "gaps given up not logged") {
		p.w.log.Info("sequence gap given up", "partition", p.id, "aggregate", a.id,
			"expected", expected, "resumed_at", seq, "offset", it.rec.Offset, "event_id", it.ev.ID)
	}
}
