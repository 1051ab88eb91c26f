package worker_test

// Rebalance storms and repeated kill -9 of real worker processes: every
// guarantee holds (verify: final state and output IDs equal to a clean
// run; tally: no event lost or applied twice). Seeded; the long forms run
// under `make chaos` (SW_TEST_CHAOS=1).

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/streamworker/streamworker/internal/testenv"
	"github.com/streamworker/streamworker/processors"
)

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitRecovered waits until every input partition that had records not yet
// committed at the moment of c0 has committed past it, and returns how long
// that took from since.
func (e *env) waitRecovered(c0 map[int32]int64, since time.Time, timeout time.Duration) time.Duration {
	e.t.Helper()
	ends := e.endOffsets()
	testenv.Eventually(e.t, timeout, func() bool {
		c := e.committed()
		for p, end := range ends {
			if c0[p] < end && c[p] <= c0[p] {
				return false
			}
		}
		return true
	}, "some partition made no progress after the failure")
	return time.Since(since)
}

// processEnv skips under -short, and returns an env of the given input
// partitions for worker processes, the seed (SW_TEST_CHAOS_SEED or def) and a
// random source from it.
func processEnv(t *testing.T, def uint64, partitions int) (*env, uint64, *rand.Rand) {
	if testing.Short() {
		t.Skip("separate processes; skipped with -short")
	}
	seed := chaosSeed(t, def)
	return newEnv(t, partitions, fastGroups), seed, rand.New(rand.NewPCG(seed, def))
}

// TestRebalanceStorm: four worker processes on 12 partitions; every 1.5-4s
// (seeded) one joins, or one leaves by SIGTERM or SIGKILL, while events are
// produced continuously. The run equals a clean one.
func TestRebalanceStorm(t *testing.T) {
	e, seed, rng := processEnv(t, 31, 12)
	span := short(30*time.Second, 2*time.Minute)
	events := short(15_000, 80_000)
	wait := e.produceInBackground(workload(events, int64(seed)), float64(events)/span.Seconds())

	var alive []*proc
	n := 0
	spawn := func() {
		alive = append(alive, e.spawn(fmt.Sprintf("storm-%d", n)))
		n++
	}
	for range 4 {
		spawn()
	}
	alive[0].waitLog(t, "partitions assigned")
	var leaving sync.WaitGroup
	var mu sync.Mutex
	unclean := 0
	joins, terms, kills := 0, 0, 0
	for deadline := time.Now().Add(span); time.Now().Before(deadline); {
		// The storm's pace, not a wait for async work.
		testenv.Pace(t, time.Duration(1500+rng.IntN(2500))*time.Millisecond)
		if len(alive) < 4 && (len(alive) <= 1 || rng.IntN(2) == 0) {
			spawn()
			joins++
			continue
		}
		i := rng.IntN(len(alive))
		p := alive[i]
		alive = slices.Delete(alive, i, i+1)
		if rng.IntN(2) == 0 {
			terms++
			leaving.Go(func() {
				p.signal(syscall.SIGTERM)
				if p.err != nil {
					mu.Lock()
					unclean++
					mu.Unlock()
				}
			})
		} else {
			kills++
			p.signal(syscall.SIGKILL)
		}
	}
	oracle := wait()
	if len(alive) == 0 {
		spawn()
	}
	end := time.Now()
	e.waitDrained(3 * time.Minute)
	drain := time.Since(end)
	leaving.Wait()
	for _, p := range alive {
		p.signal(syscall.SIGTERM)
	}
	t.Logf("storm of %v: %d joins, %d SIGTERM (%d drains overran), %d SIGKILL; drained %v after the storm",
		span, joins, terms, unclean, kills, drain.Round(time.Millisecond))
	if joins == 0 || terms == 0 || kills == 0 {
		t.Errorf("the storm lacked a kind of change: %d joins, %d SIGTERM, %d SIGKILL", joins, terms, kills)
	}
	e.verify(oracle, processors.DefaultConfig())
	e.report(fmt.Sprintf("rebalance storm %v (%d joins, %d SIGTERM, %d SIGKILL)", span, joins, terms, kills),
		"12 partitions, up to 4 processes, kfake 1 broker, Redis standalone", oracle, []time.Duration{drain})
}

