package worker

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// checkTopicLimits refuses to run when an output topic accepts smaller
// records than the worker may write to it: with max.message.bytes below
// MaxMessageBytes, the broker refuses an output or DLQ copy the worker
// built within its bounds, and that record's partition would retry the
// write for ever. A topic that does not exist yet, or whose configuration
// cannot be read (no broker answers, no DescribeConfigs permission), is not
// checked: the worker then runs as before, and a refused write shows as a
// stuck partition.
func (w *Worker) checkTopicLimits(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	t := w.opts.Topics
	rcs, err := w.adm.DescribeTopicConfigs(ctx, t.Aggregates, t.Milestones, t.Anomalies, t.Gaps, t.DLQ)
	if err != nil {
		w.log.Warn("the output topics' max.message.bytes could not be read; not checked against kafka.max_message_bytes", "err", err)
		return nil
	}
	for _, rc := range rcs {
		if rc.Err != nil {
			continue
		}
		for _, c := range rc.Configs {
			if c.Key != "max.message.bytes" || c.Value == nil {
				continue
			}
			if n, err := strconv.Atoi(*c.Value); err == nil && n < w.opts.MaxMessageBytes {
				return fmt.Errorf("worker: kafka.max_message_bytes %d exceeds the max.message.bytes %d of topic %s: "+
					"the broker would refuse records the worker writes there, and their partition would stop; "+
					"lower kafka.max_message_bytes (and the input bounds with it) or raise the topic's max.message.bytes",
					w.opts.MaxMessageBytes, n, rc.Name)
			}
		}
	}
	return nil
}
