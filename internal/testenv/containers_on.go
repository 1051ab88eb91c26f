//go:build testcontainers

package testenv

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
	"github.com/testcontainers/testcontainers-go/wait"
)

// The images of the testcontainers backend.
const (
	redisImage = "redis:7.4"
	kafkaImage = "apache/kafka:3.9.0"
)

// skipWithoutProvider skips tb when no container engine answers.
func skipWithoutProvider(tb testing.TB) {
	tb.Helper()
	if t, ok := tb.(*testing.T); ok {
		testcontainers.SkipIfProviderIsNotHealthy(t)
		return
	}
	// The same check for benchmarks, which SkipIfProviderIsNotHealthy does
	// not accept.
	provider, err := testcontainers.ProviderDefault.GetProvider()
	if err == nil {
		defer provider.Close()
		err = provider.Health(context.Background())
	}
	if err != nil {
		tb.Skipf("testenv: no container engine for the testcontainers backend: %v", err)
	}
}

func redisContainer(tb testing.TB) string {
	tb.Helper()
	skipWithoutProvider(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := tcredis.Run(ctx, redisImage)
	testcontainers.CleanupContainer(tb, c)
	if err != nil {
		tb.Fatalf("testenv: start Redis container: %v", err)
	}
	conn, err := c.ConnectionString(ctx)
	if err != nil {
		tb.Fatalf("testenv: Redis container address: %v", err)
	}
	u, err := url.Parse(conn)
	if err != nil {
		tb.Fatalf("testenv: Redis container address %q: %v", conn, err)
	}
	return u.Host
}

// kafkaStarter is copied into the Kafka container once its mapped port is
// known: the broker must advertise the address the test reaches it on.
const (
	kafkaStarter      = "/tmp/testenv_start.sh"
	kafkaStarterShell = "#!/bin/bash\nexport KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://%s,BROKER://%s:9092\nexec /etc/kafka/docker/run\n"
)

// kafkaContainer starts a one-node KRaft Kafka. The modules/kafka of
// testcontainers-go is only published at v0.40.0, which does not compile
// against the core v0.45.0, so this is the same recipe on a generic
// container.
func kafkaContainer(tb testing.TB) []string {
	tb.Helper()
	skipWithoutProvider(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const port = "9093/tcp"
	c, err := testcontainers.Run(ctx, kafkaImage,
		testcontainers.WithExposedPorts(port),
		testcontainers.WithEnv(map[string]string{
			"CLUSTER_ID":                                     "5L6g3nShT-eMCtK--X86sw",
			"KAFKA_NODE_ID":                                  "1",
			"KAFKA_PROCESS_ROLES":                            "broker,controller",
			"KAFKA_LISTENERS":                                "PLAINTEXT://0.0.0.0:9093,BROKER://0.0.0.0:9092,CONTROLLER://0.0.0.0:9094",
			"KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":           "BROKER:PLAINTEXT,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
			"KAFKA_INTER_BROKER_LISTENER_NAME":               "BROKER",
			"KAFKA_CONTROLLER_LISTENER_NAMES":                "CONTROLLER",
			"KAFKA_CONTROLLER_QUORUM_VOTERS":                 "1@localhost:9094",
			"KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR":         "1",
			"KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS":             "1",
			"KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
			"KAFKA_TRANSACTION_STATE_LOG_MIN_ISR":            "1",
			"KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS":         "0",
		}),
		testcontainers.WithEntrypoint("sh"),
		testcontainers.WithCmd("-c", "while [ ! -f "+kafkaStarter+" ]; do sleep 0.1; done; bash "+kafkaStarter),
		testcontainers.WithLifecycleHooks(testcontainers.ContainerLifecycleHooks{
			PostStarts: []testcontainers.ContainerHook{
				func(ctx context.Context, c testcontainers.Container) error {
					if err := wait.ForMappedPort(port).WaitUntilReady(ctx, c); err != nil {
						return fmt.Errorf("wait for mapped port: %w", err)
					}
					endpoint, err := c.PortEndpoint(ctx, port, "")
					if err != nil {
						return fmt.Errorf("port endpoint: %w", err)
					}
					inspect, err := c.Inspect(ctx)
					if err != nil {
						return fmt.Errorf("inspect: %w", err)
					}
					script := fmt.Sprintf(kafkaStarterShell, endpoint, inspect.Config.Hostname)
					if err := c.CopyToContainer(ctx, []byte(script), kafkaStarter, 0o755); err != nil {
						return fmt.Errorf("copy starter script: %w", err)
					}
					return wait.ForLog(".*Kafka Server started.*").AsRegexp().WaitUntilReady(ctx, c)
				},
			},
		}),
	)
	testcontainers.CleanupContainer(tb, c)
	if err != nil {
		tb.Fatalf("testenv: start Kafka container: %v", err)
	}
	endpoint, err := c.PortEndpoint(ctx, port, "")
	if err != nil {
		tb.Fatalf("testenv: Kafka container address: %v", err)
	}
	return []string{endpoint}
}
