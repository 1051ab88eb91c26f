// Package ops holds the operator tools: replaying the input from a time or
// an offset by moving a group's committed offsets, and redriving the
// dead-letter topic back into the input.
package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrGroupActive is returned by Replay when the group still has members:
// offsets of a live group cannot be moved safely.
var ErrGroupActive = errors.New("the consumer group has active members; stop its workers first")

// ReplayFrom says where a replay starts: at the first record at or after
// Time, or, when Time is zero, at Offset in every partition (clamped to
// the partition's start and end).
type ReplayFrom struct {
	Time   time.Time
	Offset int64
}

// ReplaySteps is the number of steps Replay reports.
const ReplaySteps = 3

// Replay sets group's committed offsets on topic to from, so the group's
// next run re-reads from there. The group must have no active members.
// Replaying into the same state namespace re-applies nothing that is still
// within dedupe.ttl; to rebuild state from scratch, replay into a new group
// with a new redis.key_prefix. step, if not nil, is called before each of
// its ReplaySteps steps with the step's number (from 1) and what it does.
func Replay(ctx context.Context, adm *kadm.Client, group, topic string, from ReplayFrom, step func(n int, what string)) (kadm.Offsets, error) {
	if step == nil {
		step = func(int, string) {}
	}
	step(1, "describing group "+group)
	groups, err := adm.DescribeGroups(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("describing group %s: %w", group, err)
	}
	if g, ok := groups[group]; ok && len(g.Members) > 0 {
		return nil, ErrGroupActive
	}
	step(2, "listing offsets of "+topic)
	var listed kadm.ListedOffsets
	if from.Time.IsZero() {
		starts, err := adm.ListStartOffsets(ctx, topic)
		if err != nil {
			return nil, err
		}
		ends, err := adm.ListEndOffsets(ctx, topic)
		if err != nil {
			return nil, err
		}
		listed = starts
		listed.Each(func(o kadm.ListedOffset) {
			end, _ := ends.Lookup(o.Topic, o.Partition)
			off := min(max(from.Offset, o.Offset), end.Offset)
			listed[o.Topic][o.Partition] = kadm.ListedOffset{Topic: o.Topic, Partition: o.Partition, Offset: off, LeaderEpoch: -1}
		})
	} else {
		listed, err = adm.ListOffsetsAfterMilli(ctx, from.Time.UnixMilli(), topic)
		if err != nil {
			return nil, err
		}
	}
	if err := listed.Error(); err != nil {
		return nil, err
	}
	offsets := listed.Offsets()
	step(3, fmt.Sprintf("committing %d offsets", len(offsets.Sorted())))
	resp, err := adm.CommitOffsets(ctx, group, offsets)
	if err != nil {
		return nil, err
	}
	return offsets, resp.Error()
}

// RedriveStats counts what Redrive did.
type RedriveStats struct {
	Read, Redriven, Skipped int
	// Truncated counts the copies left on the DLQ because the worker cut
	// them to fit kafka.max_message_bytes (header dlq.truncated): their
	// originals are on the input at dlq.topic, dlq.partition, dlq.offset.
	Truncated int
}

// Redrive copies the dead-letter records present when it starts back to the
// input topic, with their original key, value, headers (the dlq.*
// headers removed) and timestamp (see recordTime), and commits its progress in group so a second run does
// not redrive them again. A non-empty reason redrives only records whose
// reason, as DLQReason reads it, matches. A copy the worker truncated
// (dlq.truncated) is not the original record and is never redriven: it
// stays on the DLQ, counted in RedriveStats.Truncated. progress, if not
// nil, is called after each batch with the counts so far and the number of
// records the redrive reads in all.
func Redrive(ctx context.Context, opts []kgo.Opt, dlqTopic, inputTopic, group, reason string,
	progress func(st RedriveStats, total int64)) (RedriveStats, error) {
	var st RedriveStats
	if progress == nil {
		progress = func(RedriveStats, int64) {}
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, opts...),
		kgo.ConsumerGroup(group), kgo.ConsumeTopics(dlqTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit())...)
	if err != nil {
		return st, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, dlqTopic)
	if err != nil {
		return st, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) { // a first run has no group yet
		return st, err
	}
	starts, err := adm.ListStartOffsets(ctx, dlqTopic)
	if err != nil {
		return st, err
	}
	var total int64
	// remaining holds, per partition with records left to redrive, the
	// end offset when the redrive started.
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(dlqTopic, o.Partition)
		if o.Offset > 0 && (!ok || c.At < o.Offset) {
			remaining[o.Partition] = o.Offset
			from, _ := starts.Lookup(dlqTopic, o.Partition)
			if ok {
				from.Offset = max(from.Offset, c.At)
			}
			total += o.Offset - from.Offset
		}
	})
	progress(st, total)
	done := func() bool {
		for _, end := range remaining {
			if end > 0 {
				return false
			}
		}
		return true
	}
	for !done() {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if err := fetches.Err0(); err != nil {
			return st, err
		}
		var out []*kgo.Record
		fetches.EachRecord(func(r *kgo.Record) {
			end := remaining[r.Partition]
			if r.Offset >= end {
				return
			}
			if r.Offset+1 >= end {
				remaining[r.Partition] = 0
			}
			st.Read++
			if reason != "" && DLQReason(r) != reason {
				st.Skipped++
				return
			}
			if truncated(r) {
				st.Truncated++
				return
			}
			nr := &kgo.Record{Topic: inputTopic, Key: r.Key, Value: r.Value, Timestamp: recordTime(r)}
			for _, h := range r.Headers {
				if !strings.HasPrefix(h.Key, "dlq.") {
					nr.Headers = append(nr.Headers, h)
				}
			}
			out = append(out, nr)
		})
		if err := cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
			return st, err
		}
		st.Redriven += len(out)
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			return st, err
		}
		progress(st, total)
	}
	return st, nil
}

// recordTime returns the timestamp of the input record r is the DLQ copy of:
// the worker's dlq.timestamp (the last one, as for DLQReason), or, on a copy
// written without it, r's own timestamp, the time it was dead-lettered. An
// event without a timestamp of its own takes its record's: stamped with the
// time of the redrive, a user's events redriven together would all land in
// one second of event time.
func recordTime(r *kgo.Record) time.Time {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == "dlq.timestamp" {
			if ms, err := strconv.ParseInt(string(r.Headers[i].Value), 10, 64); err == nil {
				return time.UnixMilli(ms)
			}
			break
		}
	}
	return r.Timestamp
}

// DLQReason returns the reason the worker gave for sending r to the
// dead-letter topic: the value of r's last dlq.reason header, or "" when it
// has none. The worker appends its own dlq.* headers after every header the
// input carried, so the last dlq.reason is always the worker's. A producer's
// dlq.reason comes before it: the worker renames incoming dlq.* headers to
// original.dlq.*, and a record dead-lettered by a release that did not
// still has the producer's dlq.reason first, which DLQReason passes over.
func DLQReason(r *kgo.Record) string {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == "dlq.reason" {
			return string(r.Headers[i].Value)
		}
	}
	return ""
}

// truncated reports whether r is a DLQ copy the worker cut to fit
// kafka.max_message_bytes: it has a dlq.truncated header, which only the
// worker writes (an incoming one is renamed original.dlq.truncated).
func truncated(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if h.Key == "dlq.truncated" {
			return true
		}
	}
	return false
}
