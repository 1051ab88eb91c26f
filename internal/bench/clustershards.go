// The pipeline on a Redis Cluster of Config.ClusterShards masters, next to
// the same pipeline on one redis-server, with each master's CPU and
// commands read from INFO over the measurement: what one input event costs
// each Redis shard and the worker, to size a deployment on paper (Sizing).

package bench

import (
	"context"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// UnitPerEvent is the unit of a count per input event.
const UnitPerEvent = "per event"

// maxClusterShards bounds Config.ClusterShards: every master is a process
// on this machine.
const maxClusterShards = 16

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// redisCluster is a Redis Cluster of masters without replicas, redis-server
// children of this process, for one measurement.
type redisCluster struct {
	nodes []*redisServer // master i serves slotRange(i, len(nodes))
	buses []int          // their cluster bus ports
}

// slotRange returns the first and last hash slot of master i of n.
func slotRange(i, n int) (first, last int) {
	return i * clusterSlots / n, (i+1)*clusterSlots/n - 1
}

// startRedisCluster starts masters cluster-enabled redis-servers (their
// cluster bus on a port of its own, --cluster-port), gives each an equal
// range of the hash slots and a config epoch of its own, joins them with
// CLUSTER MEET and waits until every node sees the whole cluster serving.
func startRedisCluster(ctx context.Context, dir string, masters int) (*redisCluster, error) {
	c := &redisCluster{}
	for range masters {
		n, bus, err := startClusterNode(ctx, dir)
		if err != nil {
			c.stop()
			return nil, err
		}
		c.nodes, c.buses = append(c.nodes, n), append(c.buses, bus)
	}
	for i, n := range c.nodes {
		first, last := slotRange(i, masters)
		if err := n.client.Do(ctx, "cluster", "addslotsrange", first, last).Err(); err != nil {
			c.stop()
			return nil, fmt.Errorf("bench: CLUSTER ADDSLOTSRANGE %d %d on %s: %w", first, last, n.addr, err)
		}
		if err := n.client.Do(ctx, "cluster", "set-config-epoch", i+1).Err(); err != nil {
			c.stop()
			return nil, fmt.Errorf("bench: CLUSTER SET-CONFIG-EPOCH on %s: %w", n.addr, err)
		}
	}
	for i, n := range c.nodes[1:] {
		host, port, _ := net.SplitHostPort(n.addr)
		if err := c.nodes[0].client.Do(ctx, "cluster", "meet", host, port, c.buses[i+1]).Err(); err != nil {
			c.stop()
			return nil, fmt.Errorf("bench: CLUSTER MEET %s: %w", n.addr, err)
		}
	}
	if err := c.waitServing(ctx, 30*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// startClusterNode starts one cluster-enabled redis-server and returns it
// with its bus port, chosen free like the client port; a node that cannot
// bind its ports is tried again.
func startClusterNode(ctx context.Context, dir string) (*redisServer, int, error) {
	var err error
	for range 3 {
		var bus int
		if bus, err = freePort(); err != nil {
			return nil, 0, err
		}
		b := strconv.Itoa(bus)
		var n *redisServer
		n, err = startRedis(ctx, dir, "--cluster-enabled", "yes", "--cluster-port", b,
			"--cluster-config-file", "nodes-"+b+".conf", "--cluster-node-timeout", "5000")
		if err == nil {
			return n, bus, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, 0, err
}

// waitServing waits until every node reports cluster_state:ok, knows every
// other node and sees all hash slots assigned and served.
func (c *redisCluster) waitServing(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_known_nodes":    strconv.Itoa(len(c.nodes)),
		"cluster_slots_assigned": strconv.Itoa(clusterSlots),
		"cluster_slots_ok":       strconv.Itoa(clusterSlots),
	}
	for {
		var last string
		for _, n := range c.nodes {
			text, err := n.client.ClusterInfo(ctx).Result()
			if err != nil {
				last = fmt.Sprintf("%s: %v", n.addr, err)
				break
			}
			info := infoFields(text)
			for k, v := range want {
				if info[k] != v {
					last = fmt.Sprintf("%s: %s is %q, want %q", n.addr, k, info[k], v)
				}
			}
			if last != "" {
				break
			}
		}
		if last == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: the Redis Cluster does not serve after %v (%s)", timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// seeds returns the worker's redis.addr: every master (the same one twice
// for a one-master Cluster, since one address means a single server).
func (c *redisCluster) seeds() string {
	addrs := make([]string, 0, len(c.nodes)+1)
	for _, n := range c.nodes {
		addrs = append(addrs, n.addr)
	}
	if len(addrs) == 1 {
		addrs = append(addrs, addrs[0])
	}
	return strings.Join(addrs, ",")
}

func (c *redisCluster) stop() {
	for _, n := range c.nodes {
		n.stop()
	}
}

// infoFields returns the key:value lines of a CLUSTER INFO reply.
func infoFields(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// shardsResult is a pipeline measurement on a Redis Cluster with what each
// master did over it (INFO cpu and commandstats, master i serving
// slotRange(i, len(shards))).
type shardsResult struct {
	drainResult
	shards []redisUse
}

// micros returns d per input event, µs.
func (r shardsResult) micros(d time.Duration) float64 {
	return float64(d.Microseconds()) / float64(r.events)
}

// perEvent returns n per input event.
func (r shardsResult) perEvent(n int64) float64 { return float64(n) / float64(r.events) }

// total returns what all masters did, added up.
func (r shardsResult) total() redisUse {
	t := redisUse{calls: map[string]int64{}}
	for _, s := range r.shards {
		t.cpu += s.cpu
		for k, v := range s.calls {
			t.calls[k] += v
		}
	}
	return t
}

// spread returns the Redis CPU of the busiest master over the least busy.
func (r shardsResult) spread() float64 {
	cpu := make([]time.Duration, len(r.shards))
	for i, s := range r.shards {
		cpu[i] = s.cpu
	}
	return float64(slices.Max(cpu)) / float64(slices.Min(cpu))
}

// skew returns the Redis CPU of the busiest master over the mean.
func (r shardsResult) skew() float64 {
	var busiest time.Duration
	for _, s := range r.shards {
		busiest = max(busiest, s.cpu)
	}
	return float64(busiest) * float64(len(r.shards)) / float64(r.total().cpu)
}

// otherCores returns the CPU of the machine's other processes: the meter's
// "other" less the masters it did not watch (all but the first).
func (r shardsResult) otherCores() float64 {
	var unwatched time.Duration
	for _, s := range r.shards[1:] {
		unwatched += s.cpu
	}
	return max(r.cpu.Cores["other"]-unwatched.Seconds()/r.cpu.Wall.Seconds(), 0)
}

// pipelineCluster runs the pipeline over the main workload on a Redis
// Cluster of cfg.ClusterShards masters started for it, reading every
// master's INFO before and after. That interval also holds the input's
// pre-production, when Redis idles: pipeline's own reading of the first
// master, over the worker's run only, tells how much that adds.
func (b *bencher) pipelineCluster(ctx context.Context) (shardsResult, error) {
	c, err := startRedisCluster(ctx, b.dir, b.cfg.ClusterShards)
	if err != nil {
		return shardsResult{}, err
	}
	defer c.stop()
	own := b.redis
	b.redis, b.redisSeeds = c.nodes[0], c.seeds()
	defer func() { b.redis, b.redisSeeds = own, "" }()
	read := func() ([]redisUse, error) {
		out := make([]redisUse, len(c.nodes))
		for i, n := range c.nodes {
			var err error
			if out[i], err = n.usage(ctx); err != nil {
				return nil, fmt.Errorf("%w (master %s)", err, n.addr)
			}
		}
		return out, nil
	}
	before, err := read()
	if err != nil {
		return shardsResult{}, err
	}
	p, err := b.pipeline(ctx, b.cfg.Users, b.cfg.Events)
	if err != nil {
		return shardsResult{}, err
	}
	after, err := read()
	if err != nil {
		return shardsResult{}, err
	}
	r := shardsResult{drainResult: p, shards: make([]redisUse, len(c.nodes))}
	for i := range c.nodes {
		r.shards[i] = after[i].since(before[i])
	}
	return r, nil
}

// clusterShards measures the pipeline on a Redis Cluster (pipelineCluster)
// and adds it to rep next to p, the same run's pipeline on one Redis.
func (b *bencher) clusterShards(ctx context.Context, rep *Report, run int, p drainResult, fail func(string, error) error) error {
	n := b.cfg.ClusterShards
	s, ok, err := measure(ctx, b, fail, fmt.Sprintf("pipeline on a Redis Cluster of %d masters", n),
		func() (shardsResult, error) { return b.pipelineCluster(ctx) })
	if !ok {
		return err
	}
	b.logf("run %d/%d pipeline on a Redis Cluster of %d masters: %.0f events/s, worker %.2f µs/event, Redis %.2f µs/event "+
		"(spread %.2f; master 1 %.2f µs/event, %.2f over the worker's run only)",
		run, b.cfg.Runs, n, s.rate(), s.cpuPerEvent("worker"), s.micros(s.total().cpu), s.spread(), s.micros(s.shards[0].cpu), s.redisPerEvent())
	rep.addShards(p, s)
	return nil
}

// Keys of the figures Sizing reads.
const (
	keyClusterWorkerMicros = "cluster_worker_us"
	keyClusterRedisMicros  = "cluster_redis_us"
	keyClusterSkew         = "cluster_skew"
)

// addShards adds the figures of one run of clusterShards; p is the same
// run's pipeline on one Redis.
func (r *Report) addShards(p drainResult, s shardsResult) {
	n := len(s.shards)
	label := fmt.Sprintf("Redis Cluster of %d masters: ", n)
	t := s.total()
	r.add("cluster_eps", label+"pipeline throughput", UnitRate, s.rate(), nil)
	r.add(keyClusterWorkerMicros, label+"worker CPU per input event (/proc)", UnitMicros, s.cpuPerEvent("worker"), nil)
	r.add("cluster_worker_eps_cpu", label+"events per worker CPU-second", UnitRate, s.perCPUSecond("worker"), nil)
	r.add(keyClusterRedisMicros, label+"Redis CPU per input event, all masters (INFO cpu)", UnitMicros, s.micros(t.cpu), nil)
	r.add("cluster_evalsha", label+"EVALSHA calls (commit script) per input event, all masters", UnitPerEvent, s.perEvent(t.calls["evalsha"]), nil)
	var cmds int64
	for _, c := range t.calls {
		cmds += c
	}
	r.add("cluster_commands", label+"Redis commands per input event (scripts' own included), all masters", UnitPerEvent, s.perEvent(cmds), nil)
	r.add("cluster_other_cpu", label+"CPU of other processes on the machine", UnitCores, s.otherCores(), nil)
	for i, m := range s.shards {
		first, last := slotRange(i, n)
		k := "cluster_shard" + strconv.Itoa(i+1) + "_"
		l := fmt.Sprintf("%smaster %d (slots %d–%d) ", label, i+1, first, last)
		r.add(k+"redis_us", l+"Redis CPU per input event", UnitMicros, s.micros(m.cpu), nil)
		r.add(k+"evalsha", l+"EVALSHA calls per input event", UnitPerEvent, s.perEvent(m.calls["evalsha"]), nil)
	}
	r.add("cluster_spread", label+"Redis CPU of the busiest master / the least busy", UnitRatio, s.spread(), nil)
	r.add(keyClusterSkew, label+"Redis CPU of the busiest master / the mean", UnitRatio, s.skew(), nil)
	r.add("cluster_vs_single_eps", "Throughput, Redis Cluster / one Redis (the pipeline)", UnitRatio, s.rate()/p.rate(), nil)
	r.add("cluster_vs_single_redis", "Redis CPU per input event, Redis Cluster / one Redis", UnitRatio, s.micros(t.cpu)/p.redisPerEvent(), nil)
	r.add("cluster_vs_single_worker", "Worker CPU per input event, Redis Cluster / one Redis", UnitRatio, s.cpuPerEvent("worker")/p.cpuPerEvent("worker"), nil)
	all := s.drainResult
	all.redis = t
	r.addCommands(fmt.Sprintf("pipeline on a Redis Cluster of %d masters (all masters)", n), all)
}

// Sizing is what a deployment on a Redis Cluster needs per input event,
// and the loads it is sized for.
type Sizing struct {
	// WorkerMicros is the worker's CPU per input event, µs (on a Cluster).
	WorkerMicros float64
	// RedisMicros is the Redis CPU per input event, µs, all masters summed.
	RedisMicros float64
	// Skew is the busiest master's Redis CPU over the mean (≥ 1): how
	// unevenly the users' hash slots load the masters.
	Skew float64
	// ShardLoad is the share of one core a master may use: Redis runs
	// commands on one thread, and the rest is headroom for bursts,
	// rebalances and background work (e.g. 0.7).
	ShardLoad float64
	// WorkerLoad is the share of its cores a worker may use, the rest being
	// room to catch up after a restart or rebalance (e.g. 0.7).
	WorkerLoad float64
	// CoresPerWorker is the cores of one worker process; it owns as many
	// input partitions, one per core.
	CoresPerWorker int
}

// DefaultSizing returns the loads of BENCHMARKS.md's sizing with the given
// measured costs.
func DefaultSizing(workerMicros, redisMicros, skew float64) Sizing {
	return Sizing{WorkerMicros: workerMicros, RedisMicros: redisMicros, Skew: max(skew, 1),
		ShardLoad: 0.7, WorkerLoad: 0.7, CoresPerWorker: 4}
}

// SizingRates are the input rates of the sizing table, events/s.
var SizingRates = []float64{100_000, 1_000_000, 10_000_000}

// SizingRow is what one input rate needs.
type SizingRow struct {
	Rate float64
	// RedisCores is the Redis CPU the rate costs (cores, all masters), and
	// Masters the masters that keep the busiest below ShardLoad:
	// ⌈Rate × RedisMicros × Skew / (ShardLoad × 10⁶)⌉.
	RedisCores float64
	Masters    int
	// WorkerCPU is the worker CPU the rate costs (cores), WorkerCores the
	// cores that keep it below WorkerLoad: ⌈Rate × WorkerMicros /
	// (WorkerLoad × 10⁶)⌉.
	WorkerCPU   float64
	WorkerCores int
	// Workers is ⌈WorkerCores / CoresPerWorker⌉, and Partitions
	// Workers × CoresPerWorker: at least one input partition per worker
	// core, the same number for every worker process.
	Workers    int
	Partitions int
}

// Row returns what rate events/s need.
func (s Sizing) Row(rate float64) SizingRow {
	r := SizingRow{Rate: rate, RedisCores: rate * s.RedisMicros / 1e6, WorkerCPU: rate * s.WorkerMicros / 1e6}
	r.Masters = max(ceil(r.RedisCores*s.Skew/s.ShardLoad), 1)
	r.WorkerCores = max(ceil(r.WorkerCPU/s.WorkerLoad), 1)
	r.Workers = (r.WorkerCores + s.CoresPerWorker - 1) / s.CoresPerWorker
	r.Partitions = r.Workers * s.CoresPerWorker
	return r
}

// ceil rounds up, ignoring the float error of a quotient that should be
// whole (4.0000000001 is 4).
func ceil(v float64) int { return int(math.Ceil(v - 1e-9)) }

// Markdown returns the assumptions, the formulas and a table of the rates,
// each cell with its arithmetic.
func (s Sizing) Markdown(rates []float64) string {
	var b strings.Builder
	w, rd, k, sl, wl := num(s.WorkerMicros), num(s.RedisMicros), num(s.Skew), num(s.ShardLoad), num(s.WorkerLoad)
	fmt.Fprintf(&b, "Per input event: worker %s µs of CPU (%s events per worker core-second); "+
		"Redis %s µs of CPU over all masters, the busiest master %s × the mean.\n", w, fmtInt(1e6/s.WorkerMicros), rd, k)
	fmt.Fprintf(&b, "Masters = ⌈rate × %s µs × %s / (%s × 10⁶ µs)⌉ (a master runs commands on one thread, kept below %.0f%% of a core); "+
		"worker cores = ⌈rate × %s µs / (%s × 10⁶ µs)⌉ (kept below %.0f%%); ", rd, k, sl, 100*s.ShardLoad, w, wl, 100*s.WorkerLoad)
	fmt.Fprintf(&b, "worker processes of %d cores = ⌈worker cores / %d⌉; input partitions = processes × %d "+
		"(one per worker core, the same count per process).\n\n", s.CoresPerWorker, s.CoresPerWorker, s.CoresPerWorker)
	b.WriteString("| Input events/s | Redis CPU (cores) | Redis masters (1 core each) | Worker CPU (cores) | Worker cores | Worker processes | Input partitions |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, rate := range rates {
		r := s.Row(rate)
		x := fmtInt(rate)
		fmt.Fprintf(&b, "| %s | %s × %s µs = %.2f | %.2f × %s / %s = %.2f → **%d** ", x, x, rd, r.RedisCores, r.RedisCores, k, sl, r.RedisCores*s.Skew/s.ShardLoad, r.Masters)
		fmt.Fprintf(&b, "| %s × %s µs = %.2f | %.2f / %s = %.2f → **%d** ", x, w, r.WorkerCPU, r.WorkerCPU, wl, r.WorkerCPU/s.WorkerLoad, r.WorkerCores)
		fmt.Fprintf(&b, "| ⌈%d / %d⌉ = **%d** | %d × %d = **%d** |\n", r.WorkerCores, s.CoresPerWorker, r.Workers, r.Workers, s.CoresPerWorker, r.Partitions)
	}
	return b.String()
}

// num prints v with up to 4 significant digits, as the sizing's inputs are
// given.
func num(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// round2 rounds v to 2 decimals, as the report prints µs and ratios.
func round2(v float64) float64 { return math.Round(v*100) / 100 }

// ParseSizing returns DefaultSizing of "WORKER_US,REDIS_US,SKEW" (the
// figures a --cluster-shards run reports).
func ParseSizing(s string) (Sizing, error) {
	f := strings.Split(s, ",")
	if len(f) != 3 {
		return Sizing{}, fmt.Errorf("%w: sizing %q: want WORKER_US,REDIS_US,SKEW", ErrInvalidConfig, s)
	}
	var v [3]float64
	for i, x := range f {
		n, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil || !(n > 0) || math.IsInf(n, 0) {
			return Sizing{}, fmt.Errorf("%w: sizing %q: %q is not a positive number", ErrInvalidConfig, s, x)
		}
		v[i] = n
	}
	return DefaultSizing(v[0], v[1], v[2]), nil
}

// sizingSection returns the sizing table from the medians of the Redis
// Cluster figures, or "" when they were not measured.
func (r *Report) sizingSection() string {
	w, ok1 := r.Figure(keyClusterWorkerMicros)
	rd, ok2 := r.Figure(keyClusterRedisMicros)
	k, ok3 := r.Figure(keyClusterSkew)
	if !ok1 || !ok2 || !ok3 {
		return ""
	}
	s := DefaultSizing(round2(w.Median()), round2(rd.Median()), round2(k.Median()))
	return fmt.Sprintf("\nSizing on a Redis Cluster, from the medians of the Redis Cluster of %d masters above (commit %s; "+
		"`swbench --sizing %s,%s,%s` prints it again):\n\n%s",
		r.Config.ClusterShards, r.Commit, num(s.WorkerMicros), num(s.RedisMicros), num(s.Skew), s.Markdown(SizingRates))
}
