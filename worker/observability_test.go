package worker_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/streamworker/streamworker/internal/app"
	"github.com/streamworker/streamworker/internal/testenv"
)

// serve exposes reg and the worker's readiness on a loopback port.
func serve(t *testing.T, r *running) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: app.Handler(r.reg, r.w.Ready)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func scrape(t *testing.T, addr string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMetricsLint: the worker's metrics pass client_golang's linter and
// promtool check metrics on a real scrape.
func TestMetricsLint(t *testing.T) {
	e := newEnv(t, 2)
	r := e.start(e.options(nil))
	e.produce(workload(500, 7))
	e.waitDrained(30 * time.Second)
	problems, err := testutil.GatherAndLint(r.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if isKpromBufferedGauge(p.Metric) {
			continue
		}
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH (CI installs the prometheus package)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape(t, serve(t, r)))
	out, _ := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || isKpromBufferedGauge(line) {
			continue
		}
		t.Errorf("promtool check metrics: %s", line)
	}
}

// TestPrometheusSeesLag starts a real Prometheus scraping a running worker
// and queries the consumer lag back: it rises while a backlog builds up
// (Redis is stopped, so nothing completes) and falls to 0 once it drains.
func TestPrometheusSeesLag(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not on PATH (CI installs the prometheus package)")
	}
	e := newEnvWith(t, 3, nil, []testenv.RedisOption{testenv.WithAOF()})
	if !e.redis.CanRestart() {
		t.Skip("external Redis cannot be restarted")
	}
	r := e.start(e.options(nil))
	target := serve(t, r)
	testenv.Eventually(t, 20*time.Second, r.w.Ready, "worker not ready")

	port := testenv.FreePort(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf("global:\n  scrape_interval: 500ms\nscrape_configs:\n  - job_name: streamworker\n    static_configs:\n      - targets: [%q]\n", target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	prom := exec.Command(bin, "--config.file", filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path", filepath.Join(dir, "data"), "--web.listen-address", "127.0.0.1:"+strconv.Itoa(port))
	var promOut bytes.Buffer
	prom.Stdout, prom.Stderr = &promOut, &promOut
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = prom.Process.Kill()
		_ = prom.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", promOut.String())
		}
	})
	query := func(q string) (float64, bool) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=%s", port, url.QueryEscape(q)))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if json.NewDecoder(resp.Body).Decode(&body) != nil || len(body.Data.Result) == 0 {
			return 0, false
		}
		s, _ := body.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	const lag = `sum(streamworker_consumer_lag)`
	testenv.Eventually(t, 30*time.Second, func() bool { v, ok := query(lag); return ok && v == 0 },
		"Prometheus never scraped a zero lag from the idle worker")

	// Build a backlog the worker cannot complete: Redis is down.
	e.redis.Stop()
	e.produce(workload(3000, 8))
	testenv.Eventually(t, 30*time.Second, func() bool { v, ok := query(lag); return ok && v > 1000 },
		"Prometheus did not see the consumer lag rise")
	if v, ok := query(`max(streamworker_consumer_lag_seconds)`); !ok || v <= 0 {
		t.Errorf("time lag %v while a backlog waits", v)
	}

	e.redis.Start()
	testenv.Eventually(t, 60*time.Second, func() bool { v, ok := query(lag); return ok && v == 0 },
		"Prometheus did not see the lag fall to 0 after the backlog drained")
}

// isKpromBufferedGauge matches franz-go kprom's two gauges named
// buffered_{fetch,produce}_records_total: their names are kprom's, the only
// lint findings allowed.
func isKpromBufferedGauge(s string) bool {
	return strings.Contains(s, "streamworker_kafka_buffered_fetch_records_total") ||
		strings.Contains(s, "streamworker_kafka_buffered_produce_records_total")
}
