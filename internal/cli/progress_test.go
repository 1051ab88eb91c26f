// Tests of the progress of long commands: throttled plain lines off a
// terminal, a bar redrawn in place on one, and the commands' final lines.
package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testenv"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestProgressLinesOffATerminal(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	p := newProgress(&out, "loadgen", "records", 1000)
	p.now, p.start = clock.now, clock.now()
	for i := int64(1); i <= 10; i++ {
		clock.advance(time.Second)
		p.update(i*100, "")
	}
	p.finish(1000, "valid 990")
	want := "loadgen 100/1000 records (10%), 100/s, ETA 9s, 1s\n" +
		"loadgen 600/1000 records (60%), 100/s, ETA 4s, 6s\n" +
		"loadgen 1000/1000 records (100%), 100/s, 10s, valid 990\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestProgressBarOnATerminal(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	p := newProgress(&out, "dlq redrive", "records", 0)
	p.tty, p.every, p.now, p.start = true, redrawEvery, clock.now, clock.now()
	p.setTotal(200)
	clock.advance(time.Second)
	p.update(50, "redriven 50")
	clock.advance(50 * time.Millisecond) // within the redraw interval: not drawn
	p.update(60, "")
	clock.advance(time.Second)
	p.finish(200, "redriven 200")
	want := "\r\033[Kdlq redrive [#######-----------------------] 50/200 records (25%), 50/s, ETA 3s, 1s, redriven 50" +
		"\r\033[Kdlq redrive [##############################] 200/200 records (100%), 98/s, 2.1s, redriven 200\n"
	if out.String() != want {
		t.Errorf("got\n%q\nwant\n%q", out.String(), want)
	}
}

// TestLongCommandsReportProgress: topics ensure, loadgen, replay and dlq
// redrive end with a progress line on stderr, results on stdout.
func TestLongCommandsReportProgress(t *testing.T) {
	k := testenv.Kafka(t)
	t.Setenv("SW_KAFKA_BROKERS", strings.Join(k.Seeds(), ","))
	t.Setenv("SW_TOPICS_PARTITIONS", "2")
	t.Setenv("SW_TOPICS_REPLICATION_FACTOR", "1")
	for _, tc := range []struct {
		args           []string
		stdout, stderr string
	}{
		{[]string{"topics", "ensure"}, "user.activity", "topics ensure 7/7 topics (100%)"},
		{[]string{"loadgen", "--events", "500", "--rate", "0"}, "done: sent 500", "loadgen 500/500 records (100%)"},
		{[]string{"replay", "--from-offset", "0"}, "user.activity[1] -> 0", "replay 3/3 steps (100%)"},
		{[]string{"dlq", "redrive"}, "read 0, redriven 0, skipped 0, truncated 0", "dlq redrive 0 records"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), tc.args, &stdout, &stderr); code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%v: stdout %q, stderr %q; want %q and %q", tc.args, stdout.String(), stderr.String(), tc.stdout, tc.stderr)
		}
	}
}

// TestProgressBarFitsTheTerminal: on a terminal narrower than the line, the
// redrawn line is cut to the width (a wrapped line made the bar scroll a
// new row at every redraw); the final line is whole.
func TestProgressBarFitsTheTerminal(t *testing.T) {
	var out bytes.Buffer
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	p := newProgress(&out, "loadgen", "records", 1000)
	p.tty, p.every, p.cols, p.now, p.start = true, redrawEvery, 60, clock.now, clock.now()
	clock.advance(time.Second)
	p.update(100, "valid 99, duplicates 1, malformed 0")
	clock.advance(9 * time.Second)
	p.finish(1000, "valid 990, duplicates 10, malformed 0")
	redraw, final, _ := strings.Cut(out.String(), "\r\033[K"+"loadgen [##############################]")
	if want := "\r\033[K" + "loadgen [###---------------------------] 100/1000 records ("; redraw != want {
		t.Errorf("redrawn line %q, want the first 59 columns: %q", redraw, want)
	}
	if want := " 1000/1000 records (100%), 100/s, 10s, valid 990, duplicates 10, malformed 0\n"; final != want {
		t.Errorf("final line %q, want %q", final, want)
	}
}
