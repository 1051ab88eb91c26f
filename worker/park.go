package worker

// Parked users (docs/contract.md, "Parked users"). With input.on_poison:
// park, a record that fails by itself (a poisonError: internal_error,
// output_too_large) goes to the DLQ as before, and its user is parked: the
// user's state gets a processors.Park, written in the same atomic commit as
// everything else of the batch. Every later event of a parked user is held:
// copied to the parked topic, on the partition of the same number as its
// input partition, instead of being applied; the park's HeldThrough moves
// past it in the same commit, so a redelivered event is not held twice.
//
// A release is a control record on the input topic (header
// streamworker.control: release, key: the user), so it reaches the user's
// partition in order with the user's events. It is processed in a batch of
// its own: the parked partition is read from its start to its end, the
// user's events held during the current park are applied in the order they
// were held, through the ordinary sequencing and dedupe, and the park is
// cleared, all in one atomic commit. If a held event fails by itself again,
// it goes to the DLQ, the user is parked again at it, and the held events
// after it are held again under the new park.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/topics"
)

// ControlHeader marks a control record on the input topic; its value says
// what to do (ControlRelease). The record's key is the user.
const (
	ControlHeader  = "streamworker.control"
	ControlRelease = "release"
)

// The headers a held copy carries after the original record's own, in this
// order: where the event was read from, and the park it was held in (the
// offset of the record that parked the user).
const (
	HeldTopicHeader     = "streamworker.parked.topic"
	HeldPartitionHeader = "streamworker.parked.partition"
	HeldOffsetHeader    = "streamworker.parked.offset"
	HeldSinceHeader     = "streamworker.parked.since"
	heldHeaders         = 4
)

// errParkedRead wraps a failure to read the parked topic; it is retried.
var errParkedRead = errors.New("reading the parked topic")

// parkedReadTimeout bounds one read of a parked partition by a release.
const parkedReadTimeout = 30 * time.Second

// controlRecord reports whether r is a control record.
func controlRecord(r *kgo.Record) (value string, ok bool) {
	for _, h := range r.Headers {
		if h.Key == ControlHeader {
			return string(h.Value), true
		}
	}
	return "", false
}

// control turns a control record into a release of its user, or sends it
// to the DLQ when it asks for something else.
func (p *partition) control(r *kgo.Record, value string) {
	if value != ControlRelease || len(r.Key) == 0 {
		p.dlq(r, "", "invalid_control", fmt.Sprintf("a control record must be %s=%s with the user as its key", ControlHeader, ControlRelease), "decoder")
		return
	}
	p.b.items = append(p.b.items, item{rec: r, ev: topics.Event{AggregateID: string(r.Key)}, kind: releaseUser})
}

// firstControl returns the index of the first control record of recs, or
// -1 when there is none.
func firstControl(recs []*kgo.Record) int {
	return slices.IndexFunc(recs, func(r *kgo.Record) bool {
		_, ok := controlRecord(r)
		return ok
	})
}

// segments calls f with recs cut so that every control record is a batch
// of its own, and reports whether f returned true for every one; last is
// set for the final segment.
func segments(recs []*kgo.Record, f func(seg []*kgo.Record, last bool) bool) bool {
	for len(recs) > 0 {
		n := len(recs)
		if i := firstControl(recs); i >= 0 {
			n = max(i, 1)
		}
		seg := recs[:n]
		recs = recs[n:]
		if !f(seg, len(recs) == 0) {
			return false
		}
	}
	return true
}

// collectHeld reads, for the release of the batch (a control record is
// alone in its batch, with at most buffered events before it), the user's
// held events from the parked topic and appends them as items after it.
func (p *partition) collectHeld() error {
	b := &p.b
	n := len(b.items)
	for i := range n {
		if b.items[i].kind != releaseUser || p.w.opts.Topics.Parked == "" {
			continue
		}
		user := b.items[i].ev.AggregateID
		var recs []*kgo.Record
		err := p.retry("read parked", func() (err error) {
			recs, err = p.readParked(user)
			return err
		})
		if err != nil {
			return err
		}
		if err := p.guard("decode", func() {
			for _, r := range recs {
				p.decodeHeld(r)
			}
		}); err != nil {
			return err
		}
	}
	return nil
}

