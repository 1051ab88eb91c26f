package worker

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every metric the worker registers.
const Namespace = "streamworker"

// metrics are the worker's Prometheus metrics. They are registered on the
// Registerer given in Options, never on the global registry.
type metrics struct {
	consumed    *prometheus.CounterVec // topic
	processed   *prometheus.CounterVec // topic
	duplicates  *prometheus.CounterVec // topic
	late        *prometheus.CounterVec // topic
	stale       *prometheus.CounterVec // topic
	skipped     *prometheus.CounterVec // topic, reason
	keyMismatch *prometheus.CounterVec // topic
	gaps        *prometheus.CounterVec // topic
	dlq         *prometheus.CounterVec // reason
	outputs     *prometheus.CounterVec // topic
	milestones  prometheus.Counter
	anomalies   *prometheus.CounterVec // severity
	conflicts   *prometheus.CounterVec // kind
	held        *prometheus.CounterVec // topic
	parked      *prometheus.CounterVec // topic
	released    *prometheus.CounterVec // topic

	buffered      prometheus.Gauge
	bufferedBytes prometheus.Gauge

	batchSeconds    prometheus.Histogram
	endToEnd        prometheus.Histogram
	redisSeconds    *prometheus.HistogramVec // op
	redisErrors     *prometheus.CounterVec   // op
	produceErrors   prometheus.Counter
	rebalances      *prometheus.CounterVec // event
	assigned        prometheus.Gauge
	ready           prometheus.Gauge
	consumerLag     *prometheus.GaugeVec // group, topic, partition
	processedLag    *prometheus.GaugeVec // topic, partition
	lagSeconds      *prometheus.GaugeVec // topic, partition
	backlog         *prometheus.GaugeVec // topic
	dedupeHeadroom  prometheus.Gauge
	commitsTotal    prometheus.Counter
	commitErrors    prometheus.Counter
	partitionResets prometheus.Counter
	internalErrors  *prometheus.CounterVec // stage
	stuckSeconds    *prometheus.GaugeVec   // topic, partition
}

