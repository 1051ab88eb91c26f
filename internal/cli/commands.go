package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/app"
	"github.com/streamworker/streamworker/internal/dev"
	"github.com/streamworker/streamworker/loadgen"
	"github.com/streamworker/streamworker/topics"
	"github.com/streamworker/streamworker/topics/admin"
)

func devCmd() *cobra.Command {
	o := dev.Options{}
	var level string
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process: Kafka (kfake), Redis, the worker and a demo load",
		Long: `Run the embedded mode: an in-process Kafka cluster on a real TCP port, Redis (a
redis-server child process when one is on PATH, else in-process miniredis),
the worker, a demo load with duplicates, out-of-order and malformed events and
anomaly bursts, and /metrics. A summary line is printed every second. Stop it
with Ctrl-C, or give --duration.`,
		Example: "  streamworker dev\n  streamworker dev --duration 30s --rate 5000",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Like run, dev takes http.addr and log.level from the
			// environment unless the flag is given.
			if err := fromEnv(cmd, "http.addr", &o.HTTPAddr); err != nil {
				return err
			}
			if err := fromEnv(cmd, "log.level", &level); err != nil {
				return err
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(level)); err != nil {
				return usageError{fmt.Errorf("--log.level: %w", err)}
			}
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			o.Out = cmd.OutOrStdout()
			o.Log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: lvl}))
			return dev.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.DurationVar(&o.Duration, "duration", 0, "Stop by itself after this long (0: run until Ctrl-C).")
	f.Float64Var(&o.Rate, "rate", 2000, "Demo load in events per second.")
	f.IntVar(&o.Users, "users", 200, "Distinct users of the demo load.")
	f.IntVar(&o.Partitions, "partitions", 6, "Partitions of the input topic.")
	f.StringVar(&o.HTTPAddr, "http.addr", ":9464", "Listen address of /metrics, /livez and /readyz (also SW_HTTP_ADDR).")
	f.Int64Var(&o.Seed, "seed", 1, "Seed of the demo load.")
	f.StringVar(&level, "log.level", "error", "Worker log level: debug, info, warn or error (also SW_LOG_LEVEL).")
	f.StringVar(&level, "log-level", "error", "")
	_ = f.MarkDeprecated("log-level", "use --log.level") // the flag exists
	return cmd
}

// fromEnv sets *v from the environment variable of key unless the flag
// named key was given.
func fromEnv(cmd *cobra.Command, key string, v *string) error {
	if cmd.Flags().Changed(key) || cmd.Flags().Changed(strings.ReplaceAll(key, ".", "-")) {
		return nil
	}
	if s, ok := os.LookupEnv(config.EnvName(key)); ok {
		if s == "" {
			return usageError{fmt.Errorf("config: %s: %s is set but empty", key, config.EnvName(key))}
		}
		*v = s
	}
	return nil
}

func topicsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "topics", Short: "Manage the Kafka topics"}
	ensure := &cobra.Command{
		Use:   "ensure",
		Short: "Create missing topics and check existing ones (partitions, cleanup policy)",
		Long: `Create the input and output topics that do not exist yet, with topics.partitions
partitions and topics.replication_factor replicas (the aggregates topic is
compacted), and check those that exist. An existing topic is never altered.
More partitions than topics.partitions is accepted with a warning; fewer, or
another cleanup policy, is an error naming the topic and the fix, and the
command exits 1.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			cl, err := kafkaClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			specs := topics.Specs(app.Names(c.Topics), int32(c.Topics.Partitions), int16(c.Topics.ReplicationFactor))
			// One topic at a time, to show progress.
			pr := newProgress(cmd.ErrOrStderr(), "topics ensure", "topics", int64(len(specs)))
			adm := kadm.NewClient(cl)
			var errs []error
			var all []admin.Result
			for i, spec := range specs {
				pr.update(int64(i), spec.Name)
				results, err := admin.Ensure(cmd.Context(), adm, []topics.Spec{spec})
				all = append(all, results...)
				if err != nil {
					errs = append(errs, err)
					if len(results) == 0 { // the cluster could not be reached
						break
					}
				}
			}
			pr.finish(int64(len(all)), fmt.Sprintf("%d failed", len(errs)))
			// Printed once the bar's line is ended, not across it.
			for _, r := range all {
				fmt.Fprintln(cmd.OutOrStdout(), r)
			}
			for _, r := range all {
				if r.Warning != "" {
					fmt.Fprintln(cmd.ErrOrStderr(), "streamworker: warning:", r.Warning)
				}
			}
			return errors.Join(errs...)
		},
	}
	addConfigFlags(ensure.Flags())
	cmd.AddCommand(ensure)
	return cmd
}

func loadgenCmd() *cobra.Command {
	var g loadgen.Config
	cmd := &cobra.Command{
		Use:   "loadgen",
		Short: "Produce a synthetic user-activity workload to the input topic",
		Long: `Produce the user-activity workload of the event contract: sequenced events per
user with a share of duplicates, out-of-order and malformed records and
anomaly bursts. The stream is deterministic for a seed. It reaches Kafka with
the same kafka.* settings as run.`,
		Example: "  streamworker loadgen --rate 20000 --users 10000 --events 1000000",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			g.Topic = c.Topics.Input
			gen, err := loadgen.New(g)
			if err != nil {
				return usageError{err}
			}
			cl, err := kafkaClient(c, kgo.ProducerLinger(5*time.Millisecond))
			if err != nil {
				return err
			}
			defer cl.Close()
			pr := newProgress(cmd.ErrOrStderr(), "loadgen", "records", int64(g.Events))
			note := func(s loadgen.Stats) string {
				return fmt.Sprintf("valid %d, duplicates %d, malformed %d", s.Valid, s.Duplicates, s.Malformed)
			}
			st, err := loadgen.Produce(cmd.Context(), cl, gen, g.Rate, func(s loadgen.Stats) {
				pr.update(int64(s.Sent), note(s))
			})
			pr.finish(int64(st.Sent), note(st))
			fmt.Fprintf(cmd.OutOrStdout(), "done: sent %d in %s\n", st.Sent, st.Elapsed.Round(time.Millisecond))
			return err
		},
	}
	f := cmd.Flags()
	f.Float64Var(&g.Rate, "rate", 1000, "Records per second (0: as fast as possible).")
	f.IntVar(&g.Users, "users", 1000, "Distinct users.")
	f.IntVar(&g.Events, "events", 0, "Records to produce (0: until stopped).")
	f.Float64Var(&g.Duplicates, "duplicates", 0.05, "Fraction of duplicate records.")
	f.Float64Var(&g.OutOfOrder, "out-of-order", 0.03, "Fraction of events delivered out of sequence order.")
	f.Float64Var(&g.Malformed, "malformed", 0.01, "Fraction of malformed records.")
	f.Float64Var(&g.Bursts, "bursts", 0.02, "Fraction of users that get an anomaly burst.")
	f.Float64Var(&g.CloudEvents, "cloudevents", 0.1, "Fraction of events in CloudEvents binary mode.")
	f.Int64Var(&g.Seed, "seed", 1, "Seed: the same seed produces the same stream.")
	addConfigFlags(f)
	return cmd
}

// kafkaClient returns a plain client for the configured cluster.
func kafkaClient(c config.Config, extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := app.KafkaOpts(c.Kafka)
	if err != nil {
		return nil, usageError{err}
	}
	return kgo.NewClient(append(opts, extra...)...)
}
