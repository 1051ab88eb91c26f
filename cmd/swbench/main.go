// Command swbench is streamworker's end-to-end benchmark (`make bench`): it
// measures a plain consume→produce ceiling, a reference that deduplicates
// with one SET NX EX per event, the worker's throughput, end-to-end latency,
// Redis and CPU use and cost growth on this machine and prints one markdown
// table of medians with the targets. See BENCHMARKS.md and package
// internal/bench.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/streamworker/streamworker/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
