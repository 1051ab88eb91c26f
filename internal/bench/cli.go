package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Main runs the benchmark command line (cmd/swbench) with args and returns
// the exit code: 0 when every measurement ran, 1 when one failed, 2 on a
// usage error.
func Main(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("swbench", flag.ContinueOnError)
	d := Default()
	quick := fs.Bool("quick", false, "short smoke run (one run, 100k events, 5 s of latency, 1k and 100k users; under a minute)")
	out := fs.String("out", "", "also write the markdown report to this file")
	runs := fs.Int("runs", d.Runs, "runs of each measurement; figures are medians")
	events := fs.Int("events", d.Events, "pre-produced input records of the throughput runs")
	users := fs.Int("users", d.Users, "distinct users of the throughput and latency runs")
	partitions := fs.Int("partitions", d.Partitions, "partitions of every topic")
	rate := fs.Float64("latency-rate", d.LatencyRate, "offered rate of the latency run, events/s")
	latFor := fs.Duration("latency-for", d.LatencyFor, "duration of the latency run")
	growth := fs.String("growth-users", joinInts(d.GrowthUsers), "user counts of the cost-growth runs, comma-separated")
	growthEvents := fs.Int("growth-events", d.GrowthEvents, "input records of each cost-growth run (at least one per user)")
	commit := fs.Duration("commit-interval", d.CommitInterval, "the worker's kafka.commit_interval")
	cpuprofile := fs.String("cpuprofile", "", "also run the pipeline in-process under the CPU profiler, write the profile here, and report its hot spots and allocations per event")
	quiet := fs.Duration("quiet-wait", d.QuietWait, "before each measurement, wait up to this long for other processes to go quiet (0: do not wait; off with --quick unless set)")
	var workerEnv multiFlag
	fs.Var(&workerEnv, "worker-env", "extra KEY=VALUE environment of the worker children, e.g. SW_STATE_CACHE_SIZE=50000 or GOMEMLIMIT=300MiB (repeatable)")
	profiles := fs.String("worker-profiles", "", "write CPU (first --profile-for) and heap profiles of every pipeline run's worker into this directory")
	profileFor := fs.Duration("profile-for", 5*time.Second, "duration of the worker CPU profiles")
	acks := fs.Bool("replica-acks", d.ReplicaAcks, "also run the pipeline with redis.min_replicas_acked=1 against a replica (off with --quick unless set)")
	shards := fs.Int("cluster-shards", d.ClusterShards, "also run the pipeline on a Redis Cluster of this many masters (no replicas), with each master's INFO cpu and commandstats, and print the sizing they imply (0: off)")
	sizing := fs.String("sizing", "", "print the sizing table of WORKER_US,REDIS_US,SKEW (worker and Redis CPU per event and busiest master / mean, as a --cluster-shards run reports them) and exit")
	gobench := fs.Bool("gobench", d.GoBench, "run the Go micro-benchmarks of the hot path (off with --quick unless set)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *sizing != "" {
		s, err := ParseSizing(*sizing)
		if err != nil {
			fmt.Fprintln(os.Stderr, "swbench: --sizing:", err)
			return 2
		}
		fmt.Print(s.Markdown(SizingRates))
		return 0
	}

	cfg := d
	if *quick {
		cfg = Quick()
	}
	var bad error
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "runs":
			cfg.Runs = *runs
		case "events":
			cfg.Events = *events
		case "users":
			cfg.Users = *users
		case "partitions":
			cfg.Partitions = *partitions
		case "latency-rate":
			cfg.LatencyRate = *rate
		case "latency-for":
			cfg.LatencyFor = *latFor
		case "growth-users":
			cfg.GrowthUsers, bad = parseInts(*growth)
		case "growth-events":
			cfg.GrowthEvents = *growthEvents
		case "commit-interval":
			cfg.CommitInterval = *commit
		case "gobench":
			cfg.GoBench = *gobench
		case "replica-acks":
			cfg.ReplicaAcks = *acks
		case "quiet-wait":
			cfg.QuietWait = *quiet
		}
	})
	if bad != nil {
		fmt.Fprintln(os.Stderr, "swbench: --growth-users:", bad)
		return 2
	}
	cfg.CPUProfile = *cpuprofile
	cfg.ClusterShards = *shards
	cfg.WorkerProfiles, cfg.ProfileFor = *profiles, *profileFor
	for _, kv := range workerEnv {
		if !strings.Contains(kv, "=") {
			fmt.Fprintf(os.Stderr, "swbench: --worker-env %q: want KEY=VALUE\n", kv)
			return 2
		}
	}
	cfg.WorkerEnv = workerEnv
	cfg.Progress = os.Stderr

	rep, err := Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "swbench:", err)
		return 1
	}
	md := rep.Markdown()
	fmt.Print(md)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "swbench:", err)
			return 1
		}
	}
	if len(rep.Failures) > 0 {
		fmt.Fprintf(os.Stderr, "swbench: %d measurements failed\n", len(rep.Failures))
		return 1
	}
	return 0
}

func parseInts(s string) ([]int, error) {
	ns := []int{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil {
			return nil, err
		}
		ns = append(ns, n)
	}
	return ns, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// multiFlag collects the values of a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string { return strings.Join(*m, " ") }

func (m *multiFlag) Set(v string) error {
	*m = append(*m, v)
	return nil
}
