package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamworker/streamworker/config"
	"github.com/streamworker/streamworker/internal/app"
	"github.com/streamworker/streamworker/worker"
)

// Profile is the in-process pipeline run under the CPU profiler.
type Profile struct {
	Events  int64
	Elapsed time.Duration
	// MallocsPerEvent and BytesPerEvent are heap allocations per input
	// event over the run in the whole process (the worker, its Kafka and
	// Redis clients, and kfake); WorkerMallocsPerEvent leaves out the
	// allocations whose stack holds a kfake frame.
	MallocsPerEvent       float64
	BytesPerEvent         float64
	WorkerMallocsPerEvent float64
	GCCycles              uint32
	// HeapInuse is the process's heap in use at the drain (kfake's stored
	// log included).
	HeapInuse int64
	// Fetches counts the fetch requests of the worker's client during
	// the run; EmptyFetches those that came back without records, which
	// spent EmptyFetchWait in all and at most LongestEmptyFetch waiting
	// at the broker.
	Fetches, EmptyFetches             int
	EmptyFetchWait, LongestEmptyFetch time.Duration
	// KfakeShare is the share of CPU samples with a kfake frame.
	KfakeShare float64
	CPUTop     string // go tool pprof -top
	CPUCumTop  string // go tool pprof -top -cum of the streamworker frames
	AllocTop   string // go tool pprof -top of alloc_objects, kfake ignored
	HeapTop    string // go tool pprof -top of inuse_space as of the last GC before the drain, kfake ignored
}

// inProcess runs the pipeline in this process (worker.New with the options
// internal/app builds from config.Default) over the main workload, under the
// CPU profiler, and measures allocations per event.
func (b *bencher) inProcess(ctx context.Context, cpuFile string) (Profile, error) {
	c, err := newCluster(ctx, b.cfg.Partitions)
	if err != nil {
		return Profile{}, err
	}
	defer c.close()
	if err := b.redis.flush(ctx); err != nil {
		return Profile{}, err
	}
	ends, err := c.preProduce(ctx, workload(b.cfg.Users, b.cfg.Events))
	if err != nil {
		return Profile{}, err
	}
	group := b.group("inprocess")
	conf := config.Default()
	conf.Kafka.Brokers = c.seeds
	conf.Kafka.Group = group
	conf.Kafka.CommitInterval = b.cfg.CommitInterval
	conf.Redis.Addrs = []string{b.redis.addr}
	opts, err := app.WorkerOptions(conf)
	if err != nil {
		return Profile{}, err
	}
	rc, err := app.RedisClient(conf.Redis)
	if err != nil {
		return Profile{}, err
	}
	defer rc.Close()
	opts.Redis = rc
	opts.Registerer = prometheus.NewRegistry()
	// The child logs JSON at info; keep the formatting cost, drop the bytes.
	opts.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	fetches := &fetchStats{}
	opts.Kafka = append(opts.Kafka, kgo.WithHooks(fetches))
	w, err := worker.New(opts)
	if err != nil {
		return Profile{}, err
	}

	heapBase := filepath.Join(b.dir, "allocs-base.pb.gz")
	heapEnd := filepath.Join(b.dir, "allocs-end.pb.gz")
	runtime.GC()
	if err := writeProfile("allocs", heapBase); err != nil {
		return Profile{}, err
	}
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	f, err := os.Create(cpuFile)
	if err != nil {
		return Profile{}, err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return Profile{}, err
	}
	start := time.Now()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()
	end, err := c.waitDrained(ctx, group, ends, drainTimeout, nil)
	pprof.StopCPUProfile()
	nFetch, nEmpty, emptyWait, longest := fetches.stop()
	runtime.ReadMemStats(&ms1)
	perr := writeProfile("allocs", heapEnd)
	cancel()
	if rerr := <-done; err == nil && rerr != nil {
		err = rerr
	}
	if err := errors.Join(err, perr, f.Close()); err != nil {
		return Profile{}, err
	}

	r := Profile{
		Events:            total(ends),
		Elapsed:           end.Sub(start),
		GCCycles:          ms1.NumGC - ms0.NumGC,
		HeapInuse:         int64(ms1.HeapInuse),
		Fetches:           nFetch,
		EmptyFetches:      nEmpty,
		EmptyFetchWait:    emptyWait,
		LongestEmptyFetch: longest,
	}
	r.MallocsPerEvent = float64(ms1.Mallocs-ms0.Mallocs) / float64(r.Events)
	r.BytesPerEvent = float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(r.Events)
	if r.CPUTop, err = goPprof(b.root, "-top", "-nodecount=25", cpuFile); err != nil {
		return r, err
	}
	if r.CPUCumTop, err = goPprof(b.root, "-top", "-cum", "-nodecount=25", "-focus=streamworker/streamworker", cpuFile); err != nil {
		return r, err
	}
	if kf, err := goPprof(b.root, "-top", "-cum", "-nodecount=1", "-focus=kfake", cpuFile); err == nil {
		r.KfakeShare = topCumShare(kf)
	}
	if r.AllocTop, err = goPprof(b.root, "-sample_index=alloc_objects", "-top", "-nodecount=20", "-ignore=kfake", "-base", heapBase, heapEnd); err != nil {
		return r, err
	}
	if r.HeapTop, err = goPprof(b.root, "-sample_index=inuse_space", "-top", "-nodecount=15", "-ignore=kfake", heapEnd); err != nil {
		return r, err
	}
	if n, ok := pprofTotal(r.AllocTop); ok {
		r.WorkerMallocsPerEvent = n / float64(r.Events)
	}
	return r, nil
}