// crashPoints are where TestKillNine kills a worker: from outside at a
// random moment, or the process itself (a binary built with the tag
// swcrashpoints) inside a revoke before its offset commit, between the
// outputs' acknowledgement and the Redis commit, between the Redis commit
// and the commit point, or just before an offset commit.
var crashPoints = []string{"external", "revoke", "produced", "persisted", "offset-commit"}

// TestKillNine kills a worker process with SIGKILL again and again, at
// seeded random moments and at named points of revoke and of the commit
// pipeline, while another worker joins and leaves: the run equals a clean
// one, and each kill happened where intended.
func TestKillNine(t *testing.T) {
	e, seed, rng := processEnv(t, 41, 6)
	kills := short(5, 20)
	events := short(10_000, 40_000)
	bin := testenv.BuildBinaryTags(t, "github.com/streamworker/streamworker/cmd/streamworker", "swcrashpoints")
	// The stream outlasts the kills (about 10s each).
	wait := e.produceInBackground(workload(events, int64(seed)), float64(events)/(float64(kills)*10))

	// Every point once per round, in a seeded order.
	var order []string
	for len(order) < kills {
		for _, i := range rng.Perm(len(crashPoints)) {
			order = append(order, crashPoints[i])
		}
	}
	var helpers []*proc
	var recovered []time.Duration
	for i, point := range order[:kills] {
		var extra []string
		if point != "external" {
			hit := 1
			if point != "revoke" {
				hit += rng.IntN(5)
			}
			extra = append(extra, fmt.Sprintf("SW_TEST_CRASH_AT=%s:%d", point, hit))
		}
		if point == "revoke" {
			// Victim and one helper share the partitions, so that the
			// next member to join takes some from each.
			for len(helpers) > 1 {
				helpers[0].signal(syscall.SIGTERM)
				helpers = helpers[1:]
			}
		}
		x := e.spawnBin(bin, fmt.Sprintf("victim-%d", i), extra...)
		x.waitLog(t, `"msg":"partitions assigned","topic":"`+e.names.Input+`","partitions":[`)
		switch point {
		case "external":
			// A random moment of its work.
			testenv.Pace(t, time.Duration(200+rng.IntN(2000))*time.Millisecond)
			x.signal(syscall.SIGKILL)
		case "revoke":
			// A member joining makes the victim give partitions up.
			helpers = append(helpers, e.spawn(fmt.Sprintf("helper-%d", i)))
		}
		testenv.Eventually(t, 60*time.Second, x.exited, "victim %d (%s) did not die", i, point)
		died := time.Now()
		c0 := e.committed()
		if point != "external" && !strings.Contains(x.output(), "crash point "+point+" reached") {
			t.Fatalf("victim %d died, but not at %s:\n%s", i, point, x.output())
		}
		// At most two helpers; the oldest leaves cleanly.
		if len(helpers) > 2 {
			helpers[0].signal(syscall.SIGTERM)
			helpers = helpers[1:]
		}
		if len(helpers) == 0 {
			helpers = append(helpers, e.spawn(fmt.Sprintf("helper-%d", i)))
		}
		d := e.waitRecovered(c0, died, 90*time.Second)
		recovered = append(recovered, d)
		t.Logf("kill %d at %s: every partition committing again %v later", i+1, point, d.Round(time.Millisecond))
	}
	oracle := wait()
	e.waitDrained(2 * time.Minute)
	for _, h := range helpers {
		h.signal(syscall.SIGTERM)
	}
	e.verify(oracle, processors.DefaultConfig())
	e.report(fmt.Sprintf("kill -9 x%d (outside at random, in revoke, after produce, after Redis commit, before offset commit)", kills),
		"6 partitions, 1-3 processes, kfake 1 broker, Redis standalone", oracle, recovered)
}
