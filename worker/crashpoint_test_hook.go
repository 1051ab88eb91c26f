//go:build swcrashpoints

package worker

// Test hook, compiled only with the build tag swcrashpoints (the crash
// tests build the binary with it; release builds never have it): the
// process SIGKILLs itself the n-th time it reaches a named point, as
// SW_TEST_CRASH_AT=point:n says. Points: revoke (a revoked partition's
// batch finished, before its offset commit), produced (outputs
// acknowledged, before the state commit), persisted (state committed in
// Redis, before the commit point moves), offset-commit (before an offset
// commit is sent).

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

var crash struct {
	once  sync.Once
	mu    sync.Mutex
	point string
	at    int
	hits  int
}

func crashPoint(name string) {
	crash.once.Do(func() {
		spec := os.Getenv("SW_TEST_CRASH_AT")
		point, n, ok := strings.Cut(spec, ":")
		if at, err := strconv.Atoi(n); ok && err == nil && at > 0 {
			crash.point, crash.at = point, at
		}
	})
	if crash.point != name {
		return
	}
	crash.mu.Lock()
	crash.hits++
	hit := crash.hits == crash.at
	crash.mu.Unlock()
	if hit {
		fmt.Fprintf(os.Stderr, "crash point %s reached (hit %d): SIGKILL\n", name, crash.at)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
