package worker

// Outputs. Every output record of a batch is queued through emit (or dlq,
// for the dead-letter copy of an input record) and sent by the produce
// stage; nothing else appends to b.out.

import (
	"bytes"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/topics"
)

// emit queues an output record on topic whose value is a copy of value,
// caused by the event it.
func (p *partition) emit(topic string, it *item, value []byte) {
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
	b.vals.add(value)
	b.outTimes = append(b.outTimes, it.rec.Timestamp)
}

// emitAggregate queues a's aggregated output, caused by the event it.
func (p *partition) emitAggregate(a *aggregate, it *item) {
	meta := topics.MetaFor(&it.ev, topics.AggregateID(a.id, it.ev.ID))
	p.b.scratch = a.st.AppendAggregated(p.b.scratch[:0], meta, a.id)
	p.emit(p.w.opts.Topics.Aggregates, it, p.b.scratch)
}

// dlq queues the original record for the dead-letter topic with the reason;
// eventID is empty when the record did not decode.
func (p *partition) dlq(r *kgo.Record, eventID, reason, detail, processor string) {
	b := &p.b
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
	b.out = append(b.out, &kgo.Record{Topic: p.w.opts.Topics.DLQ, Key: r.Key, Value: r.Value, Headers: hs})
	b.vals.skip()
	b.outTimes = append(b.outTimes, r.Timestamp)
	b.dlqCount[reason]++
	p.w.log.Warn("record sent to the DLQ", "partition", r.Partition, "offset", r.Offset, "event_id", eventID,
		"reason", reason, "processor", processor, "error", detail)
}

// cloneRecord copies what the worker keeps of a record, so that a held
// record does not pin its whole fetch buffer.
func cloneRecord(r *kgo.Record) *kgo.Record {
	c := &kgo.Record{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, LeaderEpoch: r.LeaderEpoch,
		Timestamp: r.Timestamp, Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value)}
	for _, h := range r.Headers {
		c.Headers = append(c.Headers, kgo.RecordHeader{Key: h.Key, Value: bytes.Clone(h.Value)})
	}
	return c
}
