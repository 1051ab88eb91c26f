package config

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/topics"
)

// MaxPollRecords bounds kafka.max_poll_records: a batch checks each event
// against the IDs its user already applied in it, so a producer that fills a
// poll with one user's events costs the square of this.
const MaxPollRecords = 10_000

// Limits of the durations, chosen from what the broker and Redis accept.
const (
	// MinSessionTimeout and MaxSessionTimeout are the defaults of the
	// broker's group.min.session.timeout.ms and group.max.session.timeout.ms:
	// a broker with default settings refuses a member outside them
	// (INVALID_SESSION_TIMEOUT).
	MinSessionTimeout = 6 * time.Second
	MaxSessionTimeout = 30 * time.Minute
	// MinRebalanceTimeout and MaxRebalanceTimeout bound the time the group
	// waits for members to rejoin; the wire field holds up to ~24 days, a
	// day is already far beyond a useful rebalance.
	MinRebalanceTimeout = time.Second
	MaxRebalanceTimeout = 24 * time.Hour
	// MinCommitInterval and MaxCommitInterval bound the time between two
	// commits: below 10ms a commit per poll costs more than it saves, above
	// an hour a restart re-reads an hour of input.
	MinCommitInterval = 10 * time.Millisecond
	MaxCommitInterval = time.Hour
	// MinRedisTimeout and MaxRedisTimeout bound redis.timeout and
	// redis.dial_timeout: below 10ms a busy network times out ordinary
	// calls, above 5 minutes a dead server blocks a partition that long.
	MinRedisTimeout = 10 * time.Millisecond
	MaxRedisTimeout = 5 * time.Minute
	// MinDedupeTTL and MaxDedupeTTL bound dedupe.ttl: Redis keeps a mark
	// for whole milliseconds (SET PX) and a mark shorter than a second
	// turns duplicate detection off in practice; a year is far beyond any
	// replay horizon and caps the memory the marks take.
	MinDedupeTTL = time.Second
	MaxDedupeTTL = 365 * 24 * time.Hour
)

// FieldError is one problem with one configuration key.
type FieldError struct {
	Key    string // e.g. "milestones.every"
	Value  string // the offending value in the environment syntax; "***" for a secret
	Reason string // e.g. "must be at least 1"
}

// Error returns e.g. "config: milestones.every = 0: must be at least 1", or
// "config: kafka.group: must not be empty" when the value is empty.
func (e *FieldError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("config: %s: %s", e.Key, e.Reason)
	}
	return fmt.Sprintf("config: %s = %s: %s", e.Key, e.Value, e.Reason)
}

// Validate checks every key and returns all problems joined with
// errors.Join, each a *FieldError, or nil. It checks that the TLS and
// password files it names can be read.
func (c *Config) Validate() error {
	var errs []error
	for _, p := range c.validate() {
		errs = append(errs, p)
	}
	return errors.Join(errs...)
}

// problems collects FieldErrors.
type problems []*FieldError

// check adds a problem with key unless ok.
func (p *problems) check(ok bool, key string, value any, reason string) {
	if !ok {
		*p = append(*p, &FieldError{Key: key, Value: formatValue(value), Reason: reason})
	}
}

func (p *problems) oneOf(key, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	for i, a := range allowed {
		if a == "" {
			allowed[i] = `"" (none)`
		}
	}
	p.check(false, key, value, "must be one of "+strings.Join(allowed, ", "))
}

func (p *problems) atLeast(key string, value, least int) {
	p.check(value >= least, key, value, "must be at least "+strconv.Itoa(least))
}

func (p *problems) positive(key string, d time.Duration) {
	p.check(d > 0, key, d, "must be positive")
}

// within checks least <= d <= most; a non-positive d is "must be positive".
func (p *problems) within(key string, d, least, most time.Duration) {
	if d <= 0 {
		p.positive(key, d)
		return
	}
	p.check(d >= least && d <= most, key, d, "must be between "+formatDuration(least)+" and "+formatDuration(most))
}

// notBlank refuses an empty value and one that is only white space or has
// white space around it, which no broker or server name means.
func (p *problems) notBlank(key, value string) {
	switch {
	case value == "":
		p.check(false, key, value, "must not be empty")
	case strings.TrimSpace(value) != value:
		p.check(false, key, strconv.Quote(value), "must not start or end with white space")
	}
}

func (p *problems) hostPort(key, addr string, needHost bool) {
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	p.check(err == nil && perr == nil && n >= 0 && n <= 65535 && (host != "" || !needHost),
		key, addr, map[bool]string{true: "must be host:port", false: "must be host:port or :port"}[needHost])
}