func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	}
	gaugeVec := func(name, help string, labels ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	}
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &metrics{
		consumed:    counter("events_consumed_total", "Input records read from Kafka.", "topic"),
		processed:   counter("events_processed_total", "Input events applied to an aggregate's state.", "topic"),
		duplicates:  counter("events_duplicate_total", "Input events dropped because their ID was already applied or buffered.", "topic"),
		late:        counter("events_late_total", "Sequenced events that arrived after their gap was given up (sent to the DLQ).", "topic"),
		stale:       counter("events_stale_total", "Applied events older than the user's anomaly window (counted, not rate-counted).", "topic"),
		skipped:     counter("events_skipped_total", "Input events skipped without a state change, by reason.", "topic", "reason"),
		keyMismatch: counter("events_key_mismatch_total", "Input events whose aggregateId differed from the record key (aggregateId wins).", "topic"),
		gaps:        counter("gaps_total", "Sequence gaps given up on (recorded on the gaps topic).", "topic"),
		dlq:         counter("dlq_total", "Records written to the dead-letter topic, by reason.", "reason"),
		outputs:     counter("outputs_total", "Output records acknowledged by Kafka, by topic.", "topic"),
		milestones: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "milestones_total",
			Help: "Milestones reached."}),
		anomalies: counter("anomalies_total", "Anomalies detected, by severity.", "severity"),
		conflicts: counter("state_conflicts_total", "State writes rejected by Redis (version: fenced by another owner; mark: event already applied).", "kind"),

		held: counter("events_held_total",
			"Input events of parked users held on the parked topic instead of being applied (input.on_poison: park).", "topic"),
		parked:   counter("users_parked_total", "Users parked because one of their records failed by itself (input.on_poison: park).", "topic"),
		released: counter("users_released_total", "Parked users released: their held events applied in order and the park cleared.", "topic"),

		buffered:      gauge("buffered_events", "Events held in the reorder buffers of this worker."),
		bufferedBytes: gauge("buffered_bytes", "Bytes of events held in the reorder buffers of this worker."),

		batchSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "batch_duration_seconds",
			Help: "Time to process one partition batch, from decode to persisted state.", Buckets: latency}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "end_to_end_latency_seconds",
			Help:    "Time from an input record's timestamp to the acknowledgement of the outputs it caused.",
			Buckets: latency}),
		redisSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "redis_duration_seconds",
			Help: "Redis round-trip latency, by operation.", Buckets: latency}, []string{"op"}),
		redisErrors: counter("redis_errors_total", "Failed Redis round trips, by operation.", "op"),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "produce_errors_total",
			Help: "Output records whose produce failed and was retried."}),
		rebalances: counter("rebalances_total", "Partition assignment changes, by event (assigned, revoked, lost).", "event"),
		assigned:   gauge("assigned_partitions", "Input partitions assigned to this worker."),
		ready:      gauge("ready", "1 when the worker has joined its group and Redis is reachable, else 0."),
		consumerLag: gaugeVec("consumer_lag", "Records between the group's committed offset and the log end, for partitions assigned to this worker.",
			"group", "topic", "partition"),
		processedLag: gaugeVec("processed_lag", "Records between this worker's processed position and the log end.", "topic", "partition"),
		lagSeconds:   gaugeVec("consumer_lag_seconds", "Age of the oldest record not yet processed, in seconds (0 when caught up).", "topic", "partition"),
		backlog:      gaugeVec("backlog", "Committed-offset lag plus buffered events, summed over this worker's partitions.", "topic"),
		dedupeHeadroom: gauge("dedupe_ttl_headroom_seconds",
			"dedupe.ttl minus the age of the oldest unprocessed record: below 0 a replay is no longer protected by dedupe marks."),
		commitsTotal: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "offset_commits_total",
			Help: "Offset commits sent to the group coordinator."}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "offset_commit_errors_total",
			Help: "Offset commits that failed."}),
		partitionResets: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "partition_resets_total",
			Help: "Times a partition's in-memory state was rebuilt from Redis to run a batch again, after a rejected state write or a failed call."}),
		internalErrors: counter("internal_errors_total",
			"Panics recovered, by stage (decode, process: the record is sent to the DLQ as internal_error; batch: the batch is retried).", "stage"),
		stuckSeconds: gaugeVec("partition_stuck_seconds",
			"How long the partition has been retrying a failed call, or waiting on a call or on Kafka beyond kafka.session_timeout (0 when neither); the worker is not ready meanwhile.", "topic", "partition"),
	}
	if reg != nil {
		reg.MustRegister(m.consumed, m.processed, m.duplicates, m.late, m.stale, m.skipped, m.keyMismatch, m.gaps,
			m.dlq, m.outputs, m.milestones, m.anomalies, m.conflicts, m.buffered, m.bufferedBytes, m.batchSeconds,
			m.endToEnd, m.redisSeconds, m.redisErrors, m.produceErrors, m.rebalances, m.assigned, m.ready,
			m.consumerLag, m.processedLag, m.lagSeconds, m.backlog, m.dedupeHeadroom, m.commitsTotal,
			m.commitErrors, m.partitionResets, m.internalErrors, m.stuckSeconds, m.held, m.parked, m.released)
	}
	return m
}

// ObserveRedis records one Redis round trip. It implements the state
// store's observer hook.
func (m *metrics) ObserveRedis(op string, d time.Duration, err error) {
	m.redisSeconds.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.redisErrors.WithLabelValues(op).Inc()
	}
}

// MetricDescs returns the descriptions of every metric the worker registers
// (not those of the Kafka client, which kprom adds). Tooling uses it to
// check that dashboards and alert rules name only real metrics and labels.
func MetricDescs() []*prometheus.Desc {
	reg := prometheus.NewPedanticRegistry()
	newMetrics(reg)
	ch := make(chan *prometheus.Desc)
	go func() {
		reg.Describe(ch)
		close(ch)
	}()
	var descs []*prometheus.Desc
	for d := range ch {
		descs = append(descs, d)
	}
	return descs
}
