package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/streamworker/streamworker/topics"
)

// moduleRoot returns the directory of the go.mod that the go command sees
// from the working directory.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("bench: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("bench: not inside the streamworker module (run from its checkout)")
	}
	return filepath.Dir(gomod), nil
}

// buildWorker builds cmd/streamworker into dir and returns the binary.
func buildWorker(ctx context.Context, root, dir string) (string, error) {
	out := filepath.Join(dir, "streamworker")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/streamworker")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("bench: go build ./cmd/streamworker: %w\n%s", err, stderr.String())
	}
	return out, nil
}

// workerProc is a `streamworker run` child process.
type workerProc struct {
	cmd     *exec.Cmd
	base    string // http://host:port
	metrics string // URL of /metrics
	ready   string // URL of /readyz
	logPath string
	log     *os.File
	http    *http.Client
	done    chan struct{}
	err     error
}

// workerEnv is what a worker child needs to know.
type workerEnv struct {
	bin      string
	dir      string // for its log
	seeds    []string
	names    topics.Names
	group    string
	redis    string
	commitIv time.Duration
	http     *http.Client
	extra    []string // more KEY=VALUE entries, last
	pprof    bool     // serve /debug/pprof/
}

// startWorker starts `streamworker run` with the SW_* environment of e on a
// free metrics port. Its logs go to a file in e.dir.
func startWorker(e workerEnv) (*workerProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	w := &workerProc{
		base:    "http://" + addr,
		metrics: "http://" + addr + "/metrics",
		ready:   "http://" + addr + "/readyz",
		logPath: filepath.Join(e.dir, e.group+".log"),
		http:    e.http,
		done:    make(chan struct{}),
	}
	w.log, err = os.Create(w.logPath)
	if err != nil {
		return nil, err
	}
	w.cmd = exec.Command(e.bin, "run")
	w.cmd.Env = append(os.Environ(),
		"SW_KAFKA_BROKERS="+strings.Join(e.seeds, ","),
		"SW_KAFKA_GROUP="+e.group,
		"SW_KAFKA_CLIENT_ID="+e.group,
		"SW_KAFKA_COMMIT_INTERVAL="+e.commitIv.String(),
		"SW_TOPICS_INPUT="+e.names.Input,
		"SW_TOPICS_AGGREGATES="+e.names.Aggregates,
		"SW_TOPICS_MILESTONES="+e.names.Milestones,
		"SW_TOPICS_ANOMALIES="+e.names.Anomalies,
		"SW_TOPICS_DLQ="+e.names.DLQ,
		"SW_TOPICS_GAPS="+e.names.Gaps,
		"SW_REDIS_ADDR="+e.redis,
		"SW_REDIS_KEY_PREFIX=sw",
		"SW_HTTP_ADDR="+addr,
		"SW_LOG_LEVEL=info",
		"SW_HTTP_PPROF="+strconv.FormatBool(e.pprof),
	)
	w.cmd.Env = append(w.cmd.Env, e.extra...)
	w.cmd.Stdout, w.cmd.Stderr = w.log, w.log
	if err := w.cmd.Start(); err != nil {
		w.log.Close()
		return nil, fmt.Errorf("bench: start worker: %w", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

// scrape reads the worker's /metrics.
func (w *workerProc) scrape(ctx context.Context) (families, error) {
	return scrape(ctx, w.http, w.metrics)
}

// pid returns the worker's process ID.
func (w *workerProc) pid() int { return w.cmd.Process.Pid }

// exited reports whether the process has ended.
func (w *workerProc) exited() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// waitAssigned waits until the worker serves metrics and owns partitions
// input partitions.
func (w *workerProc) waitAssigned(ctx context.Context, partitions int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if w.exited() {
			return w.failed(fmt.Errorf("bench: worker exited: %v", w.err))
		}
		if mfs, err := w.scrape(ctx); err == nil &&
			mfs.value("streamworker_assigned_partitions", nil) == float64(partitions) &&
			mfs.value("streamworker_ready", nil) == 1 {
			return nil
		}
		if time.Now().After(deadline) {
			return w.failed(fmt.Errorf("bench: worker did not own %d partitions within %v", partitions, timeout))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// stop sends SIGTERM and waits for the drain, killing after timeout.
func (w *workerProc) stop(timeout time.Duration) error {
	defer w.log.Close()
	if w.exited() {
		return w.err
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.done:
		return w.err
	case <-time.After(timeout):
		_ = w.cmd.Process.Kill()
		<-w.done
		return fmt.Errorf("bench: worker did not stop within %v after SIGTERM", timeout)
	}
}

// failed returns err with the path of a copy of the worker's log that
// outlives the run's temporary directory.
func (w *workerProc) failed(err error) error {
	b, rerr := os.ReadFile(w.logPath)
	if rerr != nil {
		return err
	}
	f, cerr := os.CreateTemp("", "swbench-worker-*.log")
	if cerr != nil {
		return err
	}
	defer f.Close()
	if _, werr := f.Write(b); werr != nil {
		return err
	}
	return fmt.Errorf("%w (worker log: %s)", err, f.Name())
}

// saveProfile writes the worker's /debug/pprof/<name>?<query> to path.
// The request's own timeout must cover a CPU profile's duration, so it
// uses a plain client bounded by ctx only.
func (w *workerProc) saveProfile(ctx context.Context, name, query, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.base+"/debug/pprof/"+name+"?"+query, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("bench: worker profile %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: worker profile %s: %s", name, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