func (p *problems) readable(key, path string) {
	f, err := os.Open(path)
	if err != nil {
		p.check(false, key, path, "cannot read: "+pathReason(err))
		return
	}
	_ = f.Close() // opened for reading only
}

// pathReason drops the path from a file error, which already names it.
func pathReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func (p *problems) password(prefix string, password Secret, file string) {
	if file == "" {
		return
	}
	p.check(password == "", prefix+"password_file", file, "cannot be set together with "+prefix+"password")
	p.readable(prefix+"password_file", file)
}

func (p *problems) tls(prefix string, t TLS) {
	off := "needs " + prefix + "enabled: true"
	for _, f := range []struct{ key, path string }{
		{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile},
	} {
		if f.path != "" {
			p.check(t.Enabled, prefix+f.key, f.path, off)
			p.readable(prefix+f.key, f.path)
		}
	}
	p.check(t.ServerName == "" || t.Enabled, prefix+"server_name", t.ServerName, off)
	p.check(!t.InsecureSkipVerify || t.Enabled, prefix+"insecure_skip_verify", t.InsecureSkipVerify, off)
	p.check(t.KeyFile != "" || t.CertFile == "", prefix+"key_file", t.KeyFile, "must be set with "+prefix+"cert_file")
	p.check(t.CertFile != "" || t.KeyFile == "", prefix+"cert_file", t.CertFile, "must be set with "+prefix+"key_file")
}

// topicName matches a legal Kafka topic name.
var topicName = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// largestOutput is the largest output record the bounds allow: the
// largest output value the processors can build from events within the
// input bounds (every string at its worst JSON escaping), keyed by the
// longest aggregate ID, with a traceparent header and the record's
// overhead.
func (c *Config) largestOutput() ByteSize {
	pc := processors.DefaultConfig()
	pc.MaxResources, pc.MaxActions = c.Aggregation.MaxResources, c.Aggregation.MaxActions
	const traceparentAndOverhead = 256
	return ByteSize(pc.MaxOutputBytes(c.Limits())) + c.Input.MaxAggregateIDBytes + traceparentAndOverhead
}

// Limits returns the input bounds of c.
func (c *Config) Limits() topics.Limits {
	return topics.Limits{MaxBytes: int(c.Input.MaxBytes), MaxIDBytes: int(c.Input.MaxIDBytes),
		MaxAggregateIDBytes: int(c.Input.MaxAggregateIDBytes), MaxLabelBytes: int(c.Input.MaxLabelBytes),
		MaxTimeAhead: c.Input.MaxTimeAhead}
}

