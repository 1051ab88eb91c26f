// Package bench is streamworker's end-to-end benchmark (`make bench`,
// cmd/swbench). On one machine it measures, against an in-process kfake
// cluster and a redis-server child process:
//
//   - the ceiling: a plain franz-go consume→produce copy of the same
//     pre-produced input, in this process;
//   - the reference: the same copy deduplicated with one pipelined
//     SET NX EX of the worker's dedupe key per event, in this process, to
//     which the pipeline's Redis CPU per event is compared;
//   - the pipeline: `streamworker run` as a child process over a
//     pre-produced loadgen workload, from its start until the group's
//     committed offsets reach the log end;
//   - end-to-end latency at a fixed offered rate, exactly per output record;
//   - how throughput, peak RSS, Redis round trips and produce requests grow
//     with the number of distinct users;
//
// with, for the reference and every pipeline run, redis-server's CPU per
// input event and calls of each command from its own INFO; and, on request, a CPU profile and allocations per event of the pipeline
// run in this process, and the Go micro-benchmarks of the hot path. Every
// figure is the median of Config.Runs runs.
//
// It needs the go command, the module's source (it builds the worker) and
// redis-server on PATH.
package bench

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Config says what Run measures. A zero field takes its value from Default.
// A Config is a plain value, safe to copy.
type Config struct {
	// Runs is how many times each measurement runs; figures are medians.
	Runs int
	// Events is the number of pre-produced input records of the ceiling
	// and pipeline measurements.
	Events int
	// Users is the number of distinct users of those and of the latency
	// run.
	Users int
	// Partitions is the partition count of every topic.
	Partitions int
	// LatencyRate is the offered rate of the latency run, events/s, and
	// LatencyFor its duration.
	LatencyRate float64
	LatencyFor  time.Duration
	// GrowthUsers are the user counts of the cost-growth runs.
	GrowthUsers []int
	// GrowthEvents is the input records of each cost-growth run; a run
	// with more users gets one event per user.
	GrowthEvents int
	// CommitInterval is the worker's kafka.commit_interval. The drain is
	// seen at the first commit after the last record, so the default 1s
	// would add up to a second to every throughput figure.
	CommitInterval time.Duration
	// WorkerEnv are extra KEY=VALUE environment entries of every worker
	// child, after the bench's own SW_* settings (so they override them):
	// e.g. SW_STATE_CACHE_SIZE=50000 or GOMEMLIMIT=300MiB, to measure a
	// change of configuration. They do not reach the in-process run.
	WorkerEnv []string
	// CPUProfile, when set, adds a run of the pipeline inside this process
	// under the CPU profiler, writing the profile to this file, and
	// measures allocations per event.
	CPUProfile string
	// WorkerProfiles, when set, is a directory that receives profiles of
	// the worker child of every pipeline and latency run (served with
	// http.pprof): a CPU profile of its first ProfileFor (from its start,
	// or from its assignment in a latency run), and its heap (in use as of
	// the last GC, and allocations) once drained, each named after the
	// run's consumer group.
	WorkerProfiles string
	ProfileFor     time.Duration
	// GoBench runs the Go micro-benchmarks of the hot path.
	GoBench bool
	// QuietWait is the longest time to wait, before each measurement,
	// for the other processes of the machine to use less than QuietBelow
	// cores (sampled over a second); 0 does not wait. The measurement
	// then runs anyway, and the table shows what the others used.
	QuietWait  time.Duration
	QuietBelow float64
	// Progress receives a line per measurement; nil discards them.
	Progress io.Writer
	// WorkerBinary is a built cmd/streamworker to run; empty builds one
	// from the module's source.
	WorkerBinary string
	// ReplicaAcks adds, to every run, the pipeline with
	// redis.min_replicas_acked = 1 against a replica of the bench's
	// redis-server (started for that measurement only), to measure what
	// the WAIT at the end of every commit costs.
	ReplicaAcks bool
	// ClusterShards, when above 0, adds to every run the pipeline on a
	// Redis Cluster of that many masters (no replicas), with each master's
	// CPU and commands from its INFO, and the sizing they imply
	// (clustershards.go).
	ClusterShards int
}

