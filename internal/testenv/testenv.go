// Package testenv is the integration harness of streamworker's tests: a Kafka
// cluster and a Redis server per test, and the helpers that go with them
// (waiting on a condition, free ports, building a main package once).
//
// The backends are chosen by the environment:
//
//   - SW_TEST_BACKEND=embedded (the default): Kafka is franz-go's in-process
//     kfake cluster on a real TCP port, Redis a redis-server child process on
//     a free port. Nothing to install but redis-server (tests that need it
//     skip with the reason where it is missing).
//   - SW_TEST_BACKEND=external: the Kafka cluster at KAFKA_SEEDS
//     (comma-separated) and the Redis at REDIS_ADDR (comma-separated for a
//     Cluster; REDIS_PASSWORD if needed). Tests skip when the variable they
//     need is unset. Each test gets unique topic names (KafkaCluster.Topic)
//     and a unique key prefix (RedisServer.Prefix), and removes them when it
//     ends. Without SW_TEST_BACKEND, a set KAFKA_SEEDS or REDIS_ADDR selects
//     the external backend for that service.
//   - SW_TEST_BACKEND=testcontainers: containers started through
//     testcontainers-go. Compiled only with the build tag testcontainers
//     (the dependency tree roughly doubles a cold test build); without the
//     tag, or without a container engine, the tests skip with the reason.
//
// Tests stay portable across backends if they name topics through
// KafkaCluster.Topic and Redis keys through RedisServer.Prefix.
//
// Every resource is released by t.Cleanup, leaving no goroutine behind; use
// Main as TestMain to check that with goleak.
package testenv

import (
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Backend names where the services of a test run.
type Backend string

// The backends; see the package documentation.
const (
	Embedded       Backend = "embedded"
	External       Backend = "external"
	Testcontainers Backend = "testcontainers"
)

// backendFor returns the backend for a service whose external address is in
// the environment variable addrEnv.
func backendFor(tb testing.TB, addrEnv string) Backend {
	tb.Helper()
	switch b := Backend(os.Getenv("SW_TEST_BACKEND")); b {
	case "":
		if os.Getenv(addrEnv) != "" {
			return External
		}
		return Embedded
	case Embedded, External, Testcontainers:
		return b
	default:
		tb.Fatalf("testenv: SW_TEST_BACKEND=%q, want embedded, external or testcontainers", b)
		return ""
	}
}

// Eventually polls cond every 10ms until it returns true, and fails the test
// with msgAndArgs (a format string and its arguments) if that does not happen
// Pace waits d: the schedule of a fault or of a load (a blackhole's length,
// the gap between two members leaving), never a wait for asynchronous work,
// which is Eventually's. It returns early when tb's context ends.
func Pace(tb testing.TB, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-tb.Context().Done():
	}
}

// within timeout. It is the way to wait for asynchronous work in tests.
func Eventually(tb testing.TB, timeout time.Duration, cond func() bool, msgAndArgs ...any) {
	tb.Helper()
	if !Within(timeout, cond) {
		tb.Fatalf("testenv: condition not met within %v: %s", timeout, message(msgAndArgs))
	}
}

// Within waits up to timeout for cond and reports whether it held. Unlike
// Eventually it may run off the test's goroutine (in a hook the code under
// test calls), where a test may not fail.
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

func message(msgAndArgs []any) string {
	if len(msgAndArgs) == 0 {
		return "(no message)"
	}
	if format, ok := msgAndArgs[0].(string); ok {
		return fmt.Sprintf(format, msgAndArgs[1:]...)
	}
	return fmt.Sprint(msgAndArgs...)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// below the ephemeral range (portPair).
func FreePort(tb testing.TB) int {
	tb.Helper()
	return portPair(tb, 0)
}

// Main runs the tests of m, then removes the binaries built by BuildBinary
// and, if the tests passed, fails the run when goroutines are left over.
// Use it as a package's TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
func Main(m *testing.M, opts ...goleak.Option) {
	code := m.Run()
	removeBinaries()
	if code == 0 {
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// uniqueSuffix returns a short random string for names that must not clash
// with other tests on a shared external service.
func uniqueSuffix() string {
	return strings.ToLower(rand.Text()[:10])
}
