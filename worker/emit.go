package worker

// Outputs. Every output record of a batch is queued through emit (or dlq,
// for the dead-letter copy of an input record) and sent by the produce
// stage; nothing else appends to b.out.

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/topics"
)

// emit queues an output record on topic whose value is a copy of value,
// caused by the event it. An output that would exceed the producer's
// maximum record size is not queued: the attempt fails and blames its
// record (failure.go).
func (p *partition) emit(topic string, it *item, value []byte) {
	b := &p.b
	a := it.agg
	if a.key == nil {
		a.key = []byte(a.id)
	}
	traceparent := len("traceparent") + len(it.ev.TraceParent)
	if size := recordSize(a.key, value, 1) + traceparent; size > p.w.opts.MaxMessageBytes {
		if b.oversize == nil {
			b.oversize = &poisonError{partition: it.rec.Partition, offset: it.rec.Offset, stage: "encode", reason: "output_too_large", aggregate: a.id,
				detail: fmt.Sprintf("its %d-byte output to %s exceeds the largest record the producer sends (kafka.max_message_bytes %d)",
					size, topic, p.w.opts.MaxMessageBytes)}
		}
		return
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
	p.cur, p.curAgg = it.rec, a.id
	meta := topics.MetaFor(&it.ev, topics.AggregateID(a.id, it.ev.ID))
	p.b.scratch = a.st.AppendAggregated(p.b.scratch[:0], meta, a.id)
	p.emit(p.w.opts.Topics.Aggregates, it, p.b.scratch)
}

// dlq queues the original record for the dead-letter topic with the reason;
// eventID is empty when the record did not decode. The worker's dlq.*
// headers are the only ones under those names: an incoming dlq.* header is
// kept as original.dlq.* (docs/contract.md, "Outputs"). dlq.timestamp holds
// the input record's timestamp (Unix milliseconds) for dlq redrive, while
// the copy's own timestamp is when it was dead-lettered, which the DLQ
// topic's retention counts from. A copy that would
// exceed the producer's maximum record size keeps the headers and reason
// and as much of the value as fits, marked dlq.truncated (the original
// size); the whole record stays at its input offset.
func (p *partition) dlq(r *kgo.Record, eventID, reason, detail, processor string) {
	b := &p.b
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+dlqHeaders+1)
	for _, h := range r.Headers {
		if strings.HasPrefix(h.Key, "dlq.") {
			h.Key = "original." + h.Key
		}
		hs = append(hs, h)
	}
	hs = append(hs,
		kgo.RecordHeader{Key: "dlq.reason", Value: []byte(reason)},
		kgo.RecordHeader{Key: "dlq.error", Value: []byte(truncate(detail, maxDetailBytes))},
		kgo.RecordHeader{Key: "dlq.processor", Value: []byte(processor)},
		kgo.RecordHeader{Key: "dlq.topic", Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: "dlq.partition", Value: []byte(itoa(int64(r.Partition)))},
		kgo.RecordHeader{Key: "dlq.offset", Value: []byte(itoa(r.Offset))},
		kgo.RecordHeader{Key: "dlq.timestamp", Value: []byte(itoa(r.Timestamp.UnixMilli()))},
	)
	key, value := r.Key, r.Value
	if size := recordSize(key, value, 0) + headersSize(hs); size > p.w.opts.MaxMessageBytes {
		hs = append(hs, kgo.RecordHeader{Key: "dlq.truncated", Value: []byte(itoa(int64(len(value))))})
		// First the value, then the original headers, then the key give
		// way, until the copy fits.
		over := size + len("dlq.truncated") + 20 - p.w.opts.MaxMessageBytes
		cut := min(over, len(value))
		value, over = value[:len(value)-cut], over-cut
		if over > 0 {
			own := hs[len(hs)-dlqHeaders-1:]
			hs = append(hs[:0:0], own...)
			over = recordSize(key, value, 0) + headersSize(hs) - p.w.opts.MaxMessageBytes
		}
		if over > 0 {
			key = key[:max(len(key)-over, 0)]
		}
	}
	b.out = append(b.out, &kgo.Record{Topic: p.w.opts.Topics.DLQ, Key: key, Value: value, Headers: hs})
	b.vals.skip()
	b.outTimes = append(b.outTimes, r.Timestamp)
	b.dlqCount[reason]++
	if p.dlqLog.allow(p, p.w.opts.Now(), "DLQ records not logged") {
		p.w.log.Warn("record sent to the DLQ", "partition", r.Partition, "offset", r.Offset, "event_id", truncate(eventID, maxDetailBytes),
			"reason", reason, "processor", processor, "error", truncate(detail, maxDetailBytes))
	}
}

// logsPerSecond bounds the lines a partition logs per record of one kind
// ("record sent to the DLQ", "sequence gap given up"): a producer that
// sends nothing but bad or out-of-order records must not choose the log
// volume. The outputs and the metrics still count every record.
const logsPerSecond = 10

// logLimiter lets through at most logsPerSecond lines per second of the
// worker's clock and says how many it held back once that second is over.
type logLimiter struct {
	since      time.Time
	logged     int
	suppressed int
	summary    string // the message of the line that says how many were held back
}

// allow reports whether a line may be logged at now; first it reports the
// lines held back in a second that is over, under summary.
func (l *logLimiter) allow(p *partition, now time.Time, summary string) bool {
	l.flush(p, now)
	l.summary = summary
	if l.logged >= logsPerSecond {
		l.suppressed++
		return false
	}
	l.logged++
	return true
}

// flush starts a new second once the current one is over, logging how many
// lines it held back.
func (l *logLimiter) flush(p *partition, now time.Time) {
	if now.Sub(l.since) < time.Second {
		return
	}
	if l.suppressed > 0 {
		p.w.log.Warn(l.summary, "partition", p.id, "count", l.suppressed, "since", l.since)
	}
	*l = logLimiter{since: now, summary: l.summary}
}

// dlqHeaders is the number of dlq.* headers every DLQ copy carries (a
// truncated one has dlq.truncated too).
const dlqHeaders = 7

// maxDetailBytes bounds the error text of a DLQ record and of a log line.
const maxDetailBytes = 1024

// truncate returns s cut to at most n bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// recordOverhead is an upper bound of what a record adds to its key, value
// and header bytes in a batch of one (the batch header, the record's length,
// attributes, delta varints), and headerOverhead of what a header adds.
const (
	recordOverhead = 96
	headerOverhead = 10
)

// recordSize bounds the size of a record of one batch with key, value and
// nh headers not yet counted.
func recordSize(key, value []byte, nh int) int {
	return recordOverhead + len(key) + len(value) + nh*headerOverhead
}

// headersSize bounds the size of hs in a record.
func headersSize(hs []kgo.RecordHeader) int {
	n := 0
	for _, h := range hs {
		n += headerOverhead + len(h.Key) + len(h.Value)
	}
	return n
}

// heldSize is what a held record costs: its key, value and headers.
func heldSize(r *kgo.Record) int {
	return len(r.Key) + len(r.Value) + headersSize(r.Headers)
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
