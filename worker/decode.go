package worker

// The decode stage takes the batch's records and hands on b.items: one
// decoded, valid event per record that is to be sequenced. A record that is
// not a valid event goes to the DLQ with the reason; an event of an unknown
// type is skipped or sent to the DLQ by policy (a sequenced one still takes
// its place in the sequence).

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/topics"
)

// decode validates one record and appends its event to the batch's items.
func (p *partition) decode(r *kgo.Record) {
	if r.Attrs.IsControl() { // a transaction marker: only its offset counts
		return
	}
	b := &p.b
	if !p.rerun(r) {
		b.n.consumed++
	}
	if p.poisoned(r) {
		return
	}
	if value, ok := controlRecord(r); ok {
		p.control(r, value)
		return
	}
	p.decodeEvent(r, eventItem, 0)
}

// rerun reports whether the input record r was read by an earlier batch:
// one buffered then, run again after a failure (partition.reset). Its
// reading was counted then.
func (p *partition) rerun(r *kgo.Record) bool { return r.Offset < p.next }

// decodeEvent validates r and appends its event to the batch's items as an
// item of kind (an input event, or a held one of the park episode).
func (p *partition) decodeEvent(r *kgo.Record, kind itemKind, episode int64) {
	b := &p.b
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
	if ev.KeyMismatch && !(kind == eventItem && p.rerun(r)) {
		b.n.keyMismatch++
	}
	skip := false
	if ev.Type != topics.TypeUserActivity {
		if p.w.opts.UnknownTypes == UnknownDLQ {
			p.dlq(r, ev.ID, "unknown_type", "unknown event type "+ev.Type, "decoder")
			return
		}
		if ev.Sequence == 0 {
			b.n.skipped++
			return
		}
		skip = true // sequenced: it still takes its place in the sequence
	}
	b.items = append(b.items, item{rec: r, ev: ev, skip: skip, kind: kind, episode: episode})
}
