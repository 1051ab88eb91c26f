package worker_test

import (
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamworker/streamworker/internal/testenv"
)

// brokerFaults answers a seeded fraction of the requests of some keys with
// an error instead of handling them, through kfake's control hooks.
type brokerFaults struct {
	mu       sync.Mutex
	rng      *rand.Rand
	on       bool
	injected map[string]int    // by request and error
	seen     map[kmsg.Key]int  // requests of each key while on
	hit      map[kmsg.Key]bool // whether a request of the key was failed
}

// forceAfter is how many requests of a key, while the faults are on, pass
// before one is failed whatever the draw: a short run under load sends few
// offset commits, and every key's fault must be exercised.
const forceAfter = 3

// injectBrokerFaults makes c answer, while the faults are on, a fraction
// rate of produce and fetch requests with NOT_LEADER_FOR_PARTITION or
// REQUEST_TIMED_OUT, and a fraction groupRate of offset commits with
// NOT_COORDINATOR or REQUEST_TIMED_OUT and of join, sync and heartbeat
// requests with NOT_COORDINATOR; the broker does not handle those.
func injectBrokerFaults(c *kfake.Cluster, seed uint64, rate, groupRate float64) *brokerFaults {
	f := &brokerFaults{rng: rand.New(rand.NewPCG(seed, 7)), injected: map[string]int{}, seen: map[kmsg.Key]int{}, hit: map[kmsg.Key]bool{}}
	leader := []*kerr.Error{kerr.NotLeaderForPartition, kerr.RequestTimedOut}
	coord := []*kerr.Error{kerr.NotCoordinator, kerr.RequestTimedOut}
	for _, key := range []kmsg.Key{kmsg.Produce, kmsg.Fetch, kmsg.OffsetCommit, kmsg.JoinGroup, kmsg.SyncGroup, kmsg.Heartbeat} {
		c.ControlKey(int16(key), func(req kmsg.Request) (kmsg.Response, error, bool) {
			c.KeepControl()
			f.mu.Lock()
			defer f.mu.Unlock()
			r := rate
			if key == kmsg.OffsetCommit || key == kmsg.JoinGroup || key == kmsg.SyncGroup || key == kmsg.Heartbeat {
				r = groupRate
			}
			if !f.on {
				return nil, nil, false
			}
			f.seen[key]++
			if f.rng.Float64() >= r && (f.hit[key] || f.seen[key] <= forceAfter) {
				return nil, nil, false
			}
			f.hit[key] = true
			resp := req.ResponseKind()
			resp.SetVersion(req.GetVersion())
			var e *kerr.Error
			switch req := req.(type) {
			case *kmsg.ProduceRequest:
				e = leader[f.rng.IntN(2)]
				mirror(req.Topics, &resp.(*kmsg.ProduceResponse).Topics, e.Code)
			case *kmsg.FetchRequest:
				e = leader[f.rng.IntN(2)]
				mirror(req.Topics, &resp.(*kmsg.FetchResponse).Topics, e.Code)
			case *kmsg.OffsetCommitRequest:
				e = coord[f.rng.IntN(2)]
				mirror(req.Topics, &resp.(*kmsg.OffsetCommitResponse).Topics, e.Code)
			case *kmsg.JoinGroupRequest:
				e = kerr.NotCoordinator
				resp.(*kmsg.JoinGroupResponse).ErrorCode = e.Code
			case *kmsg.SyncGroupRequest:
				e = kerr.NotCoordinator
				resp.(*kmsg.SyncGroupResponse).ErrorCode = e.Code
			case *kmsg.HeartbeatRequest:
				e = kerr.NotCoordinator
				resp.(*kmsg.HeartbeatResponse).ErrorCode = e.Code
			}
			f.injected[kmsg.NameForKey(req.Key())+" "+e.Message]++
			return resp, nil, true
		})
	}
	return f
}

