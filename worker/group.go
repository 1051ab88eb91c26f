package worker

// Group membership and offset commits: the assignment callbacks start and
// stop partition goroutines, and the commits move each owned partition's
// committed offset to its commit point (progress.go).

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (w *Worker) onAssigned(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
	ps := assigned[w.opts.Topics.Input]
	w.m.rebalances.WithLabelValues("assigned").Inc()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ps {
		if w.parts[id] != nil {
			continue
		}
		p := newPartition(w, id)
		w.parts[id] = p
		go p.run()
	}
	w.owned.Store(int32(len(w.parts)))
	w.m.assigned.Set(float64(len(w.parts)))
	w.log.Info("partitions assigned", "topic", w.opts.Topics.Input, "partitions", ps, "owned", len(w.parts))
}

// onRevoked lets each revoked partition finish the batch in hand, commits
// what is done, and forgets the partition before returning.
func (w *Worker) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	w.m.rebalances.WithLabelValues("revoked").Inc()
	ids := revoked[w.opts.Topics.Input]
	ps := w.detach(ids)
	if len(ps) == 0 {
		return
	}
	deadline := time.AfterFunc(w.opts.ShutdownTimeout, func() {
		for _, p := range ps {
			p.cancel()
		}
	})
	w.stopAll(ps, ids)
	deadline.Stop()

	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	offsets := make(map[int32]kgo.EpochOffset, len(ps))
	for _, p := range ps {
		if eo, ok := p.committable(); ok && eo.Offset > p.committed {
			offsets[p.id] = eo
		}
	}
	crashPoint("revoke")
	w.commit(ctx, offsets)
	w.log.Info("partitions revoked", "topic", w.opts.Topics.Input, "partitions", ids)
}

// onLost abandons the partitions without committing: another member may
// already own them.
func (w *Worker) onLost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	w.m.rebalances.WithLabelValues("lost").Inc()
	ids := lost[w.opts.Topics.Input]
	ps := w.detach(ids)
	for _, p := range ps {
		p.cancel()
	}
	w.stopAll(ps, ids)
	w.log.Warn("partitions lost", "topic", w.opts.Topics.Input, "partitions", ids)
}

// detach removes the partitions from the worker, so that no fetched record
// and no commit reaches them any more.
func (w *Worker) detach(ids []int32) []*partition {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ps []*partition
	for _, id := range ids {
		if p := w.parts[id]; p != nil {
			ps = append(ps, p)
			delete(w.parts, id)
			p.clearGauges()
		}
	}
	w.owned.Store(int32(len(w.parts)))
	w.m.assigned.Set(float64(len(w.parts)))
	slices.SortFunc(ps, func(a, b *partition) int { return cmp.Compare(a.id, b.id) }) // stopped in this order
	return ps
}

// stopAll stops the detached partitions, waits for their goroutines to exit,
// and only then resumes their fetching, so that a later assignment of the
// same partitions starts unpaused: a goroutine still retrying could
// otherwise pause a partition after it was resumed.
func (w *Worker) stopAll(ps []*partition, ids []int32) {
	for _, p := range ps {
		p.stopAndWait()
	}
	if len(ids) > 0 {
		w.cl.ResumeFetchPartitions(map[string][]int32{w.opts.Topics.Input: ids})
	}
}

// commitDone commits the done offset of every owned partition that moved.
func (w *Worker) commitDone(ctx context.Context) {
	w.commitMu.Lock()
	defer w.commitMu.Unlock()
	w.mu.Lock()
	offsets := make(map[int32]kgo.EpochOffset)
	for id, p := range w.parts {
		if eo, ok := p.committable(); ok && eo.Offset > p.committed {
			offsets[id] = eo
		}
	}
	w.mu.Unlock()
	w.commit(ctx, offsets)
}

// commit sends one offset commit; the caller holds commitMu.
func (w *Worker) commit(ctx context.Context, offsets map[int32]kgo.EpochOffset) {
	if len(offsets) == 0 {
		return
	}
	crashPoint("offset-commit")
	w.m.commitsTotal.Inc()
	req := map[string]map[int32]kgo.EpochOffset{w.opts.Topics.Input: offsets}
	var commitErr error
	w.cl.CommitOffsetsSync(ctx, req, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			commitErr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if perr := kerr.ErrorForCode(p.ErrorCode); perr != nil && commitErr == nil {
					commitErr = fmt.Errorf("partition %d: %w", p.Partition, perr)
				}
			}
		}
	})
	if commitErr != nil {
		w.commitFailing.CompareAndSwap(0, time.Now().UnixNano())
		w.m.commitErrors.Inc()
		w.log.Warn("offset commit failed; retrying at the next interval", "err", commitErr)
		return
	}
	w.commitFailing.Store(0)
	w.mu.Lock()
	for id, eo := range offsets {
		if p := w.parts[id]; p != nil {
			p.committed = eo.Offset
		}
	}
	w.mu.Unlock()
	w.log.Debug("committed", "offsets", len(offsets))
}