// writeProfile writes the named runtime profile to path.
func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// goPprof runs `go tool pprof args...` and returns its output without the
// file header lines.
func goPprof(root string, args ...string) (string, error) {
	cmd := exec.Command("go", append([]string{"tool", "pprof"}, args...)...)
	cmd.Dir = root
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("bench: go tool pprof %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var keep []string
	for _, l := range strings.Split(strings.TrimRight(out.String(), "\n"), "\n") {
		if strings.HasPrefix(l, "File: ") || strings.HasPrefix(l, "Build ID: ") || strings.HasPrefix(l, "Time: ") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n"), nil
}

var (
	totalRe = regexp.MustCompile(`of ([0-9.]+)([kMGT]?)\s*(?:s|ms|B|kB|MB|GB)? total`)
	// rowRe matches a row of pprof -top: flat flat% sum% cum cum% name.
	rowRe = regexp.MustCompile(`(?m)^\s*\S+\s+[0-9.]+%\s+[0-9.]+%\s+\S+\s+([0-9.]+)%\s+\S`)
)

// pprofTotal parses "of N total" in a pprof -top header (N may carry a
// k/M/G/T suffix).
func pprofTotal(top string) (float64, bool) {
	m := totalRe.FindStringSubmatch(top)
	if m == nil {
		return 0, false
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, false
	}
	switch m[2] {
	case "k":
		n *= 1e3
	case "M":
		n *= 1e6
	case "G":
		n *= 1e9
	case "T":
		n *= 1e12
	}
	return n, true
}

// topCumShare returns the cum% of the first row of a pprof -top -cum
// listing, in [0,1]: with -focus, the share of the samples it kept.
func topCumShare(top string) float64 {
	m := rowRe.FindStringSubmatch(top)
	if m == nil {
		return 0
	}
	p, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0
	}
	return p / 100
}

// fetchStats is a kgo hook that counts the fetch requests of the worker's
// client and the time spent in long polls that came back empty. It is safe
// for concurrent use.
type fetchStats struct {
	mu        sync.Mutex
	stopped   bool
	n, empty  int
	emptyWait time.Duration
	longest   time.Duration
}

var _ kgo.HookBrokerE2E = (*fetchStats)(nil)

// emptyFetch is the size under which a fetch response holds no record batch.
const emptyFetch = 200

// OnBrokerE2E implements kgo.HookBrokerE2E.
func (f *fetchStats) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e kgo.BrokerE2E) {
	if key != int16(kmsg.Fetch) || e.Err() != nil {
		return
	}
	d := e.DurationE2E()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.n++
	if e.BytesRead < emptyFetch {
		f.empty++
		f.emptyWait += d
		f.longest = max(f.longest, d)
	}
}

// stop freezes the counts.
func (f *fetchStats) stop() (n, empty int, wait, longest time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopped = true
	return f.n, f.empty, f.emptyWait, f.longest
}
