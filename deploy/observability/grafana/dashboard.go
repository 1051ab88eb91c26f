package main

import (
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Dashboard identity. Other assets (the chart's ConfigMap, compose) load the
// generated file; links to the dashboard use the uid.
const (
	dashboardUID  = "streamworker"
	schemaVersion = 39 // Grafana 10.3 and later read it; newer ones migrate it
)

// sel filters the worker's series by the namespace and pod variables. Under
// docker-compose the series carry neither label: the "All" value ".*" also
// matches an absent label.
const sel = `namespace=~"$namespace", pod=~"$pod"`

// lagSel narrows the series that carry group and topic to the group and
// topic variables.
const lagSel = `group=~"$group", topic=~"$topic"`

// groupLag is the group's lag as the lag exporter reads it from the brokers:
// every partition once, workers running or not. Not filtered by pod: the
// exporter is not a worker.
const groupLag = `streamworker_group_lag{namespace=~"$namespace", ` + lagSel + `}`

// rate is the range used with rate(): Grafana's $__rate_interval is at
// least four scrape intervals, so rates never come out empty.
const rate = `[$__rate_interval]`

// worker is the per-worker grouping. Under Kubernetes pod names a worker;
// under docker-compose only instance does.
const worker = `pod, instance`
const workerLegend = `{{pod}} {{instance}}`

func ptr[T any](v T) *T { return &v }

var datasource = common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${datasource}")}

// q is one query of a panel.
type q struct{ expr, legend string }

func queries(qs []q) []cog.Builder[variants.Dataquery] {
	out := make([]cog.Builder[variants.Dataquery], 0, len(qs))
	for i, qq := range qs {
		out = append(out, prometheus.NewDataqueryBuilder().
			Datasource(datasource).
			Expr(strings.Join(strings.Fields(qq.expr), " ")).
			LegendFormat(qq.legend).
			RefId(string(rune('A'+i))).
			Range())
	}
	return out
}

// graph is a time series panel.
func graph(title, description, unit string, w uint32, qs ...q) *timeseries.PanelBuilder {
	return timeseries.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		Unit(unit).
		Min(0).
		Span(w).Height(8).
		FillOpacity(10).
		ShowPoints(common.VisibilityModeNever).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().
			Mode(common.TooltipDisplayModeMulti).
			Sort(common.SortOrderDescending)).
		Targets(queries(qs))
}

// step is one threshold: from value up, the color.
type step struct {
	from  *float64 // nil: from minus infinity
	color string
}

func thresholds(steps ...step) *dashboard.ThresholdsConfigBuilder {
	ts := make([]dashboard.Threshold, 0, len(steps))
	for _, s := range steps {
		ts = append(ts, dashboard.Threshold{Value: s.from, Color: s.color})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

// single is a stat panel showing the last value of one query.
func single(title, description, unit string, th *dashboard.ThresholdsConfigBuilder, qs ...q) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Datasource(datasource).
		Unit(unit).
		Span(6).Height(4).
		Thresholds(th).
		ColorMode(common.BigValueColorModeBackground).
		GraphMode(common.BigValueGraphModeArea).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
		Targets(queries(qs))
}

// queryVariable is a multi-value variable over the values of a label.
func queryVariable(name, label, query, description string) *dashboard.QueryVariableBuilder {
	return dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Description(description).
		Datasource(datasource).
		Query(dashboard.StringOrMap{String: ptr(query)}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(".*").
		Current(dashboard.VariableOption{
			Text:  dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
}

// Build returns the streamworker dashboard.
func Build() (dashboard.Dashboard, error) {
	green, orange, red := "green", "orange", "red"
	b := dashboard.NewDashboardBuilder("streamworker").
		Uid(dashboardUID).
		Description("Kafka stream-processing workers: consumer lag first, then throughput, latency, data quality, Redis, the consumer group, processors, the Kafka client and the Go runtime.").
		Tags([]string{"streamworker", "kafka", "redis"}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Time("now-3h", "now").
		Refresh("30s").
		Timezone("browser").
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Description("The Prometheus that scrapes the workers.").
			Type("prometheus")).
		WithVariable(queryVariable("namespace", "Namespace",
			`label_values(streamworker_ready, namespace)`,
			"Kubernetes namespace of the workers (empty under docker-compose).")).
		WithVariable(queryVariable("pod", "Pod",
			`label_values(streamworker_ready{namespace=~"$namespace"}, pod)`,
			"Worker pods (empty under docker-compose).")).
		WithVariable(queryVariable("group", "Consumer group",
			`label_values(streamworker_consumer_lag{namespace=~"$namespace"}, group)`,
			"Kafka consumer group; filters the consumer-lag panels, the only series that carry the group.")).
		WithVariable(queryVariable("topic", "Input topic",
			`label_values(streamworker_events_consumed_total{namespace=~"$namespace"}, topic)`,
			"Input topic; filters the consumer-lag and consumption panels."))

	// Consumer lag first: it is the question an operator opens this for.
	b.WithRow(dashboard.NewRowBuilder("Consumer lag")).
		WithPanel(single("Total consumer lag",
			"Records between the group's committed offsets and the log end, every partition counted once, read from the brokers by the lag exporter (streamworker lag-exporter): it stays right during a hand-over and with no worker running. Without the exporter, the workers' own lag, each partition once (max over the workers reporting it).",
			"short", thresholds(step{nil, green}, step{ptr(10_000.0), orange}, step{ptr(1_000_000.0), red}),
			q{`sum(` + groupLag + `)
			or sum(max by (group, topic, partition) (streamworker_consumer_lag{` + sel + `, ` + lagSel + `}))`, "lag"})).
		WithPanel(single("Max time lag",
			"Age of the oldest record not yet processed, worst partition. Alert at 5 minutes.",
			"s", thresholds(step{nil, green}, step{ptr(60.0), orange}, step{ptr(300.0), red}),
			q{`max(streamworker_consumer_lag_seconds{` + sel + `, topic=~"$topic"})`, "time lag"})).
		WithPanel(single("Backlog",
			"Committed-offset lag plus events held in the reorder buffers: the work still ahead of the workers.",
			"short", thresholds(step{nil, green}, step{ptr(10_000.0), orange}, step{ptr(1_000_000.0), red}),
			q{`sum(streamworker_backlog{` + sel + `})`, "backlog"})).
		WithPanel(single("Dedupe TTL headroom",
			"dedupe.ttl minus the age of the oldest unprocessed record, worst worker. Below 0 a replay of that record is no longer protected by its dedupe mark; alert below 1 hour.",
			"s", thresholds(step{nil, red}, step{ptr(3600.0), orange}, step{ptr(6 * 3600.0), green}),
			q{`min(streamworker_dedupe_ttl_headroom_seconds{` + sel + `})`, "headroom"})).
		WithPanel(graph("Consumer lag per partition",
			"Committed-offset lag of each input partition (high watermark minus committed offset), from the lag exporter when it runs, else from the workers (max() keeps a partition counted once while two workers hand it over).",
			"short", 12,
			q{`max by (group, topic, partition) (` + groupLag + `)
			or max by (group, topic, partition) (streamworker_consumer_lag{` + sel + `, ` + lagSel + `})`, "{{group}} {{topic}}/{{partition}}"})).
		WithPanel(graph("Time lag per partition",
			"Age of the oldest record not yet processed on each partition (0 when caught up).",
			"s", 12,
			q{`max by (topic, partition) (streamworker_consumer_lag_seconds{` + sel + `, topic=~"$topic"})`, "{{topic}}/{{partition}}"})).
		WithPanel(graph("Committed vs processed lag",
			"Total lag by topic, behind the committed offsets and behind what the workers have processed. A widening gap means processed work is not being committed.",
			"short", 8,
			q{`sum by (group, topic) (streamworker_consumer_lag{` + sel + `, ` + lagSel + `})`, "committed {{group}} {{topic}}"},
			q{`sum by (topic) (streamworker_processed_lag{` + sel + `})`, "processed {{topic}}"})).
		WithPanel(graph("Backlog by topic",
			"Committed-offset lag plus buffered events, by input topic.",
			"short", 8,
			q{`sum by (topic) (streamworker_backlog{` + sel + `})`, "{{topic}}"})).
		WithPanel(graph("Dedupe TTL headroom per worker",
			"How long each worker can still fall behind before a replay escapes deduplication.",
			"s", 8,
			q{`min by (` + worker + `) (streamworker_dedupe_ttl_headroom_seconds{` + sel + `})`, workerLegend}))

	b.WithRow(dashboard.NewRowBuilder("Throughput")).
		WithPanel(graph("Events in",
			"Input records read from Kafka and input events applied to an aggregate's state, by topic.",
			"eps", 8,
			q{`sum by (topic) (rate(streamworker_events_consumed_total{` + sel + `}` + rate + `))`, "consumed {{topic}}"},
			q{`sum by (topic) (rate(streamworker_events_processed_total{` + sel + `}` + rate + `))`, "processed {{topic}}"})).
		WithPanel(graph("Outputs by topic",
			"Output records acknowledged by Kafka, by output topic, and produce attempts that failed and were retried.",
			"recps", 8,
			q{`sum by (topic) (rate(streamworker_outputs_total{` + sel + `}` + rate + `))`, "{{topic}}"},
			q{`sum(rate(streamworker_produce_errors_total{` + sel + `}` + rate + `))`, "produce errors (retried)"})).
		WithPanel(graph("Skipped, stale, late and mismatched events",
			"Inputs that changed no state (by reason), applied events too old for the anomaly window, sequenced events that came after their gap was given up, and events whose aggregateId differed from the record key.",
			"eps", 8,
			q{`sum by (reason) (rate(streamworker_events_skipped_total{` + sel + `}` + rate + `))`, "skipped {{reason}}"},
			q{`sum by (topic) (rate(streamworker_events_stale_total{` + sel + `}` + rate + `))`, "stale {{topic}}"},
			q{`sum by (topic) (rate(streamworker_events_late_total{` + sel + `}` + rate + `))`, "late {{topic}}"},
			q{`sum by (topic) (rate(streamworker_events_key_mismatch_total{` + sel + `}` + rate + `))`, "key mismatch {{topic}}"}))

	latency := func(metric string) []q {
		var qs []q
		for _, p := range []struct{ quantile, legend string }{{"0.5", "p50"}, {"0.9", "p90"}, {"0.99", "p99"}} {
			qs = append(qs, q{`histogram_quantile(` + p.quantile + `, sum by (le) (rate(` + metric + `_bucket{` + sel + `}` + rate + `)))`,
				p.legend})
		}
		return qs
	}
	b.WithRow(dashboard.NewRowBuilder("Latency")).
		WithPanel(graph("Batch duration",
			"Time to process one partition batch, from decode to persisted state: p50, p90, p99 over the selected workers.",
			"s", 12, latency("streamworker_batch_duration_seconds")...)).
		WithPanel(graph("End-to-end latency",
			"Time from an input record's timestamp to the acknowledgement of the outputs it caused: p50, p90, p99.",
			"s", 12, latency("streamworker_end_to_end_latency_seconds")...))

	b.WithRow(dashboard.NewRowBuilder("Duplicates, dead letters and sequencing")).
		WithPanel(graph("Duplicates dropped",
			"Input events dropped because their ID was already applied or buffered, by topic.",
			"eps", 8,
			q{`sum by (topic) (rate(streamworker_events_duplicate_total{` + sel + `}` + rate + `))`, "{{topic}}"})).
		WithPanel(graph("Dead-lettered records by reason",
			"Records written to the dead-letter topic, by reason. Alerted when above 1% of the consumed records for 10 minutes.",
			"recps", 8,
			q{`sum by (reason) (rate(streamworker_dlq_total{` + sel + `}` + rate + `))`, "{{reason}}"})).
		WithPanel(graph("Sequence gaps given up",
			"Gaps in an aggregate's sequence numbers that the workers stopped waiting for (recorded on the gaps topic), per minute.",
			"cpm", 8,
			q{`sum by (topic) (rate(streamworker_gaps_total{` + sel + `}` + rate + `)) * 60`, "{{topic}}"})).
		WithPanel(graph("Buffered events",
			"Out-of-order events held in each worker's reorder buffers, waiting for a gap to fill.",
			"short", 12,
			q{`sum by (` + worker + `) (streamworker_buffered_events{` + sel + `})`, workerLegend})).
		WithPanel(graph("Buffered bytes",
			"Bytes of events held in each worker's reorder buffers.",
			"bytes", 12,
			q{`sum by (` + worker + `) (streamworker_buffered_bytes{` + sel + `})`, workerLegend}))

	b.WithRow(dashboard.NewRowBuilder("Redis")).
		WithPanel(graph("Redis p99 latency by operation",
			"99th percentile of Redis round trips, by operation.",
			"s", 8,
			q{`histogram_quantile(0.99, sum by (le, op) (rate(streamworker_redis_duration_seconds_bucket{` + sel + `}` + rate + `)))`, "{{op}}"})).
		WithPanel(graph("Redis round trips by operation",
			"Redis round trips per second, by operation.",
			"ops", 8,
			q{`sum by (op) (rate(streamworker_redis_duration_seconds_count{` + sel + `}` + rate + `))`, "{{op}}"})).
		WithPanel(graph("Redis errors by operation",
			"Failed Redis round trips per second, by operation. The workers retry with backoff; sustained errors stall processing and grow lag.",
			"ops", 8,
			q{`sum by (op) (rate(streamworker_redis_errors_total{` + sel + `}` + rate + `))`, "{{op}}"}))

	b.WithRow(dashboard.NewRowBuilder("Consumer group and health")).
		WithPanel(single("Ready workers",
			"Workers that have joined their group and reach Redis, out of the workers scraped.",
			"short", thresholds(step{nil, red}, step{ptr(1.0), green}),
			q{`sum(streamworker_ready{` + sel + `})`, "ready"},
			q{`count(streamworker_ready{` + sel + `})`, "scraped"}).Height(8)).
		WithPanel(graph("Readiness per worker",
			"1 when the worker has joined its group and Redis is reachable, else 0. Alerted after 5 minutes at 0.",
			"short", 6,
			q{`max by (` + worker + `) (streamworker_ready{` + sel + `})`, workerLegend}).Max(1)).
		WithPanel(graph("Assigned partitions per worker",
			"Input partitions each worker owns. Uneven counts or partitions owned by nobody show here first.",
			"short", 6,
			q{`sum by (` + worker + `) (streamworker_assigned_partitions{` + sel + `})`, workerLegend})).
		WithPanel(graph("Rebalances",
			"Partition assignment changes per minute, by event (assigned, revoked, lost).",
			"cpm", 6,
			q{`sum by (event) (rate(streamworker_rebalances_total{` + sel + `}` + rate + `)) * 60`, "{{event}}"})).
		WithPanel(graph("Partition resets and state conflicts",
			"State writes Redis rejected (version: fenced by another owner; mark: event already applied) and the partition state rebuilds they caused, per minute. A few around a rebalance are expected.",
			"cpm", 12,
			q{`sum by (kind) (rate(streamworker_state_conflicts_total{` + sel + `}` + rate + `)) * 60`, "conflict {{kind}}"},
			q{`sum by (` + worker + `) (rate(streamworker_partition_resets_total{` + sel + `}` + rate + `)) * 60`, "resets " + workerLegend})).
		WithPanel(graph("Offset commits",
			"Offset commits sent to the group coordinator and those that failed. Failing commits leave the lag high even when processing keeps up.",
			"ops", 12,
			q{`sum(rate(streamworker_offset_commits_total{` + sel + `}` + rate + `))`, "commits"},
			q{`sum(rate(streamworker_offset_commit_errors_total{` + sel + `}` + rate + `))`, "errors"})).
		WithPanel(graph("Stuck partitions",
			"How long each partition has been retrying a failing Redis or Kafka call without progress (0 when it moves). A stuck partition makes its worker not ready; alerted after 5 minutes.",
			"s", 12,
			q{`max by (topic, partition) (streamworker_partition_stuck_seconds{` + sel + `})`, "{{topic}}/{{partition}}"})).
		WithPanel(graph("Internal errors by stage",
			"Records that failed inside the worker (a panic or an error no record caused) and were isolated to the DLQ as internal_error, per minute, by pipeline stage. Any is a bug to report.",
			"cpm", 12,
			q{`sum by (stage) (rate(streamworker_internal_errors_total{` + sel + `}` + rate + `)) * 60`, "{{stage}}"})).
		WithPanel(graph("Parked users",
			"With input.on_poison: park, users parked because one of their records failed by itself (that record is on the DLQ), users released by `streamworker parked release`, and the events of parked users held on the parked topic instead of being applied, per minute. `streamworker parked list` names the users parked now.",
			"cpm", 24,
			q{`sum(rate(streamworker_users_parked_total{` + sel + `}` + rate + `)) * 60`, "parked"},
			q{`sum(rate(streamworker_users_released_total{` + sel + `}` + rate + `)) * 60`, "released"},
			q{`sum(rate(streamworker_events_held_total{` + sel + `}` + rate + `)) * 60`, "events held"}))

	b.WithRow(dashboard.NewRowBuilder("Processors")).
		WithPanel(graph("Anomalies by severity",
			"High-activity anomalies detected per minute, by severity.",
			"cpm", 12,
			q{`sum by (severity) (rate(streamworker_anomalies_total{` + sel + `}` + rate + `)) * 60`, "{{severity}}"})).
		WithPanel(graph("Milestones",
			"Milestones reached per minute.",
			"cpm", 12,
			q{`sum(rate(streamworker_milestones_total{` + sel + `}` + rate + `)) * 60`, "milestones"}))

	b.WithRow(dashboard.NewRowBuilder("Kafka client")).
		WithPanel(graph("Fetched and produced bytes by topic",
			"Uncompressed bytes the Kafka client fetched and produced, by topic (franz-go kprom metrics).",
			"Bps", 8,
			q{`sum by (topic) (rate(streamworker_kafka_fetch_bytes_total{` + sel + `}` + rate + `))`, "fetch {{topic}}"},
			q{`sum by (topic) (rate(streamworker_kafka_produce_bytes_total{` + sel + `}` + rate + `))`, "produce {{topic}}"})).
		WithPanel(graph("Broker connection and I/O errors",
			"Failed connections, reads and writes to each broker, per second.",
			"ops", 8,
			q{`sum by (node_id) (rate(streamworker_kafka_connect_errors_total{` + sel + `}` + rate + `))`, "connect {{node_id}}"},
			q{`sum by (node_id) (rate(streamworker_kafka_read_errors_total{` + sel + `}` + rate + `))`, "read {{node_id}}"},
			q{`sum by (node_id) (rate(streamworker_kafka_write_errors_total{` + sel + `}` + rate + `))`, "write {{node_id}}"})).
		WithPanel(graph("Records buffered in the client",
			"Records the Kafka client has fetched but not yet handed out, and records waiting to be produced, per worker.",
			"short", 8,
			q{`sum by (` + worker + `) (streamworker_kafka_buffered_fetch_records_total{` + sel + `})`, "fetch " + workerLegend},
			q{`sum by (` + worker + `) (streamworker_kafka_buffered_produce_records_total{` + sel + `})`, "produce " + workerLegend}))

	// The runtime series carry no streamworker_ prefix: keep only targets
	// that also export the worker's readiness gauge.
	onlyWorkers := ` and on (namespace, pod, job, instance) streamworker_ready{` + sel + `}`
	b.WithRow(dashboard.NewRowBuilder("Go runtime").
		WithPanel(graph("Resident memory",
			"Resident set size of each worker process.",
			"bytes", 8,
			q{`sum by (` + worker + `) (process_resident_memory_bytes{` + sel + `}` + onlyWorkers + `)`, workerLegend})).
		WithPanel(graph("CPU",
			"CPU time used by each worker process, in cores.",
			"short", 8,
			q{`sum by (` + worker + `) (rate(process_cpu_seconds_total{` + sel + `}` + rate + `)` + onlyWorkers + `)`, workerLegend})).
		WithPanel(graph("Goroutines",
			"Goroutines in each worker process: about one per assigned partition plus a fixed set.",
			"short", 8,
			q{`sum by (` + worker + `) (go_goroutines{` + sel + `}` + onlyWorkers + `)`, workerLegend})))

	d, err := b.Build()
	if err != nil {
		return d, err
	}
	d.SchemaVersion = schemaVersion
	// Stable panel IDs, in layout order, so that links to a panel survive
	// regeneration.
	id := uint32(1)
	for _, p := range d.Panels {
		switch {
		case p.Panel != nil:
			p.Panel.Id = ptr(id)
		case p.RowPanel != nil:
			p.RowPanel.Id = id
			for i := range p.RowPanel.Panels {
				id++
				p.RowPanel.Panels[i].Id = ptr(id)
			}
		}
		id++
	}
	return d, nil
}
