package config

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestGoodFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*.good.*")
	if err != nil || len(files) < 5 {
		t.Fatalf("good fixtures: %v %v", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := LoadFile(f, nil); err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
		})
	}
}

func TestFullFixture(t *testing.T) {
	got, err := LoadFile("testdata/full.good.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Kafka: Kafka{
			Brokers:                []string{"kafka-0.kafka:9092", "kafka-1.kafka:9092"},
			Group:                  "activity-workers",
			ClientID:               "worker-a",
			StartOffset:            "latest",
			CommitInterval:         2 * time.Second,
			MaxPollRecords:         1000,
			FetchMaxPartitionBytes: 2 * MiB,
			FetchMinBytes:          KiB,
			FetchMaxWait:           50 * time.Millisecond,
			SessionTimeout:         30 * time.Second,
			RebalanceTimeout:       2 * time.Minute,
			MaxMessageBytes:        2 * MiB,
			LagInterval:            10 * time.Second,
			// The password file is read into the password.
			SASL: SASL{Mechanism: "SCRAM-SHA-512", Username: "worker", Password: "kafka-secret-from-file"},
			TLS: TLS{Enabled: true, CAFile: "testdata/files/ca.pem", CertFile: "testdata/files/client.pem",
				KeyFile: "testdata/files/client.key", ServerName: "kafka.internal", InsecureSkipVerify: true},
		},
		Topics: Topics{
			Input: "prod.user.activity", Aggregates: "prod.user.activity.aggregated",
			Milestones: "prod.user.milestone.reached", Anomalies: "prod.anomaly.detected",
			DLQ: "prod.user.activity.dlq", Gaps: "prod.user.activity.gaps", Parked: "prod.user.activity.parked", Partitions: 24, ReplicationFactor: 3,
		},
		Redis: Redis{
			Addrs: []string{"sentinel-0:26379", "sentinel-1:26379"}, Username: "worker", Password: "redis-inline-secret",
			DB: 2, KeyPrefix: "prod-sw", MasterName: "mymaster", TLS: TLS{Enabled: true, InsecureSkipVerify: true},
			DialTimeout: 2 * time.Second, Timeout: 500 * time.Millisecond, PoolSize: 20,
			MinReplicasAcked: 1, ReplicaAckTimeout: 200 * time.Millisecond,
		},
		Dedupe:     Dedupe{TTL: 48 * time.Hour, RecentSize: 5000},
		State:      State{CacheSize: 0},
		Sequencing: Sequencing{GapTimeout: time.Minute, MaxBuffered: 50, MaxBufferedPartition: 500, MaxBufferedBytes: 16 * MiB},
		Input: Input{MaxBytes: 256 * KiB, UnknownTypes: "dlq", OnPoison: "park",
			MaxIDBytes: 128, MaxAggregateIDBytes: 64, MaxLabelBytes: 100, MaxTimeAhead: 2 * time.Hour},
		Aggregation: Aggregation{MaxResources: 200, MaxActions: 50},
		Anomaly: Anomaly{Window: 10 * time.Minute, Multiplier: 3.5, MinEvents: 20, DefaultAverageRate: 2,
			MinAverageRate: 0},
		Milestones: Milestones{Every: 1000, Thresholds: []int{1, 10, 50}},
		Outputs:    Outputs{CoalesceAggregates: false},
		HTTP:       HTTP{Addr: "0.0.0.0:9100", Pprof: true},
		Log:        Log{Level: "debug", Format: "text"},
		Shutdown:   Shutdown{Timeout: time.Minute},
		Retry:      Retry{InitialBackoff: 50 * time.Millisecond, MaxBackoff: 5 * time.Second},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("LoadFile(full.good.yaml)\n got %#v\nwant %#v", got, want)
	}
	// Every key of the fixture differs from its default, so a key that is
	// not read from the file shows up here.
	def := leafValues(Default())
	for key, v := range leafValues(got) {
		switch key {
		case "kafka.sasl.password_file", "redis.password_file": // cleared once read
		case "redis.tls.ca_file", "redis.tls.cert_file", "redis.tls.key_file", "redis.tls.server_name": // as kafka.tls
		default:
			if reflect.DeepEqual(v, def[key]) {
				t.Errorf("%s = %v: the full fixture should set every key to a non-default value", key, v)
			}
		}
	}
}

// leafValues maps every key to its value in c.
func leafValues(c Config) map[string]any {
	m := map[string]any{}
	walk(reflect.ValueOf(&c).Elem(), "", func(key string, _ reflect.StructField, v reflect.Value) {
		m[key] = v.Interface()
	})
	return m
}

