package worker_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/loadgen"
)

// proc is a worker running as a separate `streamworker run` process.
type proc struct {
	cmd  *exec.Cmd
	out  *testenv.LockedBuffer
	done chan struct{}
	err  error
}

func (e *env) spawn(name string) *proc {
	e.t.Helper()
	return e.spawnWith(name)
}

// spawnWith spawns a worker process with extra environment variables
// (later ones win).
func (e *env) spawnWith(name string, extra ...string) *proc {
	e.t.Helper()
	return e.spawnBin(testenv.BuildBinary(e.t, "github.com/streamworker/streamworker/cmd/streamworker"), name, extra...)
}

// spawnBin runs `bin run` with the env's settings, then extra (NAME=value
// pairs, which override them).
func (e *env) spawnBin(bin, name string, extra ...string) *proc {
	e.t.Helper()
	cmd := exec.Command(bin, "run")
	cmd.Env = append(os.Environ(),
		"SW_KAFKA_BROKERS="+strings.Join(e.kafka.Seeds(), ","),
		"SW_KAFKA_GROUP="+e.group,
		"SW_KAFKA_CLIENT_ID="+name,
		"SW_KAFKA_COMMIT_INTERVAL=200ms",
		"SW_KAFKA_SESSION_TIMEOUT=6s", // the smallest a broker with default settings accepts
		"SW_KAFKA_REBALANCE_TIMEOUT=10s",
		"SW_TOPICS_INPUT="+e.names.Input,
		"SW_TOPICS_AGGREGATES="+e.names.Aggregates,
		"SW_TOPICS_MILESTONES="+e.names.Milestones,
		"SW_TOPICS_ANOMALIES="+e.names.Anomalies,
		"SW_TOPICS_DLQ="+e.names.DLQ,
		"SW_TOPICS_GAPS="+e.names.Gaps,
		"SW_REDIS_KEY_PREFIX="+e.prefix,
		"SW_HTTP_ADDR=127.0.0.1:0",
		"SW_LOG_LEVEL=info",
		"SW_SHUTDOWN_TIMEOUT=15s",
		"SW_RETRY_MAX_BACKOFF=500ms",
	)
	cmd.Env = append(append(cmd.Env, e.redisEnv()...), extra...)
	p := &proc{cmd: cmd, out: &testenv.LockedBuffer{}, done: make(chan struct{})}
	cmd.Stdout = p.out
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	e.t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		if e.t.Failed() {
			e.t.Logf("--- output of %s:\n%s", name, p.output())
		}
	})
	return p
}

// waitLog waits until the process has logged s.
func (p *proc) waitLog(t *testing.T, s string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() bool { return strings.Contains(p.output(), s) },
		fmt.Sprintf("process never logged %q", s))
}

func (p *proc) output() string { return p.out.String() }

func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	<-p.done
}

