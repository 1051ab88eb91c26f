// The lag-exporter command: serves the consumer group's lag, read from the
// brokers, as streamworker_group_lag on /metrics (internal/lagexport).
package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/lagexport"
)

func lagExporterCmd() *cobra.Command {
	var listen string
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "lag-exporter",
		Short: "Export the consumer group's lag, read from the brokers, on /metrics",
		Long: `Read the lag of kafka.group on topics.input from the brokers every --interval
and serve it on --listen as streamworker_group_lag{group,topic,partition}: every
partition exactly once, whether workers run or not (a partition the group never
committed counts from where kafka.start_offset starts). One exporter per group
is enough; the dashboard's total lag and KEDA's prometheus trigger read it.`,
		Example: "  streamworker lag-exporter --config /etc/streamworker/config.yaml --listen :9465",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return usageError{fmt.Errorf("--interval must be positive, got %s", interval)}
			}
			c, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			log := newLogger(c.Log, cmd.ErrOrStderr())
			cl, err := kafkaClient(c)
			if err != nil {
				return err
			}
			defer cl.Close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen: %w", err)
			}
			e := lagexport.New(kadm.NewClient(cl), c.Kafka.Group, []string{c.Topics.Input}, c.Kafka.StartOffset)
			reg := prometheus.NewRegistry()
			reg.MustRegister(e, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			mux := http.NewServeMux()
			mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			go e.Run(ctx, interval, log)
			go func() {
				<-ctx.Done()
				sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer scancel()
				_ = srv.Shutdown(sctx)
			}()
			log.Info("lag exporter started", "group", c.Kafka.Group, "topic", c.Topics.Input, "listen", ln.Addr().String())
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", ":9465", "Listen address of /metrics.")
	f.DurationVar(&interval, "interval", 15*time.Second, "Time between two reads of the group's lag.")
	config.RegisterFlags(f)
	return cmd
}
