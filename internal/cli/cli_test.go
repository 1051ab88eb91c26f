package cli

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/streamworker/streamworker/internal/testenv"
)

// listener is a TCP port that records whether anything connected to it.
func listener(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// connected reports whether a connection is waiting on ln.
func connected(ln *net.TCPListener) bool {
	_ = ln.SetDeadline(time.Now())
	c, err := ln.Accept()
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// TestBadConfigExitsBeforeConnecting: a bad configuration exits with
// status 2, naming the key and the reason, and nothing dials Kafka or Redis.
func TestBadConfigExitsBeforeConnecting(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{"milestones every zero", map[string]string{"SW_MILESTONES_EVERY": "0"}, nil,
			[]string{"milestones.every", "must be at least 1"}},
		{"unparsable duration", map[string]string{"SW_SEQUENCING_GAP_TIMEOUT": "abc"}, nil,
			[]string{"sequencing.gap_timeout", "abc", "duration"}},
		{"no brokers", nil, []string{"--kafka.brokers", ""},
			[]string{"kafka.brokers", "must not be empty"}},
		{"unknown start offset", map[string]string{"SW_KAFKA_START_OFFSET": "middle"}, nil,
			[]string{"kafka.start_offset", "middle"}},
		{"empty brokers variable", map[string]string{"SW_KAFKA_BROKERS": ""}, nil,
			[]string{"kafka.brokers", "must not be empty"}},
		{"session timeout the broker refuses", map[string]string{"SW_KAFKA_SESSION_TIMEOUT": "9999h"}, nil,
			[]string{"kafka.session_timeout = 9999h", "must be between 6s and 30m"}},
		{"dedupe ttl of 1ns", map[string]string{"SW_DEDUPE_TTL": "1ns"}, nil,
			[]string{"dedupe.ttl = 1ns", "must be between 1s"}},
		{"buffer smaller than an input", map[string]string{"SW_SEQUENCING_MAX_BUFFERED_BYTES": "512KiB"}, nil,
			[]string{"sequencing.max_buffered_bytes = 512KiB", "must be at least input.max_bytes (1MiB)"}},
		{"unknown poison policy", map[string]string{"SW_INPUT_ON_POISON": "quarantine"}, nil,
			[]string{"input.on_poison = quarantine", "must be one of dlq, park"}},
		{"misspelled variable", map[string]string{"SW_KAFKA_BROKER": "x:9092"}, nil,
			[]string{"SW_KAFKA_BROKER", "did you mean SW_KAFKA_BROKERS?"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kafka, redis := listener(t), listener(t)
			t.Setenv("SW_KAFKA_BROKERS", kafka.Addr().String())
			t.Setenv("SW_REDIS_ADDR", redis.Addr().String())
			t.Setenv("SW_HTTP_ADDR", "127.0.0.1:0")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), append([]string{"run"}, tc.args...), &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit status %d, want 2; stderr: %s", code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not mention %q", stderr.String(), w)
				}
			}
			if connected(kafka) || connected(redis) {
				t.Error("something connected before the configuration was rejected")
			}
		})
	}
}

func TestConfigCheckMasksSecrets(t *testing.T) {
	t.Setenv("SW_REDIS_PASSWORD", "hunter2-secret")
	t.Setenv("SW_MILESTONES_EVERY", "250")
	var stdout, stderr bytes.Buffer
	if code := Main(context.Background(), []string{"config", "check"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	if strings.Contains(out, "hunter2-secret") {
		t.Fatal("config check printed the Redis password")
	}
	if !strings.Contains(out, "every: 250") || !strings.Contains(out, "***") {
		t.Fatalf("config check output lacks the effective values:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	if code := Main(context.Background(), []string{"version"}, &stdout, &stdout); code != 0 || !strings.HasPrefix(stdout.String(), "streamworker ") {
		t.Fatalf("version: exit %d, output %q", code, stdout.String())
	}
}

func TestTopicsEnsure(t *testing.T) {
	k := testenv.Kafka(t)
	t.Setenv("SW_KAFKA_BROKERS", strings.Join(k.Seeds(), ","))
	t.Setenv("SW_TOPICS_PARTITIONS", "4")
	t.Setenv("SW_TOPICS_REPLICATION_FACTOR", "1")
	for run := range 2 { // the second run finds everything in place
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), []string{"topics", "ensure"}, &stdout, &stderr); code != 0 {
			t.Fatalf("run %d: exit %d: %s", run, code, stderr.String())
		}
	}
	details, err := k.Admin(t).ListTopics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"user.activity", "user.activity.aggregated", "user.milestone.reached",
		"anomaly.detected", "user.activity.dlq", "user.activity.gaps", "user.activity.parked"} {
		d, ok := details[name]
		if !ok || len(d.Partitions) != 4 {
			t.Errorf("topic %s: exists %v with %d partitions, want 4", name, ok, len(d.Partitions))
		}
	}
	cfgs, err := k.Admin(t).DescribeTopicConfigs(context.Background(), "user.activity.aggregated")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cfgs.On("user.activity.aggregated", nil); err != nil || !hasConfig(v.Configs, "cleanup.policy", "compact") {
		t.Errorf("aggregates topic is not compacted: %v %v", v.Configs, err)
	}
	cfgs, err = k.Admin(t).DescribeTopicConfigs(context.Background(), "user.activity.parked")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := cfgs.On("user.activity.parked", nil); err != nil || !hasConfig(v.Configs, "retention.ms", "-1") {
		t.Errorf("parked topic has a retention: %v %v", v.Configs, err)
	}
}

