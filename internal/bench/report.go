package bench

import (
	"cmp"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Units of Figure.Unit; they decide how a value is printed.
const (
	UnitRate    = "events/s"
	UnitRatio   = "ratio"
	UnitMs      = "ms"
	UnitSeconds = "s"
	UnitMB      = "MB"
	UnitCores   = "cores"
	UnitPer1k   = "per 1000 events"
	UnitCount   = "count"
	UnitMicros  = "µs per event"
)

// Target is a bound a Figure's median must meet.
type Target struct {
	// AtLeast is true for "≥ Bound", false for "< Bound" (or "≤ Bound"
	// with OrEqual).
	AtLeast bool
	OrEqual bool
	Bound   float64
}

// Met reports whether v meets the target.
func (t Target) Met(v float64) bool {
	switch {
	case t.AtLeast:
		return v >= t.Bound
	case t.OrEqual:
		return v <= t.Bound
	}
	return v < t.Bound
}

// Figure is one measured quantity with its value in every run.
type Figure struct {
	Key    string // stable identifier, e.g. "pipeline_eps"
	Name   string // the table's row label
	Unit   string // one of the Unit constants
	Values []float64
	Target *Target // nil when the figure has none
}

// Median returns the median of the values (NaN when there are none).
func (f Figure) Median() float64 { return median(f.Values) }

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Report is the result of Run. It is not safe for concurrent use.
type Report struct {
	Config       Config
	Figures      []Figure
	GoBenchmarks []GoBenchmark
	Profile      *Profile // nil unless Config.CPUProfile was set
	// RedisCommands are the Redis calls per input event of the
	// measurements that use Redis, by command.
	RedisCommands []RedisCommands
	// Failures lists the measurements that failed; their figures are
	// missing from the medians.
	Failures []string
	// Commit is the checked-out commit of the module ("" if unknown),
	// with "+dirty" when the work tree had changes.
	Commit string
	// LoadBefore and LoadAfter are the machine's load averages
	// (/proc/loadavg) when Run started and ended.
	LoadBefore, LoadAfter string
	Took                  time.Duration
	index                 map[string]int
}

func newReport(cfg Config) *Report { return &Report{Config: cfg, index: map[string]int{}} }

// Figure returns the figure with the given key.
func (r *Report) Figure(key string) (Figure, bool) {
	i, ok := r.index[key]
	if !ok {
		return Figure{}, false
	}
	return r.Figures[i], true
}

// add appends v to the figure key, creating it with name, unit and target.
func (r *Report) add(key, name, unit string, v float64, t *Target) {
	i, ok := r.index[key]
	if !ok {
		i = len(r.Figures)
		r.index[key] = i
		r.Figures = append(r.Figures, Figure{Key: key, Name: name, Unit: unit, Target: t})
	}
	r.Figures[i].Values = append(r.Figures[i].Values, v)
}

// RedisCommands is redis-server's calls per input event in one kind of
// measurement, by command (INFO commandstats: "set", "evalsha", ...), in
// every run.
type RedisCommands struct {
	Measurement string
	Runs        []map[string]float64
}

// Median returns the median over the runs of cmd's calls per input event; a
// run without the command counts as 0.
func (c RedisCommands) Median(cmd string) float64 {
	vs := make([]float64, len(c.Runs))
	for i, m := range c.Runs {
		vs[i] = m[cmd]
	}
	return median(vs)
}

// addCommands adds one run's Redis calls per input event of measurement.
func (r *Report) addCommands(measurement string, d drainResult) {
	for i := range r.RedisCommands {
		if c := &r.RedisCommands[i]; c.Measurement == measurement {
			c.Runs = append(c.Runs, d.callsPerEvent())
			return
		}
	}
	r.RedisCommands = append(r.RedisCommands, RedisCommands{Measurement: measurement, Runs: []map[string]float64{d.callsPerEvent()}})
}

// minCalls is the calls per input event a command needs, in the median of
// some measurement, to have a column in CommandsTable.
const minCalls = 0.01

// scriptCalls are the commands that run a script: INFO commandstats counts
// both them and the commands their scripts call, so CommandsTable shows them
// however rarely they run.
var scriptCalls = []string{"evalsha", "eval", "fcall"}

// CommandsTable returns the Redis calls per input event as a markdown
// table: a row per measurement, a column per command with more than
// minCalls calls per event in some row (medians of the runs) and per
// script-running command called at all, the most called first; "" when no
// measurement used Redis.
func (r *Report) CommandsTable() string {
	most := map[string]float64{}
	for _, c := range r.RedisCommands {
		for _, run := range c.Runs {
			for cmd := range run {
				if m := c.Median(cmd); m > minCalls || m > 0 && slices.Contains(scriptCalls, cmd) {
					most[cmd] = max(most[cmd], m)
				}
			}
		}
	}
	if len(most) == 0 {
		return ""
	}
	cmds := make([]string, 0, len(most))
	for cmd := range most {
		cmds = append(cmds, cmd)
	}
	slices.SortFunc(cmds, func(a, b string) int {
		if d := cmp.Compare(most[b], most[a]); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	b.WriteString("| Measurement | " + strings.Join(cmds, " | ") + " |\n|---|" + strings.Repeat("---:|", len(cmds)) + "\n")
	for _, c := range r.RedisCommands {
		b.WriteString("| " + c.Measurement + " |")
		for _, cmd := range cmds {
			b.WriteString(" " + strconv.FormatFloat(c.Median(cmd), 'g', 3, 64) + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Target bounds of the product.
var (
	targetRatio   = &Target{AtLeast: true, Bound: 0.35}
	targetRate    = &Target{AtLeast: true, Bound: 120_000}
	targetP99     = &Target{AtLeast: false, Bound: 50}
	targetRSS1M   = &Target{AtLeast: false, Bound: 400}
	targetRSSUser = 1_000_000
	// targetRedisCPU bounds redis-server's CPU per input event under the
	// pipeline, relative to the reference system's.
	targetRedisCPU = &Target{OrEqual: true, Bound: 1.5}
	// targetWorkerCPU bounds the worker's CPU per input event, µs, at the
	// main user count.
	targetWorkerCPU = &Target{OrEqual: true, Bound: 5}
)

// cpuOrder is the order of the processes in the CPU rows.
var cpuOrder = []string{"worker", "redis-server", "bench (kfake)", "other"}

func (r *Report) addCeiling(c drainResult) {
	r.add("ceiling_eps", "Ceiling: franz-go consume→produce copy, commit per poll", UnitRate, c.rate(), nil)
	r.add("ceiling_cpu", "Ceiling: CPU of the bench process (kfake + copy)", UnitCores, c.cpu.Cores[ceilingProc], nil)
	r.add("ceiling_cpu_us", "Ceiling: bench process CPU per input event (kfake + copy)", UnitMicros, c.cpuPerEvent(ceilingProc), nil)
	r.add("ceiling_other_cpu", "Ceiling: CPU of other processes on the machine", UnitCores, c.cpu.Cores["other"], nil)
	r.add("ceiling_produce_per_1k", "Ceiling: produce requests", UnitPer1k, c.perThousand(float64(c.produce.requests)), nil)
	r.add("ceiling_eps_cpu", "Ceiling: events per CPU-second (kfake + copy)", UnitRate, c.perCPUSecond(ceilingProc), nil)
}

// addReference adds the reference system's figures of one run; c is the
// same run's ceiling, nil when it failed.
func (r *Report) addReference(ref drainResult, c *drainResult) {
	r.add("ref_eps", "Reference: franz-go + pipelined SET NX EX per event (dedupe + forward), commit per poll", UnitRate, ref.rate(), nil)
	if c != nil {
		r.add("ref_ratio", "Reference / ceiling", UnitRatio, ref.rate()/c.rate(), nil)
	}
	r.add("ref_cpu", "Reference: CPU of the bench process (kfake + reference)", UnitCores, ref.cpu.Cores[referenceProc], nil)
	r.add("ref_cpu_us", "Reference: bench process CPU per input event (kfake + reference)", UnitMicros, ref.cpuPerEvent(referenceProc), nil)
	r.add("ref_redis_cpu", "Reference: CPU of redis-server (/proc)", UnitCores, ref.cpu.Cores["redis-server"], nil)
	r.add("ref_redis_us", "Reference: redis-server CPU per input event (INFO cpu)", UnitMicros, ref.redisPerEvent(), nil)
	r.add("ref_forwarded_per_1k", "Reference: records forwarded to the aggregates topic", UnitPer1k, ref.perThousand(ref.outputs), nil)
	r.addCommands("reference", ref)
}

func (r *Report) addPipeline(p drainResult) {
	users := fmtInt(float64(r.Config.Users))
	r.add("pipeline_eps", "Pipeline: `streamworker run`, "+users+" users, start to drained", UnitRate, p.rate(), targetRate)
	r.add("pipeline_steady_eps", "Pipeline after its first consumed record", UnitRate, p.steadyRate(), nil)
	r.add("pipeline_first_s", "Pipeline: worker start to first consumed record", UnitSeconds, p.firstConsumed.Seconds(), nil)
	r.add("pipeline_elapsed_s", "Pipeline: worker start to drained", UnitSeconds, p.elapsed.Seconds(), nil)
	for _, name := range cpuOrder {
		r.add("cpu_"+cpuKey(name), "Pipeline CPU: "+name, UnitCores, p.cpu.Cores[name], nil)
	}
	for _, name := range cpuOrder[:3] {
		r.add("wait_"+cpuKey(name), "Pipeline run-queue wait (runnable, no CPU): "+name, UnitCores, p.cpu.Waiting[name], nil)
	}
	ours := p.perCPUSecond(cpuOrder[:3]...)
	r.add("pipeline_eps_cpu_worker", "Pipeline: events per worker CPU-second", UnitRate, p.perCPUSecond("worker"), nil)
	r.add("pipeline_eps_cpu", "Pipeline: events per CPU-second (worker + redis-server + kfake)", UnitRate, ours, nil)
	r.add("pipeline_eps_projected", fmt.Sprintf("Pipeline: CPU-bound upper bound on %d dedicated cores (events per CPU-second × %d)", runtime.NumCPU(), runtime.NumCPU()),
		UnitRate, ours*float64(runtime.NumCPU()), nil)
	r.add("pipeline_worker_us", "Pipeline: worker CPU per input event (/proc)", UnitMicros, p.cpuPerEvent("worker"), targetWorkerCPU)
	r.add("pipeline_redis_us", "Pipeline: redis-server CPU per input event (INFO cpu)", UnitMicros, p.redisPerEvent(), nil)
	r.addCommands("pipeline, "+users+" users", p)
	if p.workerBatches > 0 {
		r.add("events_per_batch", "Pipeline: input events per partition batch", UnitCount, float64(p.events)/p.workerBatches, nil)
		r.add("redis_per_batch", "Pipeline: Redis round trips per partition batch", UnitCount, p.redisTrips/p.workerBatches, nil)
	}
}

func (r *Report) addAcked(p, a drainResult) {
	r.add("pipeline_acked_eps", "Pipeline with redis.min_replicas_acked=1 (WAIT 1 on a local replica)", UnitRate, a.rate(), nil)
	r.add("ratio_acked", "Pipeline with WAIT / without", UnitRatio, a.rate()/p.rate(), nil)
}

// addRatios adds the pipeline/ceiling ratios of one run.
func (r *Report) addRatios(c, p drainResult) {
	r.add("ratio", "Pipeline / ceiling", UnitRatio, p.rate()/c.rate(), targetRatio)
	r.add("ratio_cpu", "Pipeline / ceiling, per CPU-second", UnitRatio,
		p.perCPUSecond(cpuOrder[:3]...)/c.perCPUSecond("bench (kfake + copy)"), nil)
}

// addRedisRatio adds how much more Redis CPU per event the pipeline took
// than the reference system in one run.
func (r *Report) addRedisRatio(ref, p drainResult) {
	r.add("ratio_redis_cpu", "Redis CPU per event: pipeline / reference", UnitRatio, p.redisPerEvent()/ref.redisPerEvent(), targetRedisCPU)
}

func cpuKey(name string) string {
	k, _, _ := strings.Cut(name, " ")
	return strings.TrimSuffix(k, "-server")
}

func (r *Report) addLatency(l latencyResult) {
	rate := fmtInt(r.Config.LatencyRate)
	r.add("lat_offered", "Latency run: offered rate achieved", UnitRate, l.offered, nil)
	r.add("lat_p50", "Latency at "+rate+"/s from the cause's produce: p50", UnitMs, l.fromProduce.p50, nil)
	r.add("lat_p99", "Latency at "+rate+"/s from the cause's produce: p99", UnitMs, l.fromProduce.p99, targetP99)
	r.add("lat_p999", "Latency at "+rate+"/s from the cause's produce: p99.9", UnitMs, l.fromProduce.p999, nil)
	r.add("lat_max", "Latency at "+rate+"/s from the cause's produce: max", UnitMs, l.fromProduce.max, nil)
	r.add("ready_p50", "Latency at "+rate+"/s from the cause's gap filling: p50", UnitMs, l.fromReady.p50, nil)
	r.add("ready_p99", "Latency at "+rate+"/s from the cause's gap filling: p99", UnitMs, l.fromReady.p99, targetP99)
	r.add("ready_p999", "Latency at "+rate+"/s from the cause's gap filling: p99.9", UnitMs, l.fromReady.p999, nil)
	r.add("hist_p50", "Worker histogram end_to_end_latency_seconds: p50 (interpolated)", UnitMs, l.histP50, nil)
	r.add("hist_p99", "Worker histogram end_to_end_latency_seconds: p99 (interpolated)", UnitMs, l.histP99, nil)
	r.add("lat_samples", "Latency run: aggregate outputs measured", UnitCount, float64(l.fromProduce.n), nil)
	r.add("lat_worker_cpu", "Latency run: worker CPU at "+rate+"/s", UnitCores, l.workerCores, nil)
	r.add("lat_redis_cpu", "Latency run: redis-server CPU at "+rate+"/s", UnitCores, l.redisCores, nil)
	r.add("lat_other_cpu", "Latency run: CPU of other processes on the machine", UnitCores, l.otherCores, nil)
}

func (r *Report) addGrowth(users int, g drainResult) {
	k := "g" + strconv.Itoa(users) + "_"
	name := fmt.Sprintf("%s users (%s events)", fmtInt(float64(users)), fmtInt(float64(g.events)))
	label := name + ": "
	var rss *Target
	if users == targetRSSUser {
		rss = targetRSS1M
	}
	r.add(k+"eps", label+"throughput", UnitRate, g.rate(), nil)
	if users != r.Config.Users || g.events != int64(r.Config.Events) {
		// Not the pipeline run itself, whose commands are listed already.
		r.addCommands(name, g)
	}
	r.add(k+"rss_mb", label+"worker peak RSS", UnitMB, float64(g.peakRSS)/(1<<20), rss)
	r.add(k+"redis_per_1k", label+"Redis round trips", UnitPer1k, g.perThousand(g.redisTrips), nil)
	r.add(k+"redis_us", label+"redis-server CPU per input event (INFO cpu)", UnitMicros, g.redisPerEvent(), nil)
	r.add(k+"worker_us", label+"worker CPU per input event (/proc)", UnitMicros, g.cpuPerEvent("worker"), nil)
	r.add(k+"produce_per_1k", label+"produce requests (broker count)", UnitPer1k, g.perThousand(float64(g.produce.requests)), nil)
	r.add(k+"batches_per_1k", label+"produce partition batches (broker count)", UnitPer1k, g.perThousand(float64(g.produce.batches)), nil)
	r.add(k+"outputs_per_1k", label+"output records", UnitPer1k, g.perThousand(g.outputs), nil)
	if g.kpromHas {
		r.add(k+"kprom_batches_per_1k", label+"kprom produce_batches_total", UnitPer1k, g.perThousand(g.kpromBatches), nil)
	}
}

// format prints v in the style of unit.
func format(unit string, v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	switch unit {
	case UnitRate, UnitMB:
		return fmtInt(v)
	case UnitRatio, UnitCores:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case UnitMs, UnitPer1k, UnitCount:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case UnitSeconds, UnitMicros:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// fmtInt prints v rounded, with thousands separators.
func fmtInt(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// String returns the target as "≥ 120,000", "< 50" or "≤ 1.5".
func (t *Target) String() string {
	op := "<"
	switch {
	case t.AtLeast:
		op = "≥"
	case t.OrEqual:
		op = "≤"
	}
	if t.Bound >= 1000 {
		return op + " " + fmtInt(t.Bound)
	}
	return op + " " + strconv.FormatFloat(t.Bound, 'f', -1, 64)
}

// Table returns the figures as one markdown table: the median of the runs,
// every run's value, and the target with PASS or FAIL.
func (r *Report) Table() string {
	var b strings.Builder
	b.WriteString("| Figure | Unit | Median | Runs | Target |\n|---|---|---:|---|---|\n")
	for _, f := range r.Figures {
		runs := make([]string, len(f.Values))
		for i, v := range f.Values {
			runs[i] = format(f.Unit, v)
		}
		target := ""
		if f.Target != nil {
			verdict := "FAIL"
			if f.Target.Met(f.Median()) {
				verdict = "PASS"
			}
			target = f.Target.String() + " " + verdict
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", f.Name, f.Unit, format(f.Unit, f.Median()), strings.Join(runs, " / "), target)
	}
	return b.String()
}

// Targets returns one line per target: PASS or FAIL, the median, and by how
// much it is missed or met.
func (r *Report) Targets() []string {
	var lines []string
	for _, f := range r.Figures {
		if f.Target == nil {
			continue
		}
		m := f.Median()
		verdict := "FAIL"
		if f.Target.Met(m) {
			verdict = "PASS"
		}
		lines = append(lines, fmt.Sprintf("%s: %s %s %s (target %s; %.0f%% of the bound)",
			verdict, f.Name, format(f.Unit, m), f.Unit, f.Target, 100*m/f.Target.Bound))
	}
	if _, ok := r.Figure("g" + strconv.Itoa(targetRSSUser) + "_rss_mb"); !ok {
		lines = append(lines, "NOT MEASURED: worker peak RSS at 1,000,000 users (target < 400 MB): no growth run at 1M users")
	}
	return lines
}

// Markdown returns the whole report: the machine and configuration, the
// table, the targets, the micro-benchmarks and the profile.
func (r *Report) Markdown() string {
	var b strings.Builder
	c := r.Config
	fmt.Fprintf(&b, "Machine: %d CPUs (GOMAXPROCS %d), %s; load average %s at start, %s at end; took %v.\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), r.LoadBefore, r.LoadAfter, r.Took.Round(time.Second))
	fmt.Fprintf(&b, "Config: %d runs (medians shown); %s events over %s users, %d partitions, 1 kfake broker; "+
		"workload %.0f%% duplicates, %.0f%% out of order, %.1f%% malformed; latency run %v at %s events/s; "+
		"worker kafka.commit_interval %v, everything else default.\n\n",
		c.Runs, fmtInt(float64(c.Events)), fmtInt(float64(c.Users)), c.Partitions,
		duplicates*100, outOfOrder*100, malformed*100, c.LatencyFor, fmtInt(c.LatencyRate), c.CommitInterval)
	if len(c.WorkerEnv) > 0 {
		fmt.Fprintf(&b, "Worker environment added: `%s`.\n\n", strings.Join(c.WorkerEnv, " "))
	}
	if r.Commit != "" {
		fmt.Fprintf(&b, "Commit: %s.\n\n", r.Commit)
	}
	b.WriteString(r.Table())
	b.WriteString("\nTargets:\n\n")
	for _, l := range r.Targets() {
		b.WriteString("- " + l + "\n")
	}
	if t := r.CommandsTable(); t != "" {
		fmt.Fprintf(&b, "\nRedis calls per input event (INFO commandstats, which also counts the commands a script calls; medians of the runs; "+
			"the commands above %v calls per event, and %s whenever called):\n\n%s", minCalls, strings.Join(scriptCalls, ", "), t)
	}
	b.WriteString(r.sizingSection())
	if len(r.Failures) > 0 {
		b.WriteString("\nFailed measurements (their figures are left out of the medians):\n\n")
		for _, f := range r.Failures {
			b.WriteString("- " + strings.ReplaceAll(f, "\n", " ") + "\n")
		}
	}
	if len(r.GoBenchmarks) > 0 {
		b.WriteString("\nGo micro-benchmarks (`go test -run '^$' -bench . -benchmem`, one run each):\n\n")
		b.WriteString("| Package | Benchmark | ns/op | B/op | allocs/op | Other |\n|---|---|---:|---:|---:|---|\n")
		for _, g := range r.GoBenchmarks {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", g.Package, g.Name,
				strconv.FormatFloat(g.NsPerOp, 'f', -1, 64), fmtInt(g.BytesPerOp), fmtInt(g.AllocsPerOp), strings.Join(g.Extra, ", "))
		}
	}
	if p := r.Profile; p != nil {
		fmt.Fprintf(&b, "\nIn-process pipeline run (worker.New with the options internal/app builds from config.Default; kfake and the worker in one process): "+
			"%s events in %.2f s (%s events/s); %.1f allocations and %s bytes per event in the whole process, "+
			"%.1f allocations per event outside kfake; %d GC cycles; heap in use at the drain %s MB (kfake's log included); "+
			"kfake's share of CPU samples %.0f%%. The worker's client sent %d fetch requests, %d of which came back empty "+
			"after %.2f s of long polling in all (longest %.2f s).\n",
			fmtInt(float64(p.Events)), p.Elapsed.Seconds(), fmtInt(float64(p.Events)/p.Elapsed.Seconds()),
			p.MallocsPerEvent, fmtInt(p.BytesPerEvent), p.WorkerMallocsPerEvent, p.GCCycles, fmtInt(float64(p.HeapInuse)/(1<<20)),
			p.KfakeShare*100, p.Fetches, p.EmptyFetches, p.EmptyFetchWait.Seconds(), p.LongestEmptyFetch.Seconds())
		fmt.Fprintf(&b, "\nCPU profile, flat:\n\n```text\n%s\n```\n", p.CPUTop)
		fmt.Fprintf(&b, "\nCPU profile, cumulative, samples with a streamworker frame:\n\n```text\n%s\n```\n", p.CPUCumTop)
		fmt.Fprintf(&b, "\nAllocations (objects) during the run, kfake's excluded:\n\n```text\n%s\n```\n", p.AllocTop)
		fmt.Fprintf(&b, "\nHeap in use as of the last GC before the drain, kfake's excluded:\n\n```text\n%s\n```\n", p.HeapTop)
	}
	return b.String()
}
