package worker

// The load stage takes b.items and hands them on with their aggregate set
// (loaded into the partition's cache) and, for every event that might have
// been applied already, whether the store holds its dedupe mark. It costs one
// store round trip for the whole batch, or none when the cache and the
// recent front answer everything, and a second one when an event of an
// aggregate it loads may have been applied (a redelivery).

import (
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/state"
)

// mayBeApplied reports whether it's event may have been applied to a
// already: it has no sequence, or one a's state has passed. Applying a
// sequenced event moves the state's last sequence to it, so an event above
// that was never applied.
func mayBeApplied(a *aggregate, it *item) bool {
	return it.ev.Sequence <= 0 || it.ev.Sequence <= a.st.LastSequence
}

// load fetches the state of every aggregate of the batch not in the cache
// and the dedupe marks of every event that might have been applied already:
// those of aggregates it loads are read in a second round trip, once their
// state says which events may have been applied (usually none do, and the
// second round trip is not made).
// An event whose sequence is above its aggregate's last applied one cannot
// have been applied, so it needs no check, unless its ID was applied before
// under another sequence: once a write of an aggregate is rejected for such
// a mark, every event of it is checked (aggregate.checkMarks).
func (p *partition) load() error {
	b := &p.b
	need, marks, markItems, later := b.need[:0], b.marks[:0], b.markItems[:0], b.later[:0]
	defer func() { b.need, b.marks, b.markItems, b.later = need[:0], marks[:0], markItems[:0], later[:0] }()
	for i := range b.items {
		it := &b.items[i]
		a := p.cache[it.ev.AggregateID]
		if a == nil {
			a = &aggregate{id: it.ev.AggregateID}
			a.checkMarks = p.reusers.Contains(a.id, "")
			p.cache[a.id] = a
		}
		it.agg = a
		if !a.loaded && a.change == 0 {
			need = append(need, a.id)
		}
		b.touch(a)
		if it.kind == parkUser || it.kind == releaseUser {
			continue // no event of its own
		}
		if a.loaded && !a.checkMarks && !mayBeApplied(a, it) || p.recent.Contains(a.id, it.ev.ID) {
			continue
		}
		if !a.loaded && !a.checkMarks && it.ev.Sequence > 0 {
			// Whether it may have been applied is known once the state
			// this fetch loads says the last sequence.
			later = append(later, i)
			continue
		}
		marks = append(marks, state.Mark{Aggregate: a.id, EventID: it.ev.ID})
		markItems = append(markItems, i)
	}
	if err := p.fetch(need, marks, markItems); err != nil {
		return err
	}
	// The sequenced events of the aggregates just loaded: only those at or
	// below the stored last sequence need their marks read, usually none
	// (a redelivery after a restart or a rebalance).
	marks, markItems = marks[:0], markItems[:0]
	for _, i := range later {
		it := &b.items[i]
		if a := it.agg; !a.loaded || mayBeApplied(a, it) {
			marks = append(marks, state.Mark{Aggregate: a.id, EventID: it.ev.ID})
			markItems = append(markItems, i)
		}
	}
	return p.fetch(nil, marks, markItems)
}

// fetch loads the aggregates need into the cache and sets, for each mark,
// whether it exists on the item markItems names; one store round trip,
// retried while the store is unavailable, or none when nothing is asked.
func (p *partition) fetch(need []string, marks []state.Mark, markItems []int) error {
	if len(need) == 0 && len(marks) == 0 {
		return nil
	}
	var snaps []state.Snapshot
	var seen []bool
	err := p.retry("fetch", func() (err error) {
		snaps, seen, err = p.w.store.Fetch(p.ctx, need, marks)
		return err
	})
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
	for i, at := range markItems {
		p.b.items[at].seen = seen[i]
	}
	return nil
}
