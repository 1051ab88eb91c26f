package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/internal/app"
	"github.com/streamworker/streamworker/internal/ops"
	"github.com/streamworker/streamworker/state"
)

func replayCmd() *cobra.Command {
	var fromTime string
	var fromOffset int64
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Move the group's committed offsets back to a time or an offset",
		Long: `Set kafka.group's committed offsets on the input topic to the first record at
or after --from-time, or to --from-offset in every partition. The group must be
stopped. Its next run re-reads from there; events still remembered by their
dedupe marks (dedupe.ttl) are not applied again.

To rebuild state from scratch instead, replay into a fresh namespace: choose a
new kafka.group and a new redis.key_prefix (the outputs keep their IDs).`,
		Example: "  streamworker replay --from-time 2026-11-22T10:00:00Z\n" +
			"  SW_KAFKA_GROUP=rebuild-1 SW_REDIS_KEY_PREFIX=sw2 streamworker replay --from-offset 0",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			var from ops.ReplayFrom
			switch {
			case fromTime != "" && cmd.Flags().Changed("from-offset"):
				return usageError{fmt.Errorf("give --from-time or --from-offset, not both")}
			case fromTime != "":
				t, err := time.Parse(time.RFC3339, fromTime)
				if err != nil {
					return usageError{fmt.Errorf("--from-time: %w", err)}
				}
				from.Time = t
			case cmd.Flags().Changed("from-offset"):
				from.Offset = fromOffset
			default:
				return usageError{fmt.Errorf("give --from-time or --from-offset")}
			}
			cl, err := kafkaClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			pr := newProgress(cmd.ErrOrStderr(), "replay", "steps", ops.ReplaySteps)
			var step string
			offsets, err := ops.Replay(cmd.Context(), kadm.NewClient(cl), c.Kafka.Group, c.Topics.Input, from,
				func(n int, what string) {
					step = what
					pr.update(int64(n-1), what)
				})
			if err != nil {
				pr.finish(0, "failed while "+step)
				return err
			}
			pr.finish(ops.ReplaySteps, "done")
			offsets.Each(func(o kadm.Offset) {
				fmt.Fprintf(cmd.OutOrStdout(), "%s[%d] -> %d\n", o.Topic, o.Partition, o.At)
			})
			return nil
		},
	}
	cmd.Flags().StringVar(&fromTime, "from-time", "", "Replay from the first record at or after this RFC 3339 time.")
	cmd.Flags().Int64Var(&fromOffset, "from-offset", 0, "Replay from this offset in every partition.")
	addConfigFlags(cmd.Flags())
	return cmd
}

func dlqCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Short: "Work with the dead-letter topic"}
	var reason string
	redrive := &cobra.Command{
		Use:   "redrive",
		Short: "Copy dead-letter records back to the input topic",
		Long: `Copy the records on the DLQ topic back to the input topic with their original
key, value and headers, once: progress is committed in the group
"<kafka.group>.dlq-redrive". Fix the cause first (a producer, a config limit),
or the records land in the DLQ again. A copy the worker truncated to fit
kafka.max_message_bytes (header dlq.truncated) is not redriven: it is
counted as truncated, and its original is on the input at the offset its
dlq.topic, dlq.partition and dlq.offset headers name.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			opts, err := app.KafkaOpts(c.Kafka)
			if err != nil {
				return usageError{err}
			}
			pr := newProgress(cmd.ErrOrStderr(), "dlq redrive", "records", 0)
			note := func(st ops.RedriveStats) string {
				return fmt.Sprintf("redriven %d, skipped %d, truncated %d", st.Redriven, st.Skipped, st.Truncated)
			}
			st, err := ops.Redrive(cmd.Context(), opts, c.Topics.DLQ, c.Topics.Input, c.Kafka.Group+".dlq-redrive", reason,
				func(st ops.RedriveStats, total int64) {
					pr.setTotal(total)
					pr.update(int64(st.Read), note(st))
				})
			pr.finish(int64(st.Read), note(st))
			fmt.Fprintf(cmd.OutOrStdout(), "read %d, redriven %d, skipped %d, truncated %d\n", st.Read, st.Redriven, st.Skipped, st.Truncated)
			if st.Truncated > 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d truncated copies were not redriven: produce their originals again from the input "+
					"(headers dlq.topic, dlq.partition, dlq.offset) while its retention keeps them\n", st.Truncated)
			}
			return err
		},
	}
	redrive.Flags().StringVar(&reason, "reason", "", "Redrive only records with this dlq.reason (e.g. late).")
	addConfigFlags(redrive.Flags())
	cmd.AddCommand(redrive)
	return cmd
}

func parkedCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "parked", Short: "List and release parked users (input.on_poison: park)"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the parked users, from their state in Redis",
		Long: `List every parked user with the input partition and offset of the record that
parked it (on the DLQ), the highest input offset dealt with since, and the
reason. It scans the state keys of redis.key_prefix (SCAN, every master of a
Cluster) and reads each state once: a while on millions of users, without
blocking Redis. Held events are on topics.parked, partition as listed, with
the header streamworker.parked.since equal to the offset listed.`,
		Args: noArgs,
		RunE: withRedis(func(cmd *cobra.Command, _ []string, c config.Config, rc redis.UniversalClient) error {
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tPARTITION\tOFFSET\tHELD_THROUGH\tREASON")
			n := 0
			err := ops.ListParked(cmd.Context(), rc, dedupe.Keys{Prefix: c.Redis.KeyPrefix}, func(u ops.ParkedUser) error {
				n++
				_, err := fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\n", strconv.Quote(u.User), u.Partition, u.Offset, u.HeldThrough, u.Reason)
				return err
			})
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%d parked users\n", n)
			return err
		}),
	}
	addConfigFlags(list.Flags())
	release := &cobra.Command{
		Use:   "release USER",
		Short: "Release a parked user: its held events are applied in order",
		Long: `Send the control record that releases USER (header streamworker.control:
release, key USER) to the input topic, on the partition where USER was parked,
after checking in Redis that USER is parked (exit status 1 if not). The worker
processes it in order with USER's events: it applies USER's held events from
topics.parked in the order they were held, exactly once, and clears the park.
If a held event fails by itself again, it goes to the DLQ and USER is parked
again at it. Fix the cause first (a deploy, a config limit).`,
		Example: "  streamworker parked release u-42",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{fmt.Errorf("%s takes one argument, the user, got %q", cmd.CommandPath(), args)}
			}
			return nil
		},
		RunE: withRedis(func(cmd *cobra.Command, args []string, c config.Config, rc redis.UniversalClient) error {
			cl, err := kafkaClient(c, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				return err
			}
			defer cl.Close()
			store := state.NewRedisStore(rc, dedupe.Keys{Prefix: c.Redis.KeyPrefix}, c.Dedupe.TTL)
			park, rec, err := ops.Release(cmd.Context(), cl, store, c.Topics.Input, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "release of %q sent to %s[%d] at offset %d (parked at offset %d: %s)\n",
				args[0], rec.Topic, rec.Partition, rec.Offset, park.Offset, park.Reason)
			return nil
		}),
	}
	addConfigFlags(release.Flags())
	cmd.AddCommand(list, release)
	return cmd
}

// withRedis returns a RunE that loads the configuration and calls f with it
// and a Redis client for it.
func withRedis(f func(cmd *cobra.Command, args []string, c config.Config, rc redis.UniversalClient) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := loadConfig(cmd)
		if err != nil {
			return err
		}
		rc, err := app.RedisClient(c.Redis)
		if err != nil {
			return usageError{err}
		}
		defer rc.Close()
		return f(cmd, args, c, rc)
	}
}
