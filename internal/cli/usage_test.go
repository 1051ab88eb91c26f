// Tests of the command line's usage: exit status 2 for every mistake in an
// invocation, --version, help sections, and dev's flags and environment.
package cli

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testenv"
)

// usageCases are the mistakes in an invocation and what each prints; the
// table in docs/cli.md lists the same.
var usageCases = []struct {
	args   []string
	env    map[string]string
	code   int
	stderr string
}{
	{[]string{"bogus"}, nil, 2, `unknown command "bogus" for "streamworker"; the commands are`},
	{[]string{"confg", "check"}, nil, 2, `unknown command "confg" for "streamworker"; did you mean config?`},
	{[]string{"run", "extra-arg"}, nil, 2, `streamworker run takes no arguments, got ["extra-arg"]`},
	{[]string{"version", "x"}, nil, 2, `streamworker version takes no arguments`},
	{[]string{"topics"}, nil, 2, "streamworker topics needs a command: ensure"},
	{[]string{"topics", "bogus"}, nil, 2, `unknown command "bogus" for "streamworker topics"`},
	{[]string{"dlq", "redrve"}, nil, 2, "did you mean redrive?"},
	{[]string{"config"}, nil, 2, "streamworker config needs a command: check"},
	{[]string{"run", "--bogus"}, nil, 2, "unknown flag: --bogus"},
	{[]string{"run", "--kafka.max_poll_records", "many"}, nil, 2, `invalid argument "many" for "--kafka.max_poll_records"`},
	{[]string{"loadgen", "--rate"}, nil, 2, "flag needs an argument: --rate"},
	{[]string{"run", "--config", "missing.yaml"}, nil, 2, "config: read missing.yaml"},
	{[]string{"run", "--config", "config.txt"}, nil, 2, `unsupported file type "txt"`},
	{[]string{"config", "check"}, map[string]string{"SW_MILESTONES_EVERY": "0"}, 2, "config: milestones.every = 0: must be at least 1"},
	{[]string{"config", "check"}, map[string]string{"SW_KAFKA_BROKER": "x:1"}, 2, "did you mean SW_KAFKA_BROKERS?"},
	{[]string{"replay"}, nil, 2, "give --from-time or --from-offset"},
	{[]string{"replay", "--from-time", "yesterday"}, nil, 2, "--from-time: parsing time"},
	{[]string{"replay", "--from-time", "2026-01-01T00:00:00Z", "--from-offset", "0"}, nil, 2, "not both"},
	{[]string{"loadgen", "--duplicates", "2"}, nil, 2, "duplicates 2: want a fraction in [0,1]"},
	{[]string{"dev", "--log.level", "loud"}, nil, 2, "--log.level"},
	{[]string{"dev"}, map[string]string{"SW_HTTP_ADDR": ""}, 2, "SW_HTTP_ADDR is set but empty"},
	{[]string{"--bogus"}, nil, 2, "unknown flag: --bogus"},
	{[]string{"run", "-x"}, nil, 2, "unknown shorthand flag: 'x' in -x"},
	{[]string{"dlq"}, nil, 2, "streamworker dlq needs a command: redrive"},
	{[]string{"dlq", "redrive", "extra"}, nil, 2, `streamworker dlq redrive takes no arguments, got ["extra"]`},
	{[]string{"topics", "ensure", "x"}, nil, 2, `streamworker topics ensure takes no arguments, got ["x"]`},
	{[]string{"config", "check", "x"}, nil, 2, `streamworker config check takes no arguments, got ["x"]`},
	{[]string{"lag-exporter", "x"}, nil, 2, `unknown command "x" for "streamworker lag-exporter"`},
	{[]string{"lag-exporter", "--interval", "0"}, nil, 2, "--interval must be positive, got 0s"},
	{[]string{"help", "bogus"}, nil, 2, `help: unknown command "bogus"; the commands are`},
	{[]string{"completion", "bogus"}, nil, 2, `unknown command "bogus" for "streamworker completion"`},
	{[]string{"dev", "--partitions", "0"}, nil, 2, "--partitions 0: want at least 1"},
	{[]string{"dev", "--rate", "-1"}, nil, 2, "--rate -1: want events per second, or 0 for as fast as possible"},
	{[]string{"parked"}, nil, 2, "streamworker parked needs a command: list, release"},
	{[]string{"parked", "lst"}, nil, 2, `unknown command "lst" for "streamworker parked"; did you mean list?`},
	{[]string{"parked", "list", "x"}, nil, 2, `streamworker parked list takes no arguments, got ["x"]`},
	{[]string{"parked", "release"}, nil, 2, "streamworker parked release takes one argument, the user, got []"},
	{[]string{"parked", "release", "a", "b"}, nil, 2, `streamworker parked release takes one argument, the user, got ["a" "b"]`},
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, tc := range usageCases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.code, tc.stderr)
			}
		})
	}
}

func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), args, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "streamworker ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout.String(), stderr.String())
		}
	}
}

