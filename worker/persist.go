package worker

// The persist stage takes the batch's changes, once its outputs are
// acknowledged, and writes, per aggregate and atomically, the new state
// together with the dedupe marks of the events applied, fenced by the
// version the state was loaded at (docs/contract.md, "Delivery
// guarantees"). It hands on the new versions; a rejected write fails the
// batch with errConflict.

import (
	"strconv"

	"github.com/streamworker/streamworker/state"
)

// persist commits every changed aggregate of the batch in one store round
// trip, retried while the store is unavailable.
func (p *partition) persist() error {
	b := &p.b
	b.states.reset()
	b.writes, b.owners = b.writes[:0], b.owners[:0]
	for _, c := range b.changes {
		if !c.changed {
			continue
		}
		a := c.agg
		var err error
		if b.states.buf, err = a.st.AppendBinary(b.states.buf); err != nil {
			return err
		}
		b.states.end()
		b.writes = append(b.writes, state.Write{Aggregate: a.id, Expect: a.version, Marks: c.marks})
		b.owners = append(b.owners, a)
	}
	if len(b.writes) == 0 {
		return nil
	}
	writes, owners := b.writes, b.owners
	b.states.each(func(i int, d []byte) { writes[i].Data = d })
	var outcomes []state.Outcome
	err := p.retry("commit", func() (err error) {
		outcomes, err = p.w.store.Commit(p.ctx, writes)
		return err
	})
	if err != nil {
		return err
	}
	conflict := false
	for i, o := range outcomes {
		switch o {
		case state.Committed:
			owners[i].version = writes[i].Expect + 1
		case state.VersionConflict:
			conflict = true
			p.w.m.conflicts.WithLabelValues("version").Inc()
		case state.MarkConflict:
			conflict = true
			p.w.m.conflicts.WithLabelValues("mark").Inc()
			p.reusers.Add(owners[i].id, "")
		}
	}
	if conflict {
		return errConflict
	}
	return nil
}

// maxReusers bounds the aggregates a partition remembers as having had a
// write rejected for a mark (partition.reusers): past it, the oldest is
// forgotten and costs one more rebuild if its producer goes on.
const maxReusers = 4096

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