func (c *Config) validate() problems {
	var p problems
	// Keys with a fixed set of values say it in a values tag.
	walk(reflect.ValueOf(c).Elem(), "", func(key string, f reflect.StructField, v reflect.Value) {
		if allowed, ok := f.Tag.Lookup("values"); ok {
			p.oneOf(key, v.String(), strings.Split(allowed, "|")...)
		}
	})

	k := c.Kafka
	p.check(len(k.Brokers) > 0, "kafka.brokers", k.Brokers, "must not be empty")
	for _, b := range k.Brokers {
		p.hostPort("kafka.brokers", b, true)
	}
	p.notBlank("kafka.group", k.Group)
	p.notBlank("kafka.client_id", k.ClientID)
	p.within("kafka.commit_interval", k.CommitInterval, MinCommitInterval, MaxCommitInterval)
	p.check(k.MaxPollRecords >= 1 && k.MaxPollRecords <= MaxPollRecords, "kafka.max_poll_records", k.MaxPollRecords,
		"must be between 1 and "+strconv.Itoa(MaxPollRecords))
	p.check(k.FetchMaxPartitionBytes >= KiB && k.FetchMaxPartitionBytes <= 64*MiB, "kafka.fetch_max_partition_bytes", k.FetchMaxPartitionBytes,
		"must be between 1KiB and 64MiB")
	p.check(k.FetchMinBytes >= 1 && k.FetchMinBytes <= 64*MiB, "kafka.fetch_min_bytes", k.FetchMinBytes,
		"must be between 1B and 64MiB")
	p.check(k.FetchMaxWait >= 10*time.Millisecond && k.FetchMaxWait <= 30*time.Second, "kafka.fetch_max_wait", k.FetchMaxWait,
		"must be between 10ms and 30s")
	p.within("kafka.session_timeout", k.SessionTimeout, MinSessionTimeout, MaxSessionTimeout)
	p.within("kafka.rebalance_timeout", k.RebalanceTimeout, MinRebalanceTimeout, MaxRebalanceTimeout)
	p.check(k.MaxMessageBytes >= KiB && k.MaxMessageBytes <= 100*MiB, "kafka.max_message_bytes", k.MaxMessageBytes,
		"must be between 1KiB and 100MiB")
	p.check(k.MaxMessageBytes >= c.Input.MaxBytes || k.MaxMessageBytes < KiB, "kafka.max_message_bytes", k.MaxMessageBytes,
		"must be at least input.max_bytes ("+c.Input.MaxBytes.String()+"): the DLQ copy of an accepted record must fit")
	if est := c.largestOutput(); est > k.MaxMessageBytes && k.MaxMessageBytes >= c.Input.MaxBytes {
		p.check(false, "kafka.max_message_bytes", k.MaxMessageBytes, "must hold the largest output the input bounds allow ("+
			strconv.FormatInt(int64(est), 10)+" bytes: aggregation.max_resources and max_actions keys of input.max_label_bytes, IDs of input.max_id_bytes and max_aggregate_id_bytes)")
	}
	p.within("kafka.lag_interval", k.LagInterval, time.Second, 10*time.Minute)
	s := k.SASL
	if s.Mechanism != "" {
		p.check(s.Username != "", "kafka.sasl.username", s.Username, "must be set with kafka.sasl.mechanism")
		p.check(s.Password != "" || s.PasswordFile != "", "kafka.sasl.password", s.Password,
			"must be set (or kafka.sasl.password_file) with kafka.sasl.mechanism")
	} else {
		p.check(s.Username == "" && s.Password == "" && s.PasswordFile == "", "kafka.sasl.mechanism", s.Mechanism,
			"must be set when a SASL user name or password is")
	}
	p.password("kafka.sasl.", s.Password, s.PasswordFile)
	p.tls("kafka.tls.", k.TLS)

	t := c.Topics
	seen := map[string]string{}
	for _, tp := range []struct{ key, name string }{
		{"topics.input", t.Input}, {"topics.aggregates", t.Aggregates}, {"topics.milestones", t.Milestones},
		{"topics.anomalies", t.Anomalies}, {"topics.dlq", t.DLQ}, {"topics.gaps", t.Gaps},
		{"topics.parked", t.Parked},
	} {
		switch {
		case tp.name == "":
			p.check(false, tp.key, tp.name, "must not be empty")
		case !topicName.MatchString(tp.name) || tp.name == "." || tp.name == "..":
			p.check(false, tp.key, tp.name, "must be a Kafka topic name: at most 249 of a-z, A-Z, 0-9, '.', '_', '-'")
		case seen[tp.name] != "":
			p.check(false, tp.key, tp.name, "must differ from "+seen[tp.name])
		default:
			seen[tp.name] = tp.key
		}
	}
	p.atLeast("topics.partitions", t.Partitions, 1)
	p.check(t.ReplicationFactor == -1 || t.ReplicationFactor >= 1, "topics.replication_factor", t.ReplicationFactor,
		"must be -1 (broker default) or at least 1")

	r := c.Redis
	p.check(len(r.Addrs) > 0, "redis.addr", r.Addrs, "must not be empty")
	for _, a := range r.Addrs {
		p.hostPort("redis.addr", a, true)
	}
	p.password("redis.", r.Password, r.PasswordFile)
	p.atLeast("redis.db", r.DB, 0)
	p.check(r.DB == 0 || len(r.Addrs) < 2 || r.MasterName != "", "redis.db", r.DB,
		"must be 0 with several redis.addr (Redis Cluster)")
	p.check(r.KeyPrefix != "", "redis.key_prefix", r.KeyPrefix, "must not be empty")
	if err := (dedupe.Keys{Prefix: r.KeyPrefix}).Validate(); err != nil {
		p.check(false, "redis.key_prefix", r.KeyPrefix, strings.TrimPrefix(err.Error(), "dedupe: "))
	}
	p.tls("redis.tls.", r.TLS)
	p.within("redis.dial_timeout", r.DialTimeout, MinRedisTimeout, MaxRedisTimeout)
	p.within("redis.timeout", r.Timeout, MinRedisTimeout, MaxRedisTimeout)
	p.atLeast("redis.pool_size", r.PoolSize, 0)
	p.check(r.MinReplicasAcked >= 0 && r.MinReplicasAcked <= 16, "redis.min_replicas_acked", r.MinReplicasAcked,
		"must be between 0 and 16")
	p.within("redis.replica_ack_timeout", r.ReplicaAckTimeout, time.Millisecond, time.Minute)
	// WAIT blocks the connection: the client must not give up first.
	p.check(r.ReplicaAckTimeout < r.Timeout || r.MinReplicasAcked == 0, "redis.replica_ack_timeout", r.ReplicaAckTimeout,
		"must be below redis.timeout ("+formatDuration(r.Timeout)+") when redis.min_replicas_acked is set")

	q := c.Sequencing
	p.within("dedupe.ttl", c.Dedupe.TTL, MinDedupeTTL, MaxDedupeTTL)
	// After a crash the records since the last commit are read again, once
	// the group has noticed (a session timeout): their marks must still be
	// there. An out-of-order event held in the reorder buffer keeps the
	// commit point back for up to its gap timeout, plus a quarter of it
	// (how often an idle partition looks for expired gaps), while the
	// records after it are applied and marked.
	if least := k.CommitInterval + k.SessionTimeout + q.GapTimeout + q.GapTimeout/4; c.Dedupe.TTL < least && c.Dedupe.TTL >= MinDedupeTTL {
		p.check(false, "dedupe.ttl", c.Dedupe.TTL, "must be at least kafka.commit_interval + kafka.session_timeout + 1.25 × sequencing.gap_timeout ("+
			formatDuration(least)+"): the records since the last commit, which a held out-of-order event keeps back, are read again after a crash")
	}
	p.atLeast("dedupe.recent_size", c.Dedupe.RecentSize, 0)
	p.atLeast("state.cache_size", c.State.CacheSize, 0)

	p.within("sequencing.gap_timeout", q.GapTimeout, time.Millisecond, 24*time.Hour)
	p.atLeast("sequencing.max_buffered", q.MaxBuffered, 1)
	p.atLeast("sequencing.max_buffered_partition", q.MaxBufferedPartition, 1)
	p.check(q.MaxBufferedBytes >= 1, "sequencing.max_buffered_bytes", q.MaxBufferedBytes, "must be at least 1")
	p.check(q.MaxBuffered <= q.MaxBufferedPartition || q.MaxBufferedPartition < 1, "sequencing.max_buffered", q.MaxBuffered,
		"must not exceed sequencing.max_buffered_partition ("+formatValue(q.MaxBufferedPartition)+")")
	p.check(q.MaxBufferedBytes >= c.Input.MaxBytes || q.MaxBufferedBytes < 1, "sequencing.max_buffered_bytes", q.MaxBufferedBytes,
		"must be at least input.max_bytes ("+c.Input.MaxBytes.String()+"): an out-of-order event of the largest accepted size must fit")

	p.check(c.Input.MaxBytes >= KiB && c.Input.MaxBytes <= 100*MiB, "input.max_bytes", c.Input.MaxBytes,
		"must be between 1KiB and 100MiB")
	for _, b := range []struct {
		key  string
		size ByteSize
	}{
		{"input.max_id_bytes", c.Input.MaxIDBytes}, {"input.max_aggregate_id_bytes", c.Input.MaxAggregateIDBytes},
		{"input.max_label_bytes", c.Input.MaxLabelBytes},
	} {
		p.check(b.size >= 1 && b.size <= 64*KiB, b.key, b.size, "must be between 1B and 64KiB")
	}
	p.within("input.max_time_ahead", c.Input.MaxTimeAhead, time.Second, 87600*time.Hour)
	p.atLeast("aggregation.max_resources", c.Aggregation.MaxResources, 1)
	p.atLeast("aggregation.max_actions", c.Aggregation.MaxActions, 1)

	a := c.Anomaly
	p.within("anomaly.window", a.Window, time.Second, processors.MaxWindow)
	p.check(a.Window%time.Second == 0, "anomaly.window", a.Window, "must be a whole number of seconds")
	p.check(a.Multiplier > 0 && !math.IsInf(a.Multiplier, 0), "anomaly.multiplier", a.Multiplier, "must be positive")
	p.atLeast("anomaly.min_events", a.MinEvents, 1)
	p.check(a.DefaultAverageRate > 0 && !math.IsInf(a.DefaultAverageRate, 0), "anomaly.default_average_rate",
		a.DefaultAverageRate, "must be positive")
	p.check(a.MinAverageRate >= 0 && !math.IsInf(a.MinAverageRate, 0), "anomaly.min_average_rate",
		a.MinAverageRate, "must be at least 0")

	p.atLeast("milestones.every", c.Milestones.Every, 1)
	for _, n := range c.Milestones.Thresholds {
		p.atLeast("milestones.thresholds", n, 1)
	}

	p.hostPort("http.addr", c.HTTP.Addr, false)
	p.within("shutdown.timeout", c.Shutdown.Timeout, time.Second, time.Hour)

	b := c.Retry
	p.within("retry.initial_backoff", b.InitialBackoff, time.Millisecond, time.Minute)
	p.within("retry.max_backoff", b.MaxBackoff, time.Millisecond, 10*time.Minute)
	p.check(b.InitialBackoff <= b.MaxBackoff, "retry.initial_backoff", b.InitialBackoff,
		"must not exceed retry.max_backoff ("+formatDuration(b.MaxBackoff)+")")
	return p
}
