package bench

import (
	"context"
	"errors"
	"maps"
	"math"
	"os/exec"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/loadgen"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestQuickRun runs every measurement once on a tiny workload and checks
// that the report has every row with sane values.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the worker, kfake and redis-server; skipped with -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH")
	}
	cfg := Quick()
	cfg.Events = 20_000
	cfg.Users = 1_000
	cfg.Partitions = 3
	cfg.LatencyRate = 2_000
	cfg.LatencyFor = 2 * time.Second
	cfg.GrowthUsers = []int{5_000}
	cfg.GrowthEvents = 20_000
	cfg.ReplicaAcks = true
	rep := runAll(t, cfg, 2*time.Minute)

	positive := []string{
		"ceiling_eps", "ceiling_eps_cpu", "pipeline_eps", "ratio", "pipeline_steady_eps", "pipeline_first_s",
		"pipeline_elapsed_s", "cpu_worker", "pipeline_eps_cpu_worker", "pipeline_eps_cpu", "ratio_cpu",
		"pipeline_eps_projected", "events_per_batch", "redis_per_batch", "pipeline_acked_eps", "ratio_acked",
		"lat_offered", "lat_p99", "lat_p999", "lat_max", "ready_p99", "hist_p50", "hist_p99", "lat_samples", "lat_worker_cpu",
		"g1000_eps", "g1000_rss_mb", "g1000_redis_per_1k", "g1000_produce_per_1k", "g1000_batches_per_1k", "g1000_outputs_per_1k",
		"g5000_eps", "g5000_rss_mb", "g5000_redis_per_1k", "g5000_produce_per_1k", "g5000_batches_per_1k", "g5000_outputs_per_1k",
		"ceiling_cpu_us", "ref_eps", "ref_ratio", "ref_cpu", "ref_cpu_us", "ref_redis_us", "ref_forwarded_per_1k",
		"pipeline_worker_us", "pipeline_redis_us", "ratio_redis_cpu",
		"g1000_redis_us", "g1000_worker_us", "g5000_redis_us", "g5000_worker_us",
	}
	for _, key := range positive {
		f, ok := rep.Figure(key)
		if !ok {
			t.Errorf("no figure %s", key)
			continue
		}
		if len(f.Values) != 1 {
			t.Errorf("%s: %d values, want 1 (one run)", key, len(f.Values))
		}
		if m := f.Median(); !(m > 0) || math.IsInf(m, 0) {
			t.Errorf("%s = %v, want a positive number", key, m)
		}
	}
	med := func(key string) float64 {
		f, _ := rep.Figure(key)
		return f.Median()
	}
	if p50, p99, p999, mx := med("lat_p50"), med("lat_p99"), med("lat_p999"), med("lat_max"); !(p50 >= 0 && p50 <= p99 && p99 <= p999 && p999 <= mx) {
		t.Errorf("latency percentiles out of order: p50 %v, p99 %v, p99.9 %v, max %v", p50, p99, p999, mx)
	}
	if r, p, c := med("ratio"), med("pipeline_eps"), med("ceiling_eps"); math.Abs(r-p/c) > 1e-9 {
		t.Errorf("ratio %v, want pipeline/ceiling = %v", r, p/c)
	}
	if r, ref, c := med("ref_ratio"), med("ref_eps"), med("ceiling_eps"); math.Abs(r-ref/c) > 1e-9 {
		t.Errorf("ref_ratio %v, want reference/ceiling = %v", r, ref/c)
	}
	if r, p, ref := med("ratio_redis_cpu"), med("pipeline_redis_us"), med("ref_redis_us"); math.Abs(r-p/ref) > 1e-9 {
		t.Errorf("ratio_redis_cpu %v, want pipeline/reference Redis µs per event = %v", r, p/ref)
	}
	// The reference forwards each valid event once: the duplicates find
	// their mark set, and the malformed records go to the dead-letter
	// topic.
	kinds := workloadKinds(t, cfg.Users, cfg.Events)
	forwarded := med("ref_forwarded_per_1k") * float64(cfg.Events) / 1000
	if forwarded >= float64(cfg.Events) || math.Abs(forwarded-float64(kinds[loadgen.Valid])) > 1e-6 {
		t.Errorf("reference forwarded %v of %d records, want the %d valid events (%d duplicates, %d malformed)",
			forwarded, cfg.Events, kinds[loadgen.Valid], kinds[loadgen.Duplicate], kinds[loadgen.Malformed])
	}
	commands := map[string]RedisCommands{}
	for _, c := range rep.RedisCommands {
		commands[c.Measurement] = c
	}
	if len(commands) != 3 {
		t.Errorf("Redis commands of %d measurements, want 3 (reference, pipeline, 5,000 users): %+v", len(commands), rep.RedisCommands)
	}
	// Every record the decoder accepts costs the reference one SET.
	if set, want := commands["reference"].Median("set"), float64(kinds[loadgen.Valid]+kinds[loadgen.Duplicate])/float64(cfg.Events); math.Abs(set-want) > 1e-9 {
		t.Errorf("reference: %v SET per event, want %v", set, want)
	}
	if n := commands["reference"].Median("evalsha"); n != 0 {
		t.Errorf("reference: %v EVALSHA per event, want none", n)
	}
	if n := commands["pipeline, 1,000 users"].Median("evalsha"); !(n > 0) {
		t.Errorf("pipeline: %v EVALSHA per event, want some (commands: %+v)", n, rep.RedisCommands)
	}
	if n := commands["5,000 users (20,000 events)"].Median("evalsha"); !(n > 0) {
		t.Errorf("growth at 5,000 users: %v EVALSHA per event, want some (commands: %+v)", n, rep.RedisCommands)
	}
	if n := med("lat_samples"); n > float64(cfg.LatencyRate*cfg.LatencyFor.Seconds()) {
		t.Errorf("%v aggregate outputs measured for %v input events", n, cfg.LatencyRate*cfg.LatencyFor.Seconds())
	}
	if rss := med("g5000_rss_mb"); rss > 4096 {
		t.Errorf("worker peak RSS %v MB", rss)
	}

	table := rep.Table()
	if got, want := strings.Count(table, "\n"), len(rep.Figures)+2; got != want {
		t.Errorf("table has %d lines, want %d (header, rule, one per figure)", got, want)
	}
	for _, f := range rep.Figures {
		if !strings.Contains(table, "| "+f.Name+" |") {
			t.Errorf("table has no row %q", f.Name)
		}
	}
	md := rep.Markdown()
	for _, want := range []string{"Pipeline / ceiling", "PASS", "Targets:", "NOT MEASURED: worker peak RSS at 1,000,000 users",
		"Redis CPU per event: pipeline / reference", "| Measurement | set |", "| reference | 0.99"} {
		if !strings.Contains(md, want) && !(want == "PASS" && strings.Contains(md, "FAIL")) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// workloadKinds counts the records of each kind in the workload of users
// and events.
func workloadKinds(t *testing.T, users, events int) map[loadgen.Kind]int {
	t.Helper()
	g, err := loadgen.New(workload(users, events))
	if err != nil {
		t.Fatal(err)
	}
	n := map[loadgen.Kind]int{}
	for r, ok := g.Next(); ok; r, ok = g.Next() {
		n[r.Kind]++
	}
	return n
}

// runAll runs cfg within timeout with a worker built beforehand (a cold
// build cache can take longer than the whole measurement) and fails t
// unless every measurement ran.
func runAll(t *testing.T, cfg Config, timeout time.Duration) *Report {
	t.Helper()
	cfg.WorkerBinary = testenv.BuildBinary(t, "github.com/streamworker/streamworker/cmd/streamworker")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures) > 0 {
		t.Fatalf("failed measurements: %q", rep.Failures)
	}
	return rep
}