// readParked returns the records of user on the parked partition of this
// partition's number, from its start to its end, in order.
func (p *partition) readParked(user string) ([]*kgo.Record, error) {
	topic := p.w.opts.Topics.Parked
	ctx, cancel := context.WithTimeout(p.ctx, parkedReadTimeout)
	defer cancel()
	fail := func(err error) ([]*kgo.Record, error) {
		return nil, fmt.Errorf("%w %s[%d]: %w", errParkedRead, topic, p.id, err)
	}
	starts, err := p.w.adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return fail(err)
	}
	ends, err := p.w.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return fail(err)
	}
	start, ok1 := starts.Lookup(topic, p.id)
	end, ok2 := ends.Lookup(topic, p.id)
	switch {
	case !ok1 || !ok2:
		return fail(fmt.Errorf("no partition %d (the parked topic needs the input's partition count)", p.id))
	case start.Err != nil:
		return fail(start.Err)
	case end.Err != nil:
		return fail(end.Err)
	case start.Offset >= end.Offset:
		return nil, nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, p.w.opts.Kafka...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p.id: kgo.NewOffset().At(start.Offset)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return fail(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for next := start.Offset; next < end.Offset; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fail(ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			if r.Offset < end.Offset && string(r.Key) == user {
				out = append(out, r)
			}
		})
	}
	return out, nil
}

// decodeHeld turns one record of the parked topic back into the input
// record it copies and decodes it as an item of the release.
func (p *partition) decodeHeld(r *kgo.Record) {
	n := len(r.Headers)
	var src struct {
		topic            string
		part             int64
		offset, episode  int64
		errP, errO, errE error
	}
	ok := n >= heldHeaders && r.Headers[n-4].Key == HeldTopicHeader && r.Headers[n-3].Key == HeldPartitionHeader &&
		r.Headers[n-2].Key == HeldOffsetHeader && r.Headers[n-1].Key == HeldSinceHeader
	if ok {
		src.topic = string(r.Headers[n-4].Value)
		src.part, src.errP = strconv.ParseInt(string(r.Headers[n-3].Value), 10, 32)
		src.offset, src.errO = strconv.ParseInt(string(r.Headers[n-2].Value), 10, 64)
		src.episode, src.errE = strconv.ParseInt(string(r.Headers[n-1].Value), 10, 64)
		ok = src.errP == nil && src.errO == nil && src.errE == nil
	}
	if !ok {
		// Not a copy the worker made: nothing of a user's order.
		p.w.log.Warn("ignoring a record of the parked topic without the worker's headers", "partition", r.Partition, "offset", r.Offset)
		return
	}
	orig := &kgo.Record{Topic: src.topic, Partition: int32(src.part), Offset: src.offset, LeaderEpoch: -1,
		Timestamp: r.Timestamp, Key: r.Key, Value: r.Value, Headers: r.Headers[: n-heldHeaders : n-heldHeaders]}
	p.cur = orig
	if p.poisoned(orig) {
		return
	}
	p.decodeEvent(orig, heldEvent, src.episode)
}

// parkSequence deals with an item that parking decides on, before
// sequencing: it reports whether the item is done with.
func (p *partition) parkSequence(a *aggregate, it *item, now time.Time) bool {
	switch it.kind {
	case parkUser:
		p.park(a, it, now)
		return true
	case releaseUser:
		p.release(a, it)
		return true
	case heldEvent:
		// Only the events held during the park being released.
		return !a.releasing || it.episode != a.releaseEpisode
	}
	return false
}

// holdIfParked holds it if its user is parked (and it is not an event the
// release in hand applies), and reports whether it did.
func (p *partition) holdIfParked(a *aggregate, it *item) bool {
	k := a.st.Park
	if k == nil || (it.kind == heldEvent && a.releasing && k.Offset == a.releaseEpisode) {
		return false
	}
	if it.kind == eventItem && it.rec.Partition == k.Partition && it.rec.Offset <= k.HeldThrough {
		p.b.n.duplicates++ // held before, redelivered
		return true
	}
	p.hold(a, it)
	return true
}