// Default returns the configuration of `make bench`: 3 runs over 1M events
// of 10k users on 6 partitions, 20 s at 20k events/s for latency, and 1k,
// 100k and 1M users for cost growth, with the micro-benchmarks.
func Default() Config {
	return Config{
		Runs:           3,
		Events:         1_000_000,
		Users:          10_000,
		Partitions:     6,
		LatencyRate:    20_000,
		LatencyFor:     20 * time.Second,
		GrowthUsers:    []int{1_000, 100_000, 1_000_000},
		GrowthEvents:   1_000_000,
		CommitInterval: 100 * time.Millisecond,
		GoBench:        true,
		ReplicaAcks:    true,
		QuietWait:      time.Minute,
		QuietBelow:     0.25,
	}
}

// Quick returns a smoke-test configuration that finishes in well under a
// minute: one run over 100k events, 5 s at 5k events/s, 1k and 100k users.
func Quick() Config {
	return Config{
		Runs:           1,
		Events:         100_000,
		Users:          10_000,
		Partitions:     6,
		LatencyRate:    5_000,
		LatencyFor:     5 * time.Second,
		GrowthUsers:    []int{1_000, 100_000},
		GrowthEvents:   100_000,
		CommitInterval: 100 * time.Millisecond,
	}
}

// withDefaults fills the zero fields of c from Default.
func (c Config) withDefaults() Config {
	d := Default()
	if c.Runs == 0 {
		c.Runs = d.Runs
	}
	if c.Events == 0 {
		c.Events = d.Events
	}
	if c.Users == 0 {
		c.Users = d.Users
	}
	if c.Partitions == 0 {
		c.Partitions = d.Partitions
	}
	if c.LatencyRate == 0 {
		c.LatencyRate = d.LatencyRate
	}
	if c.LatencyFor == 0 {
		c.LatencyFor = d.LatencyFor
	}
	if c.GrowthUsers == nil {
		c.GrowthUsers = d.GrowthUsers
	}
	if c.GrowthEvents == 0 {
		c.GrowthEvents = d.GrowthEvents
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = d.CommitInterval
	}
	if c.QuietBelow == 0 {
		c.QuietBelow = d.QuietBelow
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// ErrInvalidConfig is wrapped by the errors of Run for a bad Config.
var ErrInvalidConfig = errors.New("bench: invalid config")

func (c Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	if c.Runs < 1 {
		bad("runs %d: want at least 1", c.Runs)
	}
	if c.Events < 1 {
		bad("events %d: want at least 1", c.Events)
	}
	if c.Partitions < 1 {
		bad("partitions %d: want at least 1", c.Partitions)
	}
	if c.LatencyRate < 0 || c.LatencyFor < 0 || int(c.LatencyRate*c.LatencyFor.Seconds()) < 1 {
		bad("latency run of %v at %v events/s has no events", c.LatencyFor, c.LatencyRate)
	}
	if c.ClusterShards < 0 || c.ClusterShards > maxClusterShards {
		bad("cluster shards %d: want 0 to %d", c.ClusterShards, maxClusterShards)
	}
	if c.CommitInterval < 0 {
		bad("commit interval %v", c.CommitInterval)
	}
	for _, u := range append([]int{c.Users}, c.GrowthUsers...) {
		if u < 1 || u > 1_000_000 {
			bad("users %d: want 1 to 1,000,000", u)
		}
	}
	return errors.Join(errs...)
}

// growthEvents returns the input records of a cost-growth run over users.
func (c Config) growthEvents(users int) int { return max(c.GrowthEvents, users) }

// bencher holds what every measurement of one Run shares.
type bencher struct {
	cfg    Config
	root   string // module root
	dir    string // temporary files
	worker string // the streamworker binary
	redis  *redisServer
	http   *http.Client // scrapes the workers' /metrics
	groups atomic.Int64

	// redisSeeds, when set, is the workers' redis.addr instead of redis's.
	redisSeeds string
}

// group returns a new consumer group name.
func (b *bencher) group(kind string) string {
	return fmt.Sprintf("swbench-%s-%d", kind, b.groups.Add(1))
}

// workerEnv returns the environment of a worker child on cluster c.
func (b *bencher) workerEnv(c *cluster, group string) workerEnv {
	return workerEnv{bin: b.worker, dir: b.dir, seeds: c.seeds, names: c.names, group: group,
		redis: cmp.Or(b.redisSeeds, b.redis.addr), commitIv: b.cfg.CommitInterval, http: b.http, extra: b.cfg.WorkerEnv,
		pprof: b.cfg.WorkerProfiles != ""}
}

func (b *bencher) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Progress, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Run builds the worker, starts redis-server and runs every measurement
// cfg.Runs times, then the profile run and the micro-benchmarks if asked. It
// must run inside the streamworker module. A measurement that fails is
// listed in Report.Failures (with the path of a copy of the worker's log)
// and left out of the medians; Run returns an error only when it cannot
// measure at all, or ctx ends. Run is not safe to call
// concurrently with itself (the measurements share the machine).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	began := time.Now()
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := tempDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	b := &bencher{cfg: cfg, root: root, dir: dir, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	if b.worker = cfg.WorkerBinary; b.worker == "" {
		b.logf("building ./cmd/streamworker")
		if b.worker, err = buildWorker(ctx, root, dir); err != nil {
			return nil, err
		}
	}
	if b.redis, err = startRedis(ctx, dir); err != nil {
		return nil, err
	}
	defer b.redis.stop()

	rep := newReport(cfg)
	rep.Commit = gitCommit(root)
	rep.LoadBefore = loadAverage()
	growth := growthUsers(cfg)
	for run := 1; run <= cfg.Runs; run++ {
		if err := b.runOnce(ctx, rep, run, growth); err != nil {
			return nil, fmt.Errorf("run %d: %w", run, err)
		}
	}
	if cfg.CPUProfile != "" {
		if err := b.waitQuiet(ctx); err != nil {
			return nil, err
		}
		b.logf("in-process pipeline under the CPU profiler (%d events)", cfg.Events)
		p, err := b.inProcess(ctx, cfg.CPUProfile)
		if err != nil {
			return nil, fmt.Errorf("profile run: %w", err)
		}
		rep.Profile = &p
	}
	if cfg.GoBench {
		b.logf("go test -bench on %v", microPackages)
		if rep.GoBenchmarks, err = runGoBenchmarks(ctx, root); err != nil {
			return nil, err
		}
	}
	rep.LoadAfter = loadAverage()
	rep.Took = time.Since(began)
	return rep, nil
}

// gitCommit returns the short commit of the work tree at root, with
// "+dirty" if it has changes; "" when git cannot tell.
func gitCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "+dirty"
	}
	return c
}