func TestParseRedisUse(t *testing.T) {
	cpu := "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:0.250001\r\nused_cpu_sys_children:9.000000\r\nused_cpu_user_children:9.000000\r\n" +
		"used_cpu_sys_main_thread:1.400000\r\nused_cpu_user_main_thread:0.200000\r\n"
	stats := "# Commandstats\r\ncmdstat_set:calls=10,usec=30,usec_per_call=3.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_EVALSHA:calls=2,usec=90,usec_per_call=45.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_script|load:calls=1,usec=5,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=7,usec=70,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n"
	before, err := parseRedisUse(cpu, stats)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1750001 * time.Microsecond; before.cpu != want {
		t.Errorf("cpu %v, want %v (used_cpu_sys + used_cpu_user)", before.cpu, want)
	}
	if want := map[string]int64{"set": 10, "evalsha": 2, "script|load": 1}; !maps.Equal(before.calls, want) {
		t.Errorf("calls %v, want %v (INFO left out)", before.calls, want)
	}
	after, err := parseRedisUse(strings.ReplaceAll(cpu, "used_cpu_user:0.250001", "used_cpu_user:1.250001"),
		strings.ReplaceAll(stats, "cmdstat_set:calls=10,", "cmdstat_set:calls=25,"))
	if err != nil {
		t.Fatal(err)
	}
	d := after.since(before)
	if d.cpu != time.Second || !maps.Equal(d.calls, map[string]int64{"set": 15}) {
		t.Errorf("delta %v %v, want 1s and 15 SET", d.cpu, d.calls)
	}
	for _, bad := range []struct{ cpu, stats string }{
		{"used_cpu_sys:1.0\r\n", stats},
		{cpu, "cmdstat_set:usec=3\r\n"},
		{"used_cpu_sys:x\r\nused_cpu_user:1\r\n", stats},
	} {
		if _, err := parseRedisUse(bad.cpu, bad.stats); err == nil {
			t.Errorf("parseRedisUse(%q, %q): no error", bad.cpu, bad.stats)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" for none
	}{
		{"default", func(*Config) {}, ""},
		{"quick", func(c *Config) { *c = Quick() }, ""},
		{"no runs", func(c *Config) { c.Runs = -1 }, "runs -1"},
		{"no latency events", func(c *Config) { c.LatencyRate = 0.1; c.LatencyFor = time.Second }, "latency run"},
		{"too many users", func(c *Config) { c.GrowthUsers = []int{2_000_000} }, "users 2000000"},
		{"no partitions", func(c *Config) { c.Partitions = -3 }, "partitions -3"},
		{"too many cluster shards", func(c *Config) { c.ClusterShards = 17 }, "cluster shards 17"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.edit(&c)
			err := c.withDefaults().validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			case tt.want != "" && !errors.Is(err, ErrInvalidConfig):
				t.Fatalf("error %v does not wrap ErrInvalidConfig", err)
			}
		})
	}
}

