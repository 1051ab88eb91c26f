// Package cli is the streamworker command line: run, dev, topics ensure,
// config check, loadgen, replay, dlq redrive, parked list and release, and
// version.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/app"
	"github.com/streamworker/streamworker/internal/buildinfo"
)

// Main runs the command line with args and returns the process exit code:
// 0 on success, 1 on a runtime error, 2 on a usage or configuration error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "streamworker:", err)
	var ue usageError
	if errors.As(err, &ue) {
		if cmd != nil && !isConfigError(err) {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return 2
	}
	return 1
}

// isConfigError reports whether err is about the configuration, which
// names its keys: no need to point at the usage.
func isConfigError(err error) bool {
	var fe *config.FieldError
	return errors.As(err, &fe) || strings.HasPrefix(err.Error(), "config: ")
}

// usageError marks errors in the invocation or the configuration.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "streamworker",
		Short: "Kafka stream-processing worker: per-user ordering, dedupe, aggregation, anomalies, milestones",
		Long: `streamworker reads user-activity events from Kafka, keeps each user's events in
order, drops duplicates through Redis, and publishes per-user aggregates,
anomalies and milestones to downstream topics.

Start here:
  streamworker dev                      everything in one process, no install
  streamworker run --config FILE        the worker, against your Kafka and Redis
  streamworker config check --config F  print the effective configuration

Every setting is a key (kafka.brokers), settable in the file, as an environment
variable (SW_KAFKA_BROKERS) or as a flag (--kafka.brokers). Flags win over the
environment, which wins over the file.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetUsageFunc(usage)
	root.Version = buildinfo.String()
	root.SetVersionTemplate("streamworker {{.Version}}\n")
	root.AddCommand(runCmd(), devCmd(), topicsCmd(), configCmd(), loadgenCmd(), replayCmd(), dlqCmd(), parkedCmd(), versionCmd(), lagExporterCmd())
	// cobra adds help and completion when it executes; added now, strict
	// covers them too (help bogus and completion bogus exited 0).
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "help" {
			c.Run, c.RunE = nil, helpRun
		}
	}
	strict(root)
	return root
}

// loadConfig loads and validates the configuration from cmd's flags, the
// environment and the --config file.
func loadConfig(cmd *cobra.Command) (config.Config, error) {
	c, err := config.Load(cmd.Flags())
	if err != nil {
		return c, usageError{err}
	}
	return c, nil
}

// newLogger returns the logger of c's log settings, writing to w.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.SlogLevel()}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func runCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the worker against the configured Kafka and Redis",
		Long: `Run the worker: join the consumer group, process the input topic, publish the
outputs, and serve /metrics, /livez and /readyz on http.addr. SIGTERM or
Ctrl-C drains (finish batches, flush, persist, commit, leave the group) within
shutdown.timeout. The configuration is checked before anything connects.`,
		Example: "  streamworker run --config /etc/streamworker/config.yaml\n  SW_KAFKA_BROKERS=k1:9092,k2:9092 SW_REDIS_ADDR=redis:6379 streamworker run",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			log := newLogger(c.Log, cmd.ErrOrStderr())
			slog.SetDefault(log)
			log.Info("starting", "version", buildinfo.String(), "group", c.Kafka.Group, "input", c.Topics.Input)
			return app.Run(cmd.Context(), c, log, nil)
		},
	}
	addConfigFlags(cmd.Flags())
	return cmd
}

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	var connect bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and print the effective values, secrets masked",
		Long: `Validate the configuration and print the effective values, secrets masked.
With --connect, then send one metadata request to Kafka and one PING to Redis
with the configured addresses, TLS and credentials, and say what is wrong:
authentication, TLS, or unreachable. Exit status: 0 valid (and reachable),
2 invalid, 1 Kafka or Redis failed.`,
		Example: "  streamworker config check --config prod.yaml\n  streamworker config check --connect",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			out, err := c.Redacted().YAML()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if _, err := w.Write(out); err != nil || !connect {
				return err
			}
			fmt.Fprintln(w, "# connecting to Kafka and Redis ...")
			kafkaErr, redisErr := app.Probe(cmd.Context(), c)
			for _, r := range []struct {
				name string
				err  error
			}{{"kafka", kafkaErr}, {"redis", redisErr}} {
				if r.err == nil {
					fmt.Fprintf(w, "# %s: ok\n", r.name)
				}
			}
			return errors.Join(kafkaErr, redisErr)
		},
	}
	check.Flags().BoolVar(&connect, "connect", false, "Also connect to Kafka and Redis and report what fails (authentication, TLS, unreachable).")
	addConfigFlags(check.Flags())
	cmd.AddCommand(check)
	return cmd
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  noArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "streamworker", buildinfo.String())
		},
	}
}
