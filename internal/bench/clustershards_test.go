package bench

import (
	"errors"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClusterShardsQuick runs the Redis Cluster measurement on a small
// workload (with the other measurements of a run as short as they go) and
// checks that every master got work and that the figures and the sizing
// are in the report.
func TestClusterShardsQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the worker, kfake and a Redis Cluster; skipped with -short")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on PATH")
	}
	const shards = 3
	cfg := Quick()
	cfg.Events = 20_000
	cfg.Users = 2_000
	cfg.Partitions = 3
	cfg.LatencyRate = 1_000
	cfg.LatencyFor = time.Second
	cfg.GrowthUsers = []int{} // the main workload only
	cfg.ClusterShards = shards
	rep := runAll(t, cfg, 3*time.Minute)
	med := func(key string) float64 {
		t.Helper()
		f, ok := rep.Figure(key)
		if !ok {
			t.Errorf("no figure %s", key)
			return math.NaN()
		}
		m := f.Median()
		if !(m > 0) || math.IsInf(m, 0) {
			t.Errorf("%s = %v, want a positive number", key, m)
		}
		return m
	}
	for _, k := range []string{"eps", "worker_us", "worker_eps_cpu", "redis_us", "evalsha", "commands",
		"vs_single_eps", "vs_single_redis", "vs_single_worker"} {
		med("cluster_" + k)
	}
	var sum float64
	for i := 1; i <= shards; i++ {
		k := "cluster_shard" + strconv.Itoa(i) + "_"
		sum += med(k + "redis_us")
		// Every master got commit scripts: the users' slots are spread
		// over all of them.
		med(k + "evalsha")
	}
	if _, ok := rep.Figure("cluster_shard" + strconv.Itoa(shards+1) + "_redis_us"); ok {
		t.Errorf("a figure for master %d of %d", shards+1, shards)
	}
	if total := med("cluster_redis_us"); math.Abs(sum-total) > 1e-6*total {
		t.Errorf("the masters' Redis CPU per event add up to %v, the total is %v", sum, total)
	}
	if s := med("cluster_spread"); s < 1 {
		t.Errorf("spread %v below 1", s)
	}
	if k, s := med(keyClusterSkew), med("cluster_spread"); k < 1 || k > s {
		t.Errorf("busiest/mean %v, want between 1 and busiest/least %v", k, s)
	}
	// A commit script call carries the users of one hash slot on a
	// Cluster, up to 256 users on one Redis: more calls per event.
	if c, one := med("cluster_evalsha"), rep.commandsMedian(t, "pipeline, 2,000 users", "evalsha"); !(c > one) {
		t.Errorf("EVALSHA per event: %v on the Cluster, %v on one Redis; want more on the Cluster", c, one)
	}
	if one := rep.commandsMedian(t, "pipeline on a Redis Cluster of 3 masters (all masters)", "evalsha"); math.Abs(one-med("cluster_evalsha")) > 1e-12 {
		t.Errorf("the commands table has %v EVALSHA per event on the Cluster, the figure %v", one, med("cluster_evalsha"))
	}
	md := rep.Markdown()
	for _, want := range []string{"Sizing on a Redis Cluster", "`swbench --sizing ", "| 10,000,000 |", "Redis Cluster of 3 masters: master 3 (slots 10922–16383) Redis CPU"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestSizing(t *testing.T) {
	s := DefaultSizing(6, 10, 1.05)
	tests := []struct {
		rate float64
		want SizingRow
	}{
		// Redis 1e5 × 10 µs = 1 core; × 1.05 / 0.7 = 1.5 → 2 masters.
		// Worker 0.6 cores / 0.7 = 0.857 → 1 core → 1 process of 4.
		{100_000, SizingRow{Rate: 100_000, RedisCores: 1, Masters: 2, WorkerCPU: 0.6, WorkerCores: 1, Workers: 1, Partitions: 4}},
		// 10 × 1.05 / 0.7 = 15 exactly; 6 / 0.7 = 8.57 → 9 cores, 3 processes.
		{1_000_000, SizingRow{Rate: 1_000_000, RedisCores: 10, Masters: 15, WorkerCPU: 6, WorkerCores: 9, Workers: 3, Partitions: 12}},
		{10_000_000, SizingRow{Rate: 10_000_000, RedisCores: 100, Masters: 150, WorkerCPU: 60, WorkerCores: 86, Workers: 22, Partitions: 88}},
		{1, SizingRow{Rate: 1, RedisCores: 1e-5, Masters: 1, WorkerCPU: 6e-6, WorkerCores: 1, Workers: 1, Partitions: 4}},
	}
	for _, tt := range tests {
		got := s.Row(tt.rate)
		if math.Abs(got.RedisCores-tt.want.RedisCores) > 1e-9 || math.Abs(got.WorkerCPU-tt.want.WorkerCPU) > 1e-9 {
			t.Errorf("rate %v: CPU %v Redis, %v worker; want %v, %v", tt.rate, got.RedisCores, got.WorkerCPU, tt.want.RedisCores, tt.want.WorkerCPU)
		}
		got.RedisCores, got.WorkerCPU = tt.want.RedisCores, tt.want.WorkerCPU
		if got != tt.want {
			t.Errorf("rate %v: got %+v, want %+v", tt.rate, got, tt.want)
		}
	}
	md := s.Markdown([]float64{1_000_000})
	for _, want := range []string{"| 1,000,000 | 1,000,000 × 10 µs = 10.00 | 10.00 × 1.05 / 0.7 = 15.00 → **15** |",
		"| 1,000,000 × 6 µs = 6.00 | 6.00 / 0.7 = 8.57 → **9** | ⌈9 / 4⌉ = **3** | 3 × 4 = **12** |"} {
		if !strings.Contains(md, want) {
			t.Errorf("sizing table lacks %q:\n%s", want, md)
		}
	}
	if p, err := ParseSizing("6, 10,1.05"); err != nil || p != s {
		t.Errorf("ParseSizing = %+v, %v; want %+v", p, err, s)
	}
	for _, bad := range []string{"", "6,10", "6,10,x", "6,-1,1", "6,10,1,4"} {
		if _, err := ParseSizing(bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("ParseSizing(%q) = %v, want ErrInvalidConfig", bad, err)
		}
	}
}

// commandsMedian returns the median calls per input event of cmd in the
// Redis commands of measurement.
func (r *Report) commandsMedian(t *testing.T, measurement, cmd string) float64 {
	t.Helper()
	for _, c := range r.RedisCommands {
		if c.Measurement == measurement {
			return c.Median(cmd)
		}
	}
	t.Errorf("no Redis commands of %q", measurement)
	return math.NaN()
}