// mirror fills the topics of a response (a pointer to its Topics) with the
// topics and partitions of the request's, every partition failing with
// code. Request and response topics share the field names Topic, TopicID,
// Partitions and Partition; the other fields keep kmsg's defaults (such as
// no preferred read replica).
func mirror(reqTopics, respTopics any, code int16) {
	in, out := reflect.ValueOf(reqTopics), reflect.ValueOf(respTopics).Elem()
	for i := range in.Len() {
		t, nt := in.Index(i), fresh(out.Type().Elem())
		for _, f := range []string{"Topic", "TopicID"} {
			if v := t.FieldByName(f); v.IsValid() && nt.FieldByName(f).IsValid() {
				nt.FieldByName(f).Set(v)
			}
		}
		ps, nps := t.FieldByName("Partitions"), nt.FieldByName("Partitions")
		for j := range ps.Len() {
			np := fresh(nps.Type().Elem())
			np.FieldByName("Partition").Set(ps.Index(j).FieldByName("Partition"))
			np.FieldByName("ErrorCode").SetInt(int64(code))
			nps.Set(reflect.Append(nps, np))
		}
		out.Set(reflect.Append(out, nt))
	}
}

// fresh returns a new value of the kmsg type t with its defaults.
func fresh(t reflect.Type) reflect.Value {
	v := reflect.New(t)
	if d, ok := v.Interface().(interface{ Default() }); ok {
		d.Default()
	}
	return v.Elem()
}

func (f *brokerFaults) set(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.on = on
}

func (f *brokerFaults) counts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.injected))
	for k, v := range f.injected {
		out[k] = v
	}
	return out
}

// TestBrokerFaults: two workers on three brokers; while a stream is
// produced, produce, fetch, offset commit and group requests fail with
// NOT_LEADER_FOR_PARTITION, REQUEST_TIMED_OUT and NOT_COORDINATOR, group
// coordinators move and partition leaders move between brokers. The run
// equals a clean one, and every kind of fault was injected.
func TestBrokerFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection; skipped with -short")
	}
	seed := chaosSeed(t, 21)
	e := newEnv(t, 6, fastGroups, testenv.WithKfakeOpts(kfake.NumBrokers(3)))
	c := e.kafka.Cluster()
	faults := injectBrokerFaults(c, seed, short(0.05, 0.1), 0.3)
	events := short(10_000, 60_000)
	span := short(12*time.Second, 90*time.Second)
	wait := e.produceInBackground(workload(events, int64(seed)), float64(events)/span.Seconds())
	a := e.start(e.options(nil))
	b := e.start(e.options(nil))
	faults.set(true)
	rng := rand.New(rand.NewPCG(seed, 8))
	moves := 0
	for deadline := time.Now().Add(span); time.Now().Before(deadline); moves++ {
		// The moves' pace, not a wait for async work.
		testenv.Pace(t, time.Duration(500+rng.IntN(1000))*time.Millisecond)
		c.RehashCoordinators()
		if err := c.MoveTopicPartition(e.names.Input, rng.Int32N(6), rng.Int32N(3)); err != nil {
			t.Fatal(err)
		}
		if err := c.MoveTopicPartition(e.names.Aggregates, rng.Int32N(3), rng.Int32N(3)); err != nil {
			t.Fatal(err)
		}
	}
	oracle := wait()
	got := faults.counts()
	faults.set(false)
	t.Logf("%d coordinator and leader moves; injected %v", moves, got)
	for _, key := range []string{"Produce", "Fetch", "OffsetCommit", "Heartbeat"} {
		n := 0
		for k, v := range got {
			if len(k) > len(key) && k[:len(key)+1] == key+" " {
				n += v
			}
		}
		if n == 0 {
			t.Errorf("no %s request failed: the fault was not injected", key)
		}
	}
	e.waitDrained(2 * time.Minute)
	testenv.Eventually(t, 30*time.Second, func() bool { return a.w.Ready() && b.w.Ready() }, "workers not ready after the faults")
	e.verify(oracle, e.options(nil).Processors)
	e.report("broker errors (NOT_LEADER, REQUEST_TIMED_OUT, NOT_COORDINATOR) + leader and coordinator moves", "kfake 3 brokers, Redis standalone, 2 workers", oracle, nil)
}