// produceInBackground produces cfg's stream at rate and returns its oracle
// once every record is acknowledged.
func (e *env) produceInBackground(cfg loadgen.Config, rate float64) func() *loadgen.Oracle {
	e.t.Helper()
	cfg.Topic = e.names.Input
	// The oracle reads the same deterministic stream.
	oracleGen, err := loadgen.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	oracle := loadgen.NewOracle()
	for {
		r, ok := oracleGen.Next()
		if !ok {
			break
		}
		oracle.Observe(r)
	}
	gen, _ := loadgen.New(cfg)
	cl := e.kafka.Client(e.t, kgo.ProducerLinger(2*time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := loadgen.Produce(context.Background(), cl, gen, rate, nil)
		done <- err
	}()
	return func() *loadgen.Oracle {
		if err := <-done; err != nil {
			e.t.Fatal(err)
		}
		return oracle
	}
}

// committedTotal is the sum of the group's committed offsets.
func (e *env) committedTotal() int64 {
	var n int64
	for _, c := range e.committed() {
		n += c
	}
	return n
}

// waitCommitted waits until the group has committed at least n records.
func (e *env) waitCommitted(n int64) {
	e.t.Helper()
	testenv.Eventually(e.t, 60*time.Second, func() bool { return e.committedTotal() >= n },
		fmt.Sprintf("group never committed %d records", n))
}

// TestCrashRecovery kills the worker process with SIGKILL at several moments
// mid-stream and restarts it each time: the final state and the set of
// output IDs equal those of a clean run, and no event is applied twice.
// It runs on every Redis topology (testenv.Topologies).
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("separate processes; skipped with -short")
	}
	eachTopology(t, func(t *testing.T, topo testenv.Topology) {
		e := newTopoEnv(t, 4, topo, fastGroups)
		events := topoEvents(topo, 16_000)
		wait := e.produceInBackground(workload(events, 4), 1000)
		p := e.spawn("crash-0")
		var recovery []time.Duration
		for i, frac := range []float64{0.15, 0.35, 0.55, 0.75} {
			// Kill only a member that owns partitions and has made progress.
			p.waitLog(t, "partitions assigned")
			e.waitCommitted(int64(frac * float64(events)))
			p.signal(syscall.SIGKILL)
			killed, at := e.committedTotal(), time.Now()
			p = e.spawn(fmt.Sprintf("crash-%d", i+1))
			if i == 3 {
				break // the last restart's recovery is the drain below
			}
			p.waitLog(t, "partitions assigned")
			testenv.Eventually(t, 60*time.Second, func() bool {
				n := e.committedTotal()
				return n > killed || n >= int64(events)
			}, "no commit after restart %d", i+1)
			if killed < int64(events) {
				recovery = append(recovery, time.Since(at))
			}
		}
		oracle := wait()
		e.waitDrained(90 * time.Second)
		p.signal(syscall.SIGTERM)
		e.reportTopology(topo, "worker SIGKILL x4", events, oracle, recovery)
	})
}

// fastGroups lets test workers use a 3s session timeout, so a killed member
// is noticed quickly.
var fastGroups = testenv.WithKfakeOpts(kfake.GroupMinSessionTimeout(time.Second))

// TestRebalance has a second and a third worker join mid-stream and leave
// again, one by SIGTERM and one by SIGKILL, while the first keeps running.
//
// It runs on every Redis topology (testenv.Topologies).
func TestRebalance(t *testing.T) {
	if testing.Short() {
		t.Skip("separate processes; skipped with -short")
	}
	eachTopology(t, testRebalance)
}

func testRebalance(t *testing.T, topo testenv.Topology) {
	e := newTopoEnv(t, 6, topo, fastGroups)
	events := topoEvents(topo, 16_000)
	wait := e.produceInBackground(workload(events, 5), 1000)
	a := e.spawn("a")
	a.waitLog(t, "partitions assigned")
	e.waitCommitted(int64(events * 15 / 100))
	b := e.spawn("b")
	b.waitLog(t, "partitions assigned")
	e.waitCommitted(int64(events * 35 / 100))
	c := e.spawn("c")
	c.waitLog(t, "partitions assigned")
	e.waitCommitted(int64(events * 55 / 100))
	b.signal(syscall.SIGTERM)
	if b.err != nil {
		t.Errorf("worker b did not drain cleanly: %v", b.err)
	}
	e.waitCommitted(int64(events * 70 / 100))
	c.signal(syscall.SIGKILL)
	oracle := wait()
	e.waitDrained(90 * time.Second)
	a.signal(syscall.SIGTERM)
	if a.err != nil {
		t.Errorf("worker a did not drain cleanly: %v", a.err)
	}
	if n := strings.Count(a.output(), "partitions revoked"); n < 2 {
		t.Errorf("worker a saw %d revocations; want the cooperative rebalances as b and c joined, and the final drain", n)
	}
	e.reportTopology(topo, "workers join, SIGTERM, SIGKILL", events, oracle, nil)
}
