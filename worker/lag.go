package worker

import (
	"context"
	"time"
)

// updateLag publishes consumer lag (every LagInterval): the group's committed
// offsets against the log end (read with kadm, the figure Burrow, kminion
// and KEDA see), this worker's processed position, the age of the oldest
// unprocessed record, the backlog and the dedupe-TTL headroom. Only the
// partitions this worker owns are published, so summing over workers counts
// each partition once.
func (w *Worker) updateLag(ctx context.Context) {
	w.m.ready.Set(boolGauge(w.Ready()))
	committed := map[int32]int64{}
	if _, gen := w.cl.GroupMetadata(); gen > 0 {
		lctx, cancel := context.WithTimeout(ctx, w.opts.LagInterval)
		lags, err := w.adm.Lag(lctx, w.opts.Group)
		cancel()
		if err != nil {
			w.log.Debug("reading consumer lag", "err", err)
		} else if gl, ok := lags[w.opts.Group]; ok {
			for p, ml := range gl.Lag[w.opts.Topics.Input] {
				if ml.Err == nil && ml.Lag >= 0 {
					committed[p] = ml.Lag
				}
			}
		}
	}

	now := w.opts.Now()
	var backlog float64
	var oldestAge time.Duration
	var buffered, bufBytes int
	w.mu.Lock()
	for id, p := range w.parts {
		part := itoa(int64(id))
		p.progress.Lock()
		hwm, done, oldest := p.hwm, p.doneOffset, p.oldest
		nb, nbytes := p.buffered, p.bufBytes
		p.progress.Unlock()
		if lag, ok := committed[id]; ok {
			w.m.consumerLag.WithLabelValues(w.opts.Group, p.topic, part).Set(float64(lag))
			backlog += float64(lag)
		}
		if done >= 0 && hwm >= done {
			w.m.processedLag.WithLabelValues(p.topic, part).Set(float64(hwm - done))
		}
		age := time.Duration(0)
		if !oldest.IsZero() {
			age = max(now.Sub(oldest), 0)
		}
		w.m.lagSeconds.WithLabelValues(p.topic, part).Set(age.Seconds())
		w.m.stuckSeconds.WithLabelValues(p.topic, part).Set(p.stuckFor(now).Seconds())
		oldestAge = max(oldestAge, age)
		buffered += nb
		bufBytes += int(nbytes)
	}
	w.mu.Unlock()
	w.m.buffered.Set(float64(buffered))
	w.m.bufferedBytes.Set(float64(bufBytes))
	w.m.backlog.WithLabelValues(w.opts.Topics.Input).Set(backlog + float64(buffered))
	w.m.dedupeHeadroom.Set((w.opts.DedupeTTL - oldestAge).Seconds())
}
