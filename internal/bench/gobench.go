package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// microPackages are the packages of the hot path with Go benchmarks.
var microPackages = []string{"./topics/", "./processors/", "./sequencing/", "./dedupe/", "./state/"}

// GoBenchmark is one line of `go test -bench` output.
type GoBenchmark struct {
	Package     string
	Name        string // without the -GOMAXPROCS suffix
	NsPerOp     float64
	BytesPerOp  float64
	AllocsPerOp float64
	Extra       []string // custom metrics, e.g. "430.0 buckets"
}

// runGoBenchmarks runs the micro-benchmarks of microPackages once each
// with -benchmem and parses their results.
func runGoBenchmarks(ctx context.Context, root string) ([]GoBenchmark, error) {
	args := append([]string{"test", "-run", "^$", "-bench", ".", "-benchmem", "-count", "1"}, microPackages...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("bench: go %s: %w\n%s%s", strings.Join(args, " "), err, out.String(), stderr.String())
	}
	return parseGoBench(out.String()), nil
}

// parseGoBench parses `go test -bench` output: "pkg:" lines name the
// package of the benchmark lines that follow.
func parseGoBench(out string) []GoBenchmark {
	var res []GoBenchmark
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(strings.TrimSpace(p), "github.com/streamworker/streamworker/")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		b := GoBenchmark{Package: pkg, Name: f[0]}
		if i := strings.LastIndexByte(b.Name, '-'); i > 0 {
			if _, err := strconv.Atoi(b.Name[i+1:]); err == nil {
				b.Name = b.Name[:i]
			}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				b.NsPerOp = v
			case "B/op":
				b.BytesPerOp = v
			case "allocs/op":
				b.AllocsPerOp = v
			default:
				b.Extra = append(b.Extra, f[i]+" "+f[i+1])
			}
		}
		res = append(res, b)
	}
	return res
}