// TestTopicsEnsurePartitionsOnUpgrade: the pre-upgrade run of topics ensure
// accepts partitions added out of band (exit 0, a warning on stderr) and
// fails on fewer partitions than configured (exit 1, the fix named).
func TestTopicsEnsurePartitionsOnUpgrade(t *testing.T) {
	k := testenv.Kafka(t)
	t.Setenv("SW_KAFKA_BROKERS", strings.Join(k.Seeds(), ","))
	t.Setenv("SW_TOPICS_PARTITIONS", "4")
	t.Setenv("SW_TOPICS_REPLICATION_FACTOR", "1")
	ensure := func() (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), []string{"topics", "ensure"}, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	if code, _, stderr := ensure(); code != 0 {
		t.Fatalf("first run: exit %d: %s", code, stderr)
	}
	resps, err := k.Admin(t).UpdatePartitions(context.Background(), 6, "user.activity")
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := ensure()
	if code != 0 || !strings.Contains(stderr, "warning: topic user.activity: 6 partitions, more than the 4 configured") ||
		!strings.Contains(stdout, "user.activity: exists, 6 partitions") {
		t.Errorf("more partitions: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	t.Setenv("SW_TOPICS_PARTITIONS", "8")
	code, _, stderr = ensure()
	if code != 1 || !strings.Contains(stderr, "topic user.activity: 6 partitions, fewer than the 8 configured") ||
		!strings.Contains(stderr, "--alter --topic user.activity --partitions 8") {
		t.Errorf("fewer partitions: exit %d, stderr %q", code, stderr)
	}
}

func hasConfig(cs []kadm.Config, key, value string) bool {
	for _, c := range cs {
		if c.Key == key && c.Value != nil && *c.Value == value {
			return true
		}
	}
	return false
}

// TestConfigCheckConnect: --connect reports each service, and a wrong SASL
// password as an authentication failure with exit status 1.
func TestConfigCheckConnect(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("PLAIN", "admin", "right"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	r := testenv.Redis(t)
	t.Setenv("SW_KAFKA_BROKERS", strings.Join(cluster.ListenAddrs(), ","))
	t.Setenv("SW_KAFKA_SASL_MECHANISM", "PLAIN")
	t.Setenv("SW_KAFKA_SASL_USERNAME", "admin")
	t.Setenv("SW_REDIS_ADDR", r.Addr())
	for _, tc := range []struct {
		password   string
		code       int
		wantOut    []string
		wantStderr string
	}{
		{"right", 0, []string{"# kafka: ok", "# redis: ok"}, ""},
		{"wrong", 1, []string{"# redis: ok"}, "kafka: authentication failed (check kafka.sasl.mechanism, kafka.sasl.username, kafka.sasl.password)"},
	} {
		t.Setenv("SW_KAFKA_SASL_PASSWORD", tc.password)
		var stdout, stderr bytes.Buffer
		code := Main(context.Background(), []string{"config", "check", "--connect"}, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.wantStderr) {
			t.Errorf("password %s: exit %d, stderr %q; want %d and %q", tc.password, code, stderr.String(), tc.code, tc.wantStderr)
		}
		for _, w := range tc.wantOut {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("password %s: stdout lacks %q:\n%s", tc.password, w, stdout.String())
			}
		}
	}
}