// hold copies it to the parked topic, on the partition of the number of the
// park's input partition (where the release reads; an event of the user
// read on another input partition, against the contract, is held there
// too), with the original key, value, headers and timestamp, followed by
// the held headers.
func (p *partition) hold(a *aggregate, it *item) {
	b := &p.b
	r, k := it.rec, a.st.Park
	hs := make([]kgo.RecordHeader, 0, len(r.Headers)+heldHeaders)
	hs = append(hs, r.Headers...)
	hs = append(hs,
		kgo.RecordHeader{Key: HeldTopicHeader, Value: []byte(r.Topic)},
		kgo.RecordHeader{Key: HeldPartitionHeader, Value: []byte(itoa(int64(r.Partition)))},
		kgo.RecordHeader{Key: HeldOffsetHeader, Value: []byte(itoa(r.Offset))},
		kgo.RecordHeader{Key: HeldSinceHeader, Value: []byte(itoa(k.Offset))},
	)
	if r.Partition == k.Partition {
		k.HeldThrough = max(k.HeldThrough, r.Offset)
	}
	b.touch(a).changed = true
	if size := recordSize(r.Key, r.Value, 0) + headersSize(hs); size > p.w.opts.MaxMessageBytes {
		p.dlq(r, it.ev.ID, "output_too_large", fmt.Sprintf("its %d-byte parked copy exceeds the largest record the producer sends (kafka.max_message_bytes %d)",
			size, p.w.opts.MaxMessageBytes), "parker")
		return
	}
	b.out = append(b.out, &kgo.Record{Topic: p.w.opts.Topics.Parked, Partition: k.Partition, Key: r.Key, Value: r.Value,
		Headers: hs, Timestamp: r.Timestamp})
	b.vals.skip()
	b.outTimes = append(b.outTimes, time.Time{})
	b.n.held++
}

// park parks a's user at the record of it (already on the DLQ), unless it
// is parked already, and holds the user's events waiting in the reorder
// buffer: from now on none of them is applied before a release.
func (p *partition) park(a *aggregate, it *item, now time.Time) {
	old := a.st.Park
	if old != nil && !(a.releasing && old.Offset == a.releaseEpisode) {
		return
	}
	k := &processors.Park{Partition: p.id, Offset: it.rec.Offset, HeldThrough: it.rec.Offset, Reason: it.park.reason}
	if old != nil {
		k.HeldThrough = max(k.HeldThrough, old.HeldThrough)
	}
	a.st.Park = k
	p.b.touch(a).changed = true
	p.b.n.parked++
	for {
		lowest, ok := p.buf.Lowest(a.id)
		if !ok {
			break
		}
		held, _ := p.unbuffer(a.id, lowest)
		p.hold(a, held)
	}
	p.buf.GiveUp(a.id)
	p.w.log.Warn("user parked: its later events are held until `streamworker parked release`", "partition", p.id,
		"aggregate", a.id, "offset", it.rec.Offset, "reason", it.park.reason)
}

// release starts the release of a's user; the held items that follow it
// are applied, and finishReleases clears the park.
func (p *partition) release(a *aggregate, it *item) {
	k := a.st.Park
	switch {
	case k == nil:
		p.w.log.Info("release of a user that is not parked: nothing to do", "partition", p.id, "aggregate", a.id, "offset", it.rec.Offset)
		return
	case k.Partition != p.id:
		p.w.log.Warn("release reached another partition than the user's park; use `streamworker parked release`, which sends it to the park's partition",
			"partition", p.id, "aggregate", a.id, "parked_partition", k.Partition)
		return
	case p.w.opts.Topics.Parked == "":
		p.w.log.Error("release of a parked user without a parked topic configured (topics.parked): nothing done", "aggregate", a.id)
		return
	}
	a.releasing, a.releaseEpisode = true, k.Offset
	p.b.releases = append(p.b.releases, a)
}

// finishReleases clears the park of every user released in the batch whose
// held events all applied: it first gives up the sequence gaps still open
// among them (they are not kept in memory past the release).
func (p *partition) finishReleases(now time.Time) {
	b := &p.b
	for _, a := range b.releases {
		if k := a.st.Park; k != nil && k.Offset == a.releaseEpisode {
			for {
				if _, ok := p.buf.Lowest(a.id); !ok {
					break
				}
				p.giveUp(a)
			}
			a.st.Park = nil
			b.touch(a).changed = true
			b.n.released++
			b.releasedAt = append(b.releasedAt, parkedAt{a.id, k.Offset})
		}
		a.releasing = false
	}
}

// parkedAt is a user released by the batch and where it had been parked.
type parkedAt struct {
	user   string
	offset int64
}

// logReleases logs the releases of the batch, once it is persisted.
func (p *partition) logReleases() {
	for _, r := range p.b.releasedAt {
		p.w.log.Info("user released: its held events are applied", "partition", p.id, "aggregate", r.user, "parked_at", r.offset)
	}
}

// parkedPartitioner sends records of the parked topic to the partition
// they name and everything else through the client's default partitioner.
type parkedPartitioner struct {
	parked      string
	def, manual kgo.Partitioner
}

func newParkedPartitioner(parked string) kgo.Partitioner {
	return parkedPartitioner{parked: parked, def: kgo.UniformBytesPartitioner(64<<10, true, true, nil), manual: kgo.ManualPartitioner()}
}

func (pp parkedPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == pp.parked {
		return pp.manual.ForTopic(topic)
	}
	return pp.def.ForTopic(topic)
}