// TestHelpListsOwnFlagsFirst: a command's own flags come before the
// configuration flags, in a section of their own.
func TestHelpListsOwnFlagsFirst(t *testing.T) {
	for _, tc := range []struct {
		cmd []string
		own string
	}{
		{[]string{"loadgen"}, "--rate"},
		{[]string{"replay"}, "--from-time"},
		{[]string{"dlq", "redrive"}, "--reason"},
		{[]string{"config", "check"}, "--connect"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), append(tc.cmd, "--help"), &stdout, &stderr); code != 0 {
			t.Fatalf("%v --help: exit %d: %s", tc.cmd, code, stderr.String())
		}
		out := stdout.String()
		own, conf := strings.Index(out, "\nFlags:\n"), strings.Index(out, "\nConfiguration flags")
		if own < 0 || conf < 0 {
			t.Fatalf("%v --help: no Flags: or no Configuration flags section:\n%s", tc.cmd, out)
		}
		flag, key := own+strings.Index(out[own:], tc.own), strings.Index(out, "--kafka.brokers")
		if !(own < flag && flag < conf && conf < key) {
			t.Errorf("%v --help: want Flags: (with %s) before Configuration flags (with --kafka.brokers):\n%s", tc.cmd, tc.own, out)
		}
		if strings.Contains(out[:conf], "--kafka.brokers") {
			t.Errorf("%v --help: a configuration flag is listed among the command's own flags", tc.cmd)
		}
	}
}

// TestDevHonoursHTTPAddr: dev listens on SW_HTTP_ADDR like run does.
func TestDevHonoursHTTPAddr(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	t.Setenv("SW_HTTP_ADDR", addr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stdout, stderr bytes.Buffer
	go func() { done <- Main(ctx, []string{"dev", "--rate", "10", "--partitions", "1"}, &stdout, &stderr) }()
	defer func() {
		cancel()
		<-done
	}()
	testenv.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/livez")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "dev never served /livez on SW_HTTP_ADDR "+addr)
}

// TestDevBannerShowsBoundAddress: with --http.addr 127.0.0.1:0 the banner
// names the port really bound (it printed http://localhost//127.0.0.1:0/metrics),
// and that URL serves the metrics.
func TestDevBannerShowsBoundAddress(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var stdout, stderr testenv.LockedBuffer
	go func() {
		done <- Main(ctx, []string{"dev", "--http.addr", "127.0.0.1:0", "--rate", "10", "--partitions", "1"}, &stdout, &stderr)
	}()
	defer func() {
		cancel()
		<-done
	}()
	banner := regexp.MustCompile(`(?m)^http +(http://127\.0\.0\.1:([0-9]+)/metrics) `)
	var url string
	testenv.Eventually(t, 30*time.Second, func() bool {
		m := banner.FindStringSubmatch(stdout.String())
		if m == nil || m[2] == "0" {
			return false
		}
		url = m[1]
		return true
	}, "dev printed no banner line with the bound address")
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
}

// TestHelpAligned: in every command's help the subcommands' descriptions
// start in one column, and no line is wider than the flag descriptions are
// wrapped to (lag-exporter's description was pushed out of the column, and
// configuration flag lines ran past 200 columns).
func TestHelpAligned(t *testing.T) {
	for _, cmd := range [][]string{{}, {"topics"}, {"dlq"}, {"config"}, {"parked"}, {"run"}, {"dev"}, {"loadgen"},
		{"replay"}, {"dlq", "redrive"}, {"topics", "ensure"}, {"config", "check"}, {"lag-exporter"},
		{"parked", "list"}, {"parked", "release"}} {
		var stdout, stderr bytes.Buffer
		if code := Main(context.Background(), append(cmd, "--help"), &stdout, &stderr); code != 0 {
			t.Fatalf("%v --help: exit %d: %s", cmd, code, stderr.String())
		}
		out := stdout.String()
		for line := range strings.Lines(out) {
			if n := len(strings.TrimRight(line, "\n")); n > helpColumns {
				t.Errorf("%v --help: a line of %d columns: %q", cmd, n, line)
			}
		}
		_, commands, ok := strings.Cut(out, "Available Commands:\n")
		if !ok {
			continue
		}
		commands, _, _ = strings.Cut(commands, "\n\n")
		column := -1
		for line := range strings.Lines(commands) {
			fields := strings.Fields(line)
			at := strings.Index(line, fields[1])
			if column >= 0 && at != column {
				t.Errorf("%v --help: description of %s at column %d, others at %d:\n%s", cmd, fields[0], at, column, commands)
			}
			column = at
		}
	}
}

// TestCLIDocListsEveryUsageError: docs/cli.md's table of usage errors and
// usageCases list the same invocations, with the same exit status and a
// message that contains the one the test expects.
func TestCLIDocListsEveryUsageError(t *testing.T) {
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "## Every usage error\n")
	if !ok {
		t.Fatal("docs/cli.md has no section Every usage error")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	row := regexp.MustCompile("(?m)^\\| `([^`]*)` \\| ([0-9]+) \\| `([^`]*)` \\|$")
	type docRow struct {
		code int
		msg  string
	}
	rows := map[string]docRow{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		code, _ := strconv.Atoi(m[2])
		rows[m[1]] = docRow{code, m[3]}
	}
	for _, tc := range usageCases {
		var inv []string
		for _, k := range slices.Sorted(maps.Keys(tc.env)) {
			inv = append(inv, k+"="+tc.env[k])
		}
		key := strings.Join(append(append(inv, "streamworker"), tc.args...), " ")
		r, ok := rows[key]
		if !ok {
			t.Errorf("docs/cli.md lacks a row for `%s`", key)
			continue
		}
		delete(rows, key)
		if r.code != tc.code || !strings.Contains(r.msg, tc.stderr) {
			t.Errorf("docs/cli.md: `%s` exits %d with %q; the test expects %d and %q", key, r.code, r.msg, tc.code, tc.stderr)
		}
	}
	for key := range rows {
		t.Errorf("docs/cli.md lists `%s`, which no test case runs", key)
	}
}