func TestJSONAndTOMLFixtures(t *testing.T) {
	for _, f := range []string{"testdata/json.good.json", "testdata/toml.good.toml"} {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := LoadFile(f, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Kafka.CommitInterval != 500*time.Millisecond || c.Kafka.MaxPollRecords != 100 ||
				!reflect.DeepEqual(c.Kafka.Brokers, []string{"broker:9092"}) || c.Anomaly.Multiplier != 2.5 ||
				c.Anomaly.Window != time.Minute || c.Milestones.Every != 10 ||
				!reflect.DeepEqual(c.Milestones.Thresholds, []int{5, 15}) || c.Sequencing.MaxBufferedBytes != MiB {
				t.Errorf("got %+v", c)
			}
			if c.Kafka.Group != "streamworker" {
				t.Errorf("unset kafka.group = %q, want the default", c.Kafka.Group)
			}
		})
	}
}

// badFixtures maps each bad fixture to substrings its error must contain.
var badFixtures = map[string][]string{
	"unknown-key.bad.yaml":            {"config: kafka.brokerz: unknown key; did you mean kafka.brokers?"},
	"section-as-value.bad.yaml":       {"config: kafka: is a section, not a value"},
	"json-unknown.bad.json":           {"milestone.every: unknown key; did you mean milestones.every?"},
	"milestones-every.bad.yaml":       {"config: milestones.every = 0: must be at least 1", "milestones.thresholds = 0: must be at least 1", "milestones.thresholds = -5: must be at least 1"},
	"syntax.bad.yaml":                 {"config: read testdata/syntax.bad.yaml"},
	"duplicate-key.bad.yaml":          {"config: read testdata/duplicate-key.bad.yaml", `"group" already defined`},
	"anomaly-window.bad.yaml":         {"anomaly.window = 500ms: must be between 1s and 24h"},
	"input-too-large.bad.yaml":        {"input.max_bytes = 1GiB: must be between 1KiB and 100MiB"},
	"sasl-without-mechanism.bad.yaml": {"kafka.sasl.mechanism: must be set when a SASL user name or password is"},
	"durations.bad.yaml": {
		"config: kafka.commit_interval = 1000: must be a duration with a unit",
		"config: sequencing.gap_timeout = abc: must be a duration",
		"shutdown.timeout = -5s: must be positive",
		"dedupe.ttl = 0s: must be positive",
	},
	"numbers.bad.yaml": {
		"kafka.max_poll_records = lots: must be an integer",
		"kafka.sasl.password = ***: must be a string",
		"aggregation.max_resources = 1.5: must be an integer",
		"anomaly.multiplier = high: must be a number",
		"outputs.coalesce_aggregates = maybe: must be true or false",
		"sequencing.max_buffered_bytes = 64MB: must be a byte count or a size with B, KiB, MiB or GiB",
	},
	"brokers.bad.yaml": {
		"kafka.brokers = broker-without-port: must be host:port",
		"kafka.brokers = :9092: must be host:port",
		"kafka.brokers = broker:99999: must be host:port",
		"kafka.group: must not be empty",
		"kafka.start_offset = newest: must be one of earliest, latest",
	},
	"topics.bad.yaml": {
		"topics.input = user activity: must be a Kafka topic name",
		"topics.aggregates: must not be empty",
		"topics.dlq = prod.activity: must differ from topics.milestones",
		"topics.gaps = ..: must be a Kafka topic name",
		"topics.partitions = 0: must be at least 1",
		"topics.replication_factor = 0: must be -1 (broker default) or at least 1",
	},
	"sasl.bad.yaml": {
		`kafka.sasl.mechanism = GSSAPI: must be one of "" (none), PLAIN, SCRAM-SHA-256, SCRAM-SHA-512`,
		"redis.password_file = testdata/files/missing-password: cannot be set together with redis.password",
		"redis.password_file = testdata/files/missing-password: cannot read: no such file or directory",
	},
	"sasl-incomplete.bad.yaml": {
		"kafka.sasl.username: must be set with kafka.sasl.mechanism",
		"kafka.sasl.password: must be set (or kafka.sasl.password_file) with kafka.sasl.mechanism",
	},
	"tls.bad.yaml": {
		"kafka.tls.ca_file = testdata/files/missing-ca.pem: cannot read",
		"kafka.tls.key_file: must be set with kafka.tls.cert_file",
		"redis.tls.ca_file = testdata/files/ca.pem: needs redis.tls.enabled: true",
		"redis.tls.insecure_skip_verify = true: needs redis.tls.enabled: true",
	},
	"redis.bad.yaml": {
		"redis.addr = redis-2: must be host:port",
		"redis.db = 3: must be 0 with several redis.addr (Redis Cluster)",
		"redis.key_prefix = {sw}: key prefix must not contain '{' or '}'",
		"redis.dial_timeout = 0s: must be positive",
		"redis.pool_size = -1: must be at least 0",
	},
	"anomaly.bad.yaml": {
		"anomaly.window = 1.5s: must be a whole number of seconds",
		"anomaly.multiplier = 0: must be positive",
		"anomaly.min_events = 0: must be at least 1",
		"anomaly.default_average_rate = 0: must be positive",
		"anomaly.min_average_rate = -1: must be at least 0",
	},
	"input.bad.yaml": {
		"input.max_bytes = 10: must be between 1KiB and 100MiB",
		"input.unknown_types = explode: must be one of skip, dlq",
		"input.on_poison = quarantine: must be one of dlq, park",
		"sequencing.max_buffered = 0: must be at least 1",
		"sequencing.max_buffered_partition = -1: must be at least 1",
		"sequencing.max_buffered_bytes = 0: must be at least 1",
	},
	"limits.bad.yaml": {
		"kafka.session_timeout = 9999h: must be between 6s and 30m",
		"kafka.rebalance_timeout = 500ms: must be between 1s and 24h",
		"kafka.commit_interval = 1ns: must be between 10ms and 1h",
		"redis.timeout = 1ms: must be between 10ms and 5m",
		"redis.dial_timeout = 10m: must be between 10ms and 5m",
		"dedupe.ttl = 1ns: must be between 1s and 8760h",
		"sequencing.gap_timeout = 48h: must be between 1ms and 24h",
		"anomaly.window = 48h: must be between 1s and 24h",
		"shutdown.timeout = 2h: must be between 1s and 1h",
		"retry.initial_backoff = 1ns: must be between 1ms and 1m",
	},
	"cross.bad.yaml": {
		`kafka.group = " workers ": must not start or end with white space`,
		"kafka.client_id: must not be empty",
		"sequencing.max_buffered = 500: must not exceed sequencing.max_buffered_partition (100)",
		"sequencing.max_buffered_bytes = 1MiB: must be at least input.max_bytes (4MiB)",
		"dedupe.ttl = 10m: must be at least kafka.commit_interval + kafka.session_timeout + 1.25 × sequencing.gap_timeout (31m37.5s)",
	},
	"gap-ttl.bad.yaml": {
		"dedupe.ttl = 24h: must be at least kafka.commit_interval + kafka.session_timeout + 1.25 × sequencing.gap_timeout (30h0m46s)",
	},
	"bounds.bad.yaml": {
		"kafka.max_poll_records = 1000000: must be between 1 and 10000",
		"kafka.max_message_bytes = 512KiB: must be at least input.max_bytes (1MiB): the DLQ copy of an accepted record must fit",
		"kafka.lag_interval = 100ms: must be between 1s and 10m",
		"redis.replica_ack_timeout = 2s: must be below redis.timeout (1s) when redis.min_replicas_acked is set",
		"input.max_id_bytes = 0: must be between 1B and 64KiB",
		"input.max_aggregate_id_bytes = 1MiB: must be between 1B and 64KiB",
		"input.max_label_bytes = 0: must be between 1B and 64KiB",
		"aggregation.max_actions = 0: must be at least 1",
	},
	"aggregate-too-large.bad.yaml": {
		"kafka.max_message_bytes = 1MiB: must hold the largest output the input bounds allow (67861094 bytes",
	},
	"misc.bad.yaml": {
		"kafka.fetch_max_partition_bytes = 100MiB: must be between 1KiB and 64MiB",
		"kafka.fetch_min_bytes = 0: must be between 1B and 64MiB",
		"kafka.fetch_max_wait = 5ms: must be between 10ms and 30s",
		"http.addr = 9464: must be host:port or :port",
		"log.level = verbose: must be one of debug, info, warn, error",
		"log.format = xml: must be one of json, text",
		"retry.initial_backoff = 20s: must not exceed retry.max_backoff (10s)",
	},
}

func TestBadFixtures(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.*")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(badFixtures) {
		t.Errorf("%d bad fixtures on disk, %d in the table: every fixture needs its expected errors", len(files), len(badFixtures))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			want, ok := badFixtures[name]
			if !ok {
				t.Fatalf("no expected errors for %s", name)
			}
			_, err := LoadFile(f, nil)
			if err == nil {
				t.Fatal("LoadFile succeeded")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			for _, secret := range []string{"inline-secret", "secret-from-file"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret:\n%v", err)
				}
			}
			if strings.HasPrefix(want[0], "config: read ") {
				return // the file does not parse: no key to name
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("errors.As(%v, *FieldError) = false", err)
			}
			// Every problem is reported, one per line.
			if n := len(strings.Split(err.Error(), "\n")); n < len(want) {
				t.Errorf("%d problems reported, want at least %d:\n%v", n, len(want), err)
			}
		})
	}
}