func TestExactPercentiles(t *testing.T) {
	tests := []struct {
		name    string
		samples []float64
		want    percentiles
	}{
		{"one", []float64{7}, percentiles{n: 1, p50: 7, p99: 7, p999: 7, max: 7}},
		{"1..100 reversed", seq(100, 1), percentiles{n: 100, p50: 50, p99: 99, p999: 100, max: 100}},
		{"1..1000", seq(1, 1000), percentiles{n: 1000, p50: 500, p99: 990, p999: 999, max: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exactPercentiles(tt.samples); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	if got := exactPercentiles(nil); !math.IsNaN(got.p99) || got.n != 0 {
		t.Fatalf("empty sample: got %+v, want NaN percentiles", got)
	}
}

func seq(from, to int) []float64 {
	var s []float64
	step := 1
	if to < from {
		step = -1
	}
	for i := from; ; i += step {
		s = append(s, float64(i))
		if i == to {
			return s
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func TestHistogramQuantile(t *testing.T) {
	h := &dto.MetricFamily{
		Name: ptr("lat"),
		Type: dto.MetricType_HISTOGRAM.Enum(),
		Metric: []*dto.Metric{{Histogram: &dto.Histogram{
			SampleCount: ptr[uint64](100),
			Bucket: []*dto.Bucket{
				{UpperBound: ptr[float64](0.01), CumulativeCount: ptr[uint64](50)},
				{UpperBound: ptr[float64](0.1), CumulativeCount: ptr[uint64](90)},
				{UpperBound: ptr[float64](1), CumulativeCount: ptr[uint64](100)},
			},
		}}},
	}
	f := families{"lat": h}
	tests := []struct{ q, want float64 }{
		{0.25, 0.005},
		{0.5, 0.01},
		{0.7, 0.055},
		{0.95, 0.55},
	}
	for _, tt := range tests {
		if got := f.histogramQuantile("lat", tt.q); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("quantile %v = %v, want %v", tt.q, got, tt.want)
		}
	}
	if !math.IsNaN(f.histogramQuantile("absent", 0.5)) {
		t.Error("quantile of an absent histogram is not NaN")
	}
}

func TestFamiliesSum(t *testing.T) {
	lp := func(k, v string) *dto.LabelPair { return &dto.LabelPair{Name: ptr(k), Value: ptr(v)} }
	f := families{"redis": {
		Name: ptr("redis"),
		Type: dto.MetricType_HISTOGRAM.Enum(),
		Metric: []*dto.Metric{
			{Label: []*dto.LabelPair{lp("op", "fetch")}, Histogram: &dto.Histogram{SampleCount: ptr[uint64](3)}},
			{Label: []*dto.LabelPair{lp("op", "commit")}, Histogram: &dto.Histogram{SampleCount: ptr[uint64](4)}},
			{Label: []*dto.LabelPair{lp("op", "ping")}, Histogram: &dto.Histogram{SampleCount: ptr[uint64](50)}},
		},
	}}
	tests := []struct {
		want   map[string]string
		expect float64
	}{
		{nil, 57},
		{map[string]string{"op": "!ping"}, 7},
		{map[string]string{"op": "commit"}, 4},
		{map[string]string{"op": "none"}, 0},
	}
	for _, tt := range tests {
		if got := f.value("redis", tt.want); got != tt.expect {
			t.Errorf("sum with %v = %v, want %v", tt.want, got, tt.expect)
		}
	}
	if _, ok := f.sum("absent", nil); ok {
		t.Error("an absent family is reported present")
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
pkg: github.com/streamworker/streamworker/processors
BenchmarkApply-2        	 1000000	      1043 ns/op	       430.0 buckets	         0 fires/op	      24 B/op	       1 allocs/op
BenchmarkApplyBurst-2   	  500000	      2100.5 ns/op	     120 B/op	       3 allocs/op
PASS
pkg: github.com/streamworker/streamworker/topics
BenchmarkDecode/json-2  	  300000	      3950 ns/op	     512 B/op	       9 allocs/op
ok  	github.com/streamworker/streamworker/topics	2.1s
`
	got := parseGoBench(out)
	want := []GoBenchmark{
		{Package: "processors", Name: "BenchmarkApply", NsPerOp: 1043, BytesPerOp: 24, AllocsPerOp: 1, Extra: []string{"430.0 buckets", "0 fires/op"}},
		{Package: "processors", Name: "BenchmarkApplyBurst", NsPerOp: 2100.5, BytesPerOp: 120, AllocsPerOp: 3},
		{Package: "topics", Name: "BenchmarkDecode/json", NsPerOp: 3950, BytesPerOp: 512, AllocsPerOp: 9},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d benchmarks, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Package != w.Package || g.Name != w.Name || g.NsPerOp != w.NsPerOp || g.BytesPerOp != w.BytesPerOp ||
			g.AllocsPerOp != w.AllocsPerOp || strings.Join(g.Extra, ",") != strings.Join(w.Extra, ",") {
			t.Errorf("benchmark %d: got %+v, want %+v", i, g, w)
		}
	}
}

func TestPprofParsing(t *testing.T) {
	top := `Type: alloc_objects
Active filters:
   ignore=kfake
Showing nodes accounting for 15176653, 94.78% of 16013173 total
Dropped 139 nodes (cum <= 80065)
      flat  flat%   sum%        cum   cum%
   2867243 17.91% 17.91%    2867243 17.91%  github.com/streamworker/streamworker/topics.stringValue
`
	if n, ok := pprofTotal(top); !ok || n != 16013173 {
		t.Errorf("pprofTotal = %v, %v; want 16013173", n, ok)
	}
	cpu := `Type: cpu
Duration: 11.60s, Total samples = 12.08s (104.14%)
Active filters:
   focus=kfake
Showing nodes accounting for 0s, 0% of 12.08s total
      flat  flat%   sum%        cum   cum%
         0     0%     0%      0.72s  5.96%  runtime.goexit
`
	if n, ok := pprofTotal(cpu); !ok || n != 12.08 {
		t.Errorf("pprofTotal = %v, %v; want 12.08", n, ok)
	}
	if s := topCumShare(cpu); math.Abs(s-0.0596) > 1e-9 {
		t.Errorf("topCumShare = %v, want 0.0596", s)
	}
	if n, ok := pprofTotal("Showing nodes accounting for 1.2M, 50% of 2.5M total"); !ok || n != 2.5e6 {
		t.Errorf("pprofTotal with a suffix = %v, %v; want 2.5e6", n, ok)
	}
}

func TestFormat(t *testing.T) {
	tests := []struct {
		unit string
		v    float64
		want string
	}{
		{UnitRate, 1234567.4, "1,234,567"},
		{UnitRate, 999, "999"},
		{UnitRate, -1000, "-1,000"},
		{UnitRatio, 0.3456, "0.35"},
		{UnitMs, 12.34, "12.3"},
		{UnitMB, 399.6, "400"},
		{UnitMs, math.NaN(), "n/a"},
	}
	for _, tt := range tests {
		if got := format(tt.unit, tt.v); got != tt.want {
			t.Errorf("format(%s, %v) = %q, want %q", tt.unit, tt.v, got, tt.want)
		}
	}
}

func TestTargets(t *testing.T) {
	r := newReport(Default())
	r.add("pipeline_eps", "Pipeline", UnitRate, 100_000, targetRate)
	r.add("pipeline_eps", "Pipeline", UnitRate, 130_000, targetRate)
	r.add("pipeline_eps", "Pipeline", UnitRate, 125_000, targetRate)
	r.add("lat_p99", "p99", UnitMs, 60, targetP99)
	r.add("ratio_redis_cpu", "Redis ratio", UnitRatio, 1.5, targetRedisCPU)
	r.add("pipeline_worker_us", "Worker CPU", UnitMicros, 5.01, targetWorkerCPU)
	lines := r.Targets()
	if len(lines) != 5 {
		t.Fatalf("got %d target lines, want 5: %q", len(lines), lines)
	}
	if !strings.HasPrefix(lines[2], "PASS: Redis ratio 1.50 ratio (target ≤ 1.5;") {
		t.Errorf("line %q: want PASS at the bound of ≤ 1.5", lines[2])
	}
	if !strings.HasPrefix(lines[3], "FAIL: Worker CPU 5.01 µs per event (target ≤ 5;") {
		t.Errorf("line %q: want FAIL above ≤ 5", lines[3])
	}
	lines = append(lines[:2], lines[4:]...)
	if !strings.HasPrefix(lines[0], "PASS: Pipeline 125,000") {
		t.Errorf("line %q: want PASS on the median 125,000", lines[0])
	}
	if !strings.HasPrefix(lines[1], "FAIL: p99 60.0") {
		t.Errorf("line %q: want FAIL at 60 ms", lines[1])
	}
	if !strings.HasPrefix(lines[2], "NOT MEASURED") {
		t.Errorf("line %q: want the 1M-user RSS reported as not measured", lines[2])
	}
}

func ptr[T any](v T) *T { return &v }
