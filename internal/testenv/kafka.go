package testenv

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultPartitions is the partition count of the topics a KafkaCluster
// seeds unless WithPartitions says otherwise.
const DefaultPartitions = 3

// KafkaOption configures Kafka.
type KafkaOption func(*kafkaConfig)

type kafkaConfig struct {
	partitions int32
	topics     []string
	kfake      []kfake.Opt
	backend    Backend // empty: from the environment
}

// WithPartitions sets the partition count of the topics of WithTopics.
func WithPartitions(n int32) KafkaOption { return func(c *kafkaConfig) { c.partitions = n } }

// WithTopics creates the topics (their logical names; see
// KafkaCluster.Topic) when the cluster starts.
func WithTopics(names ...string) KafkaOption {
	return func(c *kafkaConfig) { c.topics = append(c.topics, names...) }
}

// WithKfakeOpts passes options to the embedded kfake cluster, after the
// harness's own (one broker, the seeded topics); other backends ignore
// them.
func WithKfakeOpts(opts ...kfake.Opt) KafkaOption {
	return func(c *kafkaConfig) { c.kfake = append(c.kfake, opts...) }
}

// withKafkaBackend forces a backend, for the harness's own tests.
func withKafkaBackend(b Backend) KafkaOption { return func(c *kafkaConfig) { c.backend = b } }

// KafkaCluster is the Kafka of one test. It is safe for concurrent use.
type KafkaCluster struct {
	backend Backend
	seeds   []string
	cluster *kfake.Cluster // embedded only
	suffix  string         // topic-name suffix on a shared cluster

	mu      sync.Mutex
	created []string // topics to delete at the end (shared clusters)
}

// Kafka returns a Kafka cluster for tb, released when tb ends: an in-process
// kfake cluster with one broker listening on 127.0.0.1 (embedded), the
// cluster at KAFKA_SEEDS (external), or a container (testcontainers). It
// skips the test when the backend is unavailable.
func Kafka(tb testing.TB, opts ...KafkaOption) *KafkaCluster {
	tb.Helper()
	cfg := kafkaConfig{partitions: DefaultPartitions}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.backend == "" {
		cfg.backend = backendFor(tb, "KAFKA_SEEDS")
	}
	k := &KafkaCluster{backend: cfg.backend}
	switch cfg.backend {
	case External:
		seeds := os.Getenv("KAFKA_SEEDS")
		if seeds == "" {
			tb.Skip("testenv: external Kafka backend selected but KAFKA_SEEDS is not set")
		}
		k.seeds = strings.Split(seeds, ",")
		k.suffix = "-" + uniqueSuffix()
		tb.Cleanup(func() { k.deleteTopics(tb) })
	case Testcontainers:
		k.seeds = kafkaContainer(tb)
		tb.Cleanup(func() { k.deleteTopics(tb) })
	default:
		kopts := []kfake.Opt{kfake.NumBrokers(1)}
		if len(cfg.topics) > 0 {
			kopts = append(kopts, kfake.SeedTopics(cfg.partitions, cfg.topics...))
		}
		c, err := kfake.NewCluster(append(kopts, cfg.kfake...)...)
		if err != nil {
			tb.Fatalf("testenv: start kfake: %v", err)
		}
		tb.Cleanup(c.Close)
		k.cluster = c
		k.seeds = c.ListenAddrs()
		return k
	}
	if len(cfg.topics) > 0 {
		k.CreateTopics(tb, int(cfg.partitions), cfg.topics...)
	}
	return k
}

// Backend reports where the cluster runs.
func (k *KafkaCluster) Backend() Backend { return k.backend }

// Seeds returns the bootstrap addresses.
func (k *KafkaCluster) Seeds() []string { return append([]string(nil), k.seeds...) }

// Cluster returns the kfake cluster for fault injection (Control and
// friends), or nil when the backend is not embedded.
func (k *KafkaCluster) Cluster() *kfake.Cluster { return k.cluster }

// Topic returns the real name of the logical topic name: name itself on a
// cluster of the test's own, name plus a per-test suffix on a shared
// external cluster. A name that already carries the suffix is returned as
// is, so applying Topic twice is harmless.
func (k *KafkaCluster) Topic(name string) string {
	if k.suffix == "" || strings.HasSuffix(name, k.suffix) {
		return name
	}
	return name + k.suffix
}

// Client returns a client of the cluster (seed brokers set, then opts),
// closed when tb ends.
func (k *KafkaCluster) Client(tb testing.TB, opts ...kgo.Opt) *kgo.Client {
	tb.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.seeds...)}, opts...)...)
	if err != nil {
		tb.Fatalf("testenv: kafka client: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Admin returns an admin client of the cluster, closed when tb ends.
func (k *KafkaCluster) Admin(tb testing.TB) *kadm.Client {
	tb.Helper()
	return kadm.NewClient(k.Client(tb))
}

// CreateTopics creates the topics (logical names, see Topic) with the given
// partition count and the broker's default replication factor, and waits
// until every partition has a leader. On a shared cluster they are deleted
// when the KafkaCluster's test ends.
func (k *KafkaCluster) CreateTopics(tb testing.TB, partitions int, names ...string) {
	tb.Helper()
	full := make([]string, len(names))
	for i, n := range names {
		full[i] = k.Topic(n)
	}
	adm := k.Admin(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopics(ctx, int32(partitions), -1, nil, full...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		tb.Fatalf("testenv: create topics %v: %v", full, err)
	}
	if k.cluster == nil {
		k.mu.Lock()
		k.created = append(k.created, full...)
		k.mu.Unlock()
	}
	Eventually(tb, 30*time.Second, func() bool {
		md, err := adm.Metadata(ctx, full...)
		if err != nil {
			return false
		}
		for _, n := range full {
			td, ok := md.Topics[n]
			if !ok || td.Err != nil || len(td.Partitions) != partitions {
				return false
			}
			for _, p := range td.Partitions {
				if p.Err != nil || p.Leader < 0 {
					return false
				}
			}
		}
		return true
	}, "topics %v have no leaders", full)
}

// deleteTopics removes the topics created on a shared cluster.
func (k *KafkaCluster) deleteTopics(tb testing.TB) {
	k.mu.Lock()
	topics := k.created
	k.created = nil
	k.mu.Unlock()
	if len(topics) == 0 {
		return
	}
	c, err := kgo.NewClient(kgo.SeedBrokers(k.seeds...))
	if err != nil {
		tb.Logf("testenv: delete topics: %v", err)
		return
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(c).DeleteTopics(ctx, topics...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
		tb.Logf("testenv: delete topics %v: %v", topics, err)
	}
}
