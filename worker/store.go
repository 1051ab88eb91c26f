package worker

import (
	"strconv"

	"github.com/streamworker/streamworker/state"
)

// stateMark is a dedupe mark to check, with the batch item it belongs to.
type stateMark struct {
	Aggregate, EventID string
	item               int
}

// fetch loads states and dedupe marks in one round trip, retrying with
// backoff while Redis is unavailable.
func (p *partition) fetch(aggs []string, marks []stateMark) ([]state.Snapshot, []bool, error) {
	ms := make([]state.Mark, len(marks))
	for i, m := range marks {
		ms[i] = state.Mark{Aggregate: m.Aggregate, EventID: m.EventID}
	}
	for attempt := 0; ; attempt++ {
		snaps, seen, err := p.w.store.Fetch(p.ctx, aggs, ms)
		if err == nil {
			p.fault(false, "fetch", nil)
			return snaps, seen, nil
		}
		if p.ctx.Err() != nil || !state.IsRetryable(err) {
			return nil, nil, err
		}
		p.fault(true, "fetch", err)
		if !p.sleep(backoff(p.w.opts.RetryInitial, p.w.opts.RetryMax, attempt)) {
			return nil, nil, p.ctx.Err()
		}
	}
}

// persist writes, per aggregate and atomically, the new state of every
// aggregate the batch changed together with the dedupe marks of the events
// applied to it, fenced by the version the state was loaded at. It runs
// after the batch's outputs are acknowledged.
func (p *partition) persist() error {
	b := &p.b
	b.states.reset()
	b.writes, b.owners = b.writes[:0], b.owners[:0]
	for _, a := range b.aggs {
		if !a.touched {
			continue
		}
		var err error
		if b.states.buf, err = a.st.AppendBinary(b.states.buf); err != nil {
			return err
		}
		b.states.end()
		b.writes = append(b.writes, state.Write{Aggregate: a.id, Expect: a.version, Marks: a.marks})
		b.owners = append(b.owners, a)
	}
	if len(b.writes) == 0 {
		return nil
	}
	writes, owners := b.writes, b.owners
	b.states.each(func(i int, d []byte) { writes[i].Data = d })
	for attempt := 0; ; attempt++ {
		outcomes, err := p.w.store.Commit(p.ctx, writes)
		if err != nil {
			if p.ctx.Err() != nil || !state.IsRetryable(err) {
				return err
			}
			p.fault(true, "commit", err)
			if !p.sleep(backoff(p.w.opts.RetryInitial, p.w.opts.RetryMax, attempt)) {
				return p.ctx.Err()
			}
			continue
		}
		p.fault(false, "commit", nil)
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
			}
		}
		if conflict {
			return errConflict
		}
		return nil
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