// growthUsers returns the user counts of the cost-growth rows, the main
// workload's included, in increasing order.
func growthUsers(cfg Config) []int {
	us := append([]int{cfg.Users}, cfg.GrowthUsers...)
	slices.Sort(us)
	return slices.Compact(us)
}

// waitQuiet waits up to cfg.QuietWait for the machine's other processes
// (all but this one and redis-server) to use less than cfg.QuietBelow cores
// over a second.
func (b *bencher) waitQuiet(ctx context.Context) error {
	if b.cfg.QuietWait <= 0 {
		return nil
	}
	deadline := time.Now().Add(b.cfg.QuietWait)
	for logged := false; ; {
		m := startCPU(map[string]int{"bench": os.Getpid(), "redis-server": b.redis.pid()})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
		other := m.stop().Cores["other"]
		if other < b.cfg.QuietBelow {
			return nil
		}
		if time.Now().After(deadline) {
			b.logf("other processes still use %.2f cores after %v; measuring anyway", other, b.cfg.QuietWait)
			return nil
		}
		if !logged {
			b.logf("other processes use %.2f cores; waiting up to %v for them to quiet down", other, b.cfg.QuietWait)
			logged = true
		}
	}
}

// runOnce runs every measurement once and adds them to rep. A failed
// measurement is recorded in rep.Failures and the others still run; only
// the end of ctx stops the run.
func (b *bencher) runOnce(ctx context.Context, rep *Report, run int, growth []int) error {
	cfg := b.cfg
	fail := func(what string, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		msg := fmt.Sprintf("run %d, %s: %v", run, what, err)
		b.logf("FAILED %s", msg)
		rep.Failures = append(rep.Failures, msg)
		return nil
	}
	drain := func(what string, m func() (drainResult, error)) (drainResult, bool, error) {
		return measure(ctx, b, fail, what, m)
	}
	c, cok, err := drain("ceiling", func() (drainResult, error) { return b.ceiling(ctx, cfg.Users, cfg.Events) })
	if err != nil {
		return err
	}
	if cok {
		b.logf("run %d/%d ceiling: %.0f events/s over %d events", run, cfg.Runs, c.rate(), c.events)
		rep.addCeiling(c)
	}

	ref, refok, err := drain("reference", func() (drainResult, error) { return b.reference(ctx, cfg.Users, cfg.Events) })
	if err != nil {
		return err
	}
	if refok {
		b.logf("run %d/%d reference (SET NX EX per event): %.0f events/s, %d of %d records forwarded, redis-server %.2f µs/event",
			run, cfg.Runs, ref.rate(), int64(ref.outputs), ref.events, ref.redisPerEvent())
		var ceil *drainResult
		if cok {
			ceil = &c
		}
		rep.addReference(ref, ceil)
	}

	p, pok, err := drain("pipeline", func() (drainResult, error) { return b.pipeline(ctx, cfg.Users, cfg.Events) })
	if err != nil {
		return err
	}
	if pok {
		b.logf("run %d/%d pipeline: %.0f events/s over %d events (first record after %v), peak RSS %d MB, worker %.2f µs/event, redis-server %.2f µs/event",
			run, cfg.Runs, p.rate(), p.events, p.firstConsumed.Round(time.Millisecond), p.peakRSS>>20, p.cpuPerEvent("worker"), p.redisPerEvent())
		rep.addPipeline(p)
		if cok {
			rep.addRatios(c, p)
		}
		if refok {
			rep.addRedisRatio(ref, p)
		}
		if cfg.ReplicaAcks {
			a, ok, err := drain("pipeline with min_replicas_acked", func() (drainResult, error) { return b.pipelineAcked(ctx) })
			if err != nil {
				return err
			}
			if ok {
				b.logf("run %d/%d pipeline with min_replicas_acked=1: %.0f events/s (%.2f of the pipeline's)", run, cfg.Runs, a.rate(), a.rate()/p.rate())
				rep.addAcked(p, a)
			}
		}
	}

	if pok && cfg.ClusterShards > 0 {
		if err := b.clusterShards(ctx, rep, run, p, fail); err != nil {
			return err
		}
	}

	l, ok, err := measure(ctx, b, fail, "latency", func() (latencyResult, error) { return b.latency(ctx) })
	if err != nil {
		return err
	}
	if ok {
		b.logf("run %d/%d latency at %.0f events/s: p50 %.0f ms, p99 %.0f ms, p99.9 %.0f ms (%d outputs)",
			run, cfg.Runs, l.offered, l.fromProduce.p50, l.fromProduce.p99, l.fromProduce.p999, l.fromProduce.n)
		rep.addLatency(l)
	}

	for _, u := range growth {
		if u == cfg.Users && cfg.growthEvents(u) == cfg.Events {
			if pok {
				rep.addGrowth(u, p)
			}
			continue
		}
		g, ok, err := drain(fmt.Sprintf("growth at %d users", u), func() (drainResult, error) { return b.pipeline(ctx, u, cfg.growthEvents(u)) })
		if err != nil {
			return err
		}
		if ok {
			b.logf("run %d/%d growth %d users: %.0f events/s, peak RSS %d MB", run, cfg.Runs, u, g.rate(), g.peakRSS>>20)
			rep.addGrowth(u, g)
		}
	}
	return nil
}

// measure runs one measurement m of b when the machine is quiet, after a
// GC. When m fails, fail records the failure and ok is false; err is
// non-nil only when the run must stop.
func measure[T any](ctx context.Context, b *bencher, fail func(what string, err error) error, what string, m func() (T, error)) (r T, ok bool, err error) {
	if err := b.waitQuiet(ctx); err != nil {
		return r, false, err
	}
	runtime.GC()
	r, merr := m()
	if merr != nil {
		return r, false, fail(what, merr)
	}
	return r, true, nil
}
