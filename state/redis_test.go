package state

import (
	"bufio"
	"context"
	"encoding"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/internal/testenv"
)

// newRedisStore returns a store in a namespace of its own on one
// redis-server per top-level test.
func redisStores(t *testing.T) newStoreFunc {
	srv := testenv.Redis(t)
	client := srv.Client(t)
	n := 0
	return func(t *testing.T, ttl time.Duration) (Store, func(time.Duration)) {
		n++
		keys := dedupe.Keys{Prefix: srv.Prefix() + "-" + strconv.Itoa(n)}
		return NewRedisStore(client, keys, ttl), func(time.Duration) {}
	}
}

func TestRedisStore(t *testing.T) { testStore(t, redisStores(t)) }

// roundTrips counts the round trips a client makes for its callers: one per
// pipeline, one per single command. The handshake of a new connection
// (HELLO, CLIENT SETINFO) is not counted.
type roundTrips struct{ pipelines, commands atomic.Int64 }

func handshake(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "auth", "select":
		return true
	}
	return false
}

func (h *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			h.commands.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && !handshake(cmds[0]) {
			h.pipelines.Add(1)
		}
		return next(ctx, cmds)
	}
}
func (h *roundTrips) take() (pipelines, commands int64) {
	return h.pipelines.Swap(0), h.commands.Swap(0)
}

// observer records what a RedisStore reports.
type observer struct {
	mu  sync.Mutex
	ops []string
}

func (o *observer) ObserveRedis(op string, d time.Duration, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if d <= 0 {
		op += "(no duration)"
	}
	if err != nil {
		op += "(error)"
	}
	o.ops = append(o.ops, op)
}

func (o *observer) take() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := strings.Join(o.ops, " ")
	o.ops = nil
	return s
}

type redisFixture struct {
	srv    *testenv.RedisServer
	client redis.UniversalClient
	keys   dedupe.Keys
	store  *RedisStore
	trips  *roundTrips
	obs    *observer
}

func newRedisFixture(t *testing.T, ttl time.Duration, opts ...testenv.RedisOption) *redisFixture {
	f := &redisFixture{srv: testenv.Redis(t, opts...), trips: &roundTrips{}, obs: &observer{}}
	// Fail fast while the server is down (the caller retries, not go-redis).
	copts := f.srv.Options()
	copts.MaxRetries = -1
	copts.DialerRetries = 1
	f.client = redis.NewUniversalClient(copts)
	t.Cleanup(func() { f.client.Close() })
	f.client.AddHook(f.trips)
	f.keys = dedupe.Keys{Prefix: f.srv.Prefix()}
	f.store = NewRedisStore(f.client, f.keys, ttl, WithObserver(f.obs))
	return f
}

// batch returns n aggregates, a write of each with marks a and b, and
// their marks with the given event IDs.
func batch(n int, ids ...string) (aggs []string, marks []Mark, writes []Write) {
	for i := range n {
		agg := "u-" + strconv.Itoa(i)
		aggs = append(aggs, agg)
		writes = append(writes, Write{Aggregate: agg, Data: []byte("x"), Marks: []string{"a", "b"}})
		for _, id := range ids {
			marks = append(marks, Mark{agg, id})
		}
	}
	return aggs, marks, writes
}

// newLoadedFixture is newRedisFixture with the script loaded.
func newLoadedFixture(t *testing.T, ttl time.Duration) *redisFixture {
	f := newRedisFixture(t, ttl)
	if err := f.store.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRedisStoreLayout(t *testing.T) {
	f := newRedisFixture(t, time.Hour)
	ctx := context.Background()
	out, err := f.store.Commit(ctx, []Write{{Aggregate: "u-42", Expect: 0, Data: []byte(`{"total":1}`), Marks: []string{"evt-1"}}})
	if err != nil || out[0] != Committed {
		t.Fatalf("Commit = %v, %v", out, err)
	}
	h, err := f.client.HGetAll(ctx, f.keys.State("u-42")).Result()
	if err != nil || len(h) != 2 || h["v"] != "1" || h["d"] != `{"total":1}` {
		t.Fatalf("HGETALL %s = %v, %v; want v=1 and the data", f.keys.State("u-42"), h, err)
	}
	if ttl, err := f.client.PTTL(ctx, f.keys.State("u-42")).Result(); err != nil || ttl != -1 {
		t.Fatalf("state key PTTL = %v, %v; want no expiry", ttl, err)
	}
	seen := f.keys.Seen("u-42", "evt-1")
	if !strings.HasSuffix(seen, ":{u-42}:seen:evt-1") {
		t.Fatalf("seen key %q", seen)
	}
	ttl, err := f.client.PTTL(ctx, seen).Result()
	if err != nil || ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("PTTL %s = %v, %v; want about 1h", seen, ttl, err)
	}
	if v, err := f.client.Get(ctx, seen).Result(); err != nil || v != "1" {
		t.Fatalf("GET %s = %q, %v; want 1", seen, v, err)
	}
}

func TestRedisStoreOneRoundTripPerBatch(t *testing.T) {
	f := newLoadedFixture(t, time.Hour)
	ctx := context.Background()
	const n = 100
	aggs, marks, writes := batch(n, "a", "b")
	f.trips.take()
	f.obs.take()
	if _, _, err := f.store.Fetch(ctx, aggs, marks); err != nil {
		t.Fatal(err)
	}
	if p, c := f.trips.take(); p != 1 || c != 0 {
		t.Fatalf("Fetch of %d aggregates and %d marks: %d pipelines, %d commands; want 1, 0", n, len(marks), p, c)
	}
	out, err := f.store.Commit(ctx, writes)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if o != Committed {
			t.Fatalf("outcome %d = %v", i, o)
		}
	}
	if p, c := f.trips.take(); p != 1 || c != 0 {
		t.Fatalf("Commit of %d aggregates: %d pipelines, %d commands; want 1, 0", n, p, c)
	}
	if got := f.obs.take(); got != "fetch commit" {
		t.Fatalf("observed %q, want %q", got, "fetch commit")
	}
}

func TestRedisStoreReloadsScript(t *testing.T) {
	f := newRedisFixture(t, time.Hour)
	ctx := context.Background()
	commit := func(w Write) Outcome {
		t.Helper()
		out, err := f.store.Commit(ctx, []Write{w})
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
		return out[0]
	}
	// A server that does not know the script: the first commit loads it.
	if err := f.client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	f.obs.take()
	if o := commit(Write{Aggregate: "u-1", Data: []byte("v1"), Marks: []string{"e1"}}); o != Committed {
		t.Fatalf("first commit: %v", o)
	}
	if got := f.obs.take(); got != "commit script_load commit" {
		t.Fatalf("first commit observed %q, want a NOSCRIPT, a load and a retry", got)
	}
	if o := commit(Write{Aggregate: "u-1", Expect: 1, Data: []byte("v2"), Marks: []string{"e2"}}); o != Committed {
		t.Fatalf("second commit: %v", o)
	}
	if got := f.obs.take(); got != "commit" {
		t.Fatalf("second commit observed %q, want one round trip", got)
	}
	if err := f.client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	f.trips.take()
	// After SCRIPT FLUSH the retry happens once, and the write applies once.
	if o := commit(Write{Aggregate: "u-1", Expect: 2, Data: []byte("v3"), Marks: []string{"e3"}}); o != Committed {
		t.Fatalf("commit after SCRIPT FLUSH: %v", o)
	}
	if p, c := f.trips.take(); p != 2 || c != 1 {
		t.Fatalf("commit after SCRIPT FLUSH: %d pipelines, %d commands; want 2 and 1 (SCRIPT LOAD)", p, c)
	}
	snaps, _, err := f.store.Fetch(ctx, []string{"u-1"}, nil)
	if err != nil || snaps[0].Version != 3 || string(snaps[0].Data) != "v3" {
		t.Fatalf("after reload: %+v, %v; want version 3", snaps, err)
	}
}

// TestRedisStoreRestart: while Redis is down every call fails with a
// retryable error and nothing is applied twice; after a restart (with AOF)
// state and marks are intact and the script is reloaded.
func TestRedisStoreRestart(t *testing.T) {
	f := newRedisFixture(t, time.Hour, testenv.WithAOF())
	if !f.srv.CanRestart() {
		t.Skip("needs a Redis it can restart")
	}
	ctx := context.Background()
	w1 := Write{Aggregate: "u-1", Data: []byte("v1"), Marks: []string{"e1"}}
	if out, err := f.store.Commit(ctx, []Write{w1}); err != nil || out[0] != Committed {
		t.Fatalf("Commit = %v, %v", out, err)
	}
	f.srv.Kill()
	w2 := Write{Aggregate: "u-1", Expect: 1, Data: []byte("v2"), Marks: []string{"e2"}}
	out, err := f.store.Commit(ctx, []Write{w2})
	if err == nil || !IsRetryable(err) || out[0] != Unknown {
		t.Fatalf("Commit while down = %v, %v (retryable %v); want a retryable error", out, err, IsRetryable(err))
	}
	if _, _, err := f.store.Fetch(ctx, []string{"u-1"}, nil); err == nil || !IsRetryable(err) {
		t.Fatalf("Fetch while down: %v (retryable %v); want a retryable error", err, IsRetryable(err))
	}
	if !strings.Contains(f.obs.take(), "commit(error) fetch(error)") {
		t.Fatal("errors while down not observed")
	}
	f.srv.Start()
	snaps, exists, err := f.store.Fetch(ctx, []string{"u-1"}, []Mark{{"u-1", "e1"}})
	if err != nil || snaps[0].Version != 1 || !exists[0] {
		t.Fatalf("after restart: %+v %v %v; want version 1 and mark e1", snaps, exists, err)
	}
	for range 2 { // the retry of w2, then a repeat of it
		if out, err := f.store.Commit(ctx, []Write{w2}); err != nil || out[0] != Committed {
			t.Fatalf("Commit after restart = %v, %v", out, err)
		}
	}
}

func TestRedisStoreCorruptState(t *testing.T) {
	f := newRedisFixture(t, time.Hour)
	ctx := context.Background()
	if err := f.client.HSet(ctx, f.keys.State("u-1"), "v", "not a number").Err(); err != nil {
		t.Fatal(err)
	}
	_, _, err := f.store.Fetch(ctx, []string{"u-1"}, nil)
	if !errors.Is(err, ErrCorrupt) || IsRetryable(err) {
		t.Fatalf("Fetch of a corrupt state: %v; want ErrCorrupt, not retryable", err)
	}
	if err := f.client.Set(ctx, f.keys.State("u-2"), "a string", 0).Err(); err != nil {
		t.Fatal(err)
	}
	out, err := f.store.Commit(ctx, []Write{
		{Aggregate: "u-3", Data: []byte("ok")},
		{Aggregate: "u-2", Data: []byte("x")},
	})
	if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") || IsRetryable(err) {
		t.Fatalf("Commit over a key of the wrong type: %v; want a WRONGTYPE error, not retryable", err)
	}
	// Both writes went in one script call, which failed: both outcomes are
	// unknown, though the good write was applied before the error. A
	// caller that retries after a Fetch finds it applied. On a Cluster
	// each write has a call of its own, so the good one is known.
	want := []Outcome{Unknown, Unknown}
	if f.store.cluster {
		want[0] = Committed
	}
	if !slices.Equal(out, want) {
		t.Fatalf("outcomes = %v; want %v", out, want)
	}
	snaps, _, err := f.store.Fetch(ctx, []string{"u-3"}, nil)
	if err != nil || snaps[0].Version != 1 || string(snaps[0].Data) != "ok" {
		t.Fatalf("u-3 after the failed call: %+v, %v; want version 1 applied", snaps, err)
	}
}

// fakeRedis answers every command with reply (a RESP line), to get real
// go-redis errors for IsRetryable.
func fakeRedis(t *testing.T, reply string) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				r := bufio.NewReader(c)
				for readCommand(r) == nil {
					if _, err := io.WriteString(c, reply+"\r\n"); err != nil {
						return
					}
				}
			})
		}
	})
	return l.Addr().String()
}

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil {
		return err
	}
	for range n {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
		if err != nil {
			return err
		}
		if _, err := r.Discard(size + 2); err != nil {
			return err
		}
	}
	return nil
}

func TestIsRetryable(t *testing.T) {
	tests := []struct {
		name      string
		reply     string // a RESP error line; empty: nothing listens
		retryable bool
	}{
		{"connection refused", "", true},
		{"LOADING", "-LOADING Redis is loading the dataset in memory", true},
		{"CLUSTERDOWN", "-CLUSTERDOWN The cluster is down", true},
		{"TRYAGAIN", "-TRYAGAIN Multiple keys request during rehashing of slot", true},
		{"MASTERDOWN", "-MASTERDOWN Link with MASTER is down", true},
		{"READONLY", "-READONLY You can't write against a read only replica.", true},
		{"BUSY", "-BUSY Redis is busy running a script.", true},
		{"OOM", "-OOM command not allowed when used memory > 'maxmemory'.", true},
		{"NOAUTH", "-NOAUTH Authentication required.", false},
		{"NOPERM", "-NOPERM this user has no permissions", false},
		{"script error", "-ERR Error running script", false},
		{"WRONGTYPE", "-WRONGTYPE Operation against a key holding the wrong kind of value", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
			if tt.reply != "" {
				addr = fakeRedis(t, tt.reply)
			}
			client := redis.NewClient(&redis.Options{
				Addr: addr, Protocol: 2, DisableIdentity: true, MaxRetries: -1, DialerRetries: 1,
				DialTimeout: time.Second, ReadTimeout: time.Second,
			})
			defer client.Close()
			s := NewRedisStore(client, dedupe.Keys{}, time.Hour)
			_, _, ferr := s.Fetch(context.Background(), []string{"u-1"}, nil)
			_, cerr := s.Commit(context.Background(), []Write{{Aggregate: "u-1", Data: []byte("x")}})
			for _, err := range []error{ferr, cerr} {
				if err == nil {
					t.Fatal("no error")
				}
				if got := IsRetryable(err); got != tt.retryable {
					t.Errorf("IsRetryable(%v) = %v, want %v", err, got, tt.retryable)
				}
			}
		})
	}
	plain := []struct {
		err       error
		retryable bool
	}{
		{nil, false},
		{context.Canceled, false},
		{fmt.Errorf("state: fetch: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("state: fetch: %w", redis.ErrClosed), false},
		{fmt.Errorf("state: fetch: %w", redis.ErrPoolTimeout), true},
		{fmt.Errorf("state: fetch: %w", io.ErrUnexpectedEOF), true},
		{ErrCorrupt, false},
		{errors.New("something else"), false},
	}
	for _, tt := range plain {
		if got := IsRetryable(tt.err); got != tt.retryable {
			t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.retryable)
		}
	}
}

// TestRedisStoreMiniredis runs the conformance suite on miniredis, the
// Redis that `streamworker dev` falls back to without a redis-server.
func TestRedisStoreMiniredis(t *testing.T) {
	testStore(t, func(t *testing.T, ttl time.Duration) (Store, func(time.Duration)) {
		m := miniredis.RunT(t)
		client := redis.NewClient(&redis.Options{Addr: m.Addr()})
		t.Cleanup(func() { client.Close() })
		return NewRedisStore(client, dedupe.Keys{}, ttl), m.FastForward
	})
}

// commandLog records the arguments of every pipelined command but the
// handshake as the strings go-redis writes.
type commandLog struct {
	mu   sync.Mutex
	cmds [][]string
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.mu.Lock()
		for _, cmd := range cmds {
			if handshake(cmd) {
				continue
			}
			var args []string
			for _, a := range cmd.Args() {
				switch v := a.(type) {
				case *string:
					args = append(args, *v)
				case encoding.BinaryMarshaler:
					b, _ := v.MarshalBinary()
					args = append(args, string(b))
				default:
					args = append(args, fmt.Sprint(v))
				}
			}
			l.cmds = append(l.cmds, args)
		}
		l.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (l *commandLog) take() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.cmds
	l.cmds = nil
	return c
}

// TestRedisStoreCommands checks the commands that Fetch and Commit build in
// their shared arena against the same commands built one string at a time
// from Keys.State, Keys.Seen and strconv.
func TestRedisStoreCommands(t *testing.T) {
	f := newLoadedFixture(t, 90*time.Second)
	log := &commandLog{}
	f.client.AddHook(log)
	ctx := context.Background()
	var writes []Write
	var aggs []string
	var marks []Mark
	for i := range 300 {
		w := Write{Aggregate: "u-" + strconv.Itoa(i), Data: []byte("data " + strconv.Itoa(i))}
		if i == 3 {
			w.Aggregate, w.Data = "}odd", nil
		}
		for j := range i % 4 {
			w.Marks = append(w.Marks, "evt-"+strconv.Itoa(i)+"-"+strconv.Itoa(j))
			marks = append(marks, Mark{w.Aggregate, w.Marks[j]})
		}
		writes = append(writes, w)
		aggs = append(aggs, w.Aggregate)
	}
	if _, err := f.store.Commit(ctx, writes); err != nil {
		t.Fatal(err)
	}
	var want [][]string
	for _, call := range f.store.calls(writes, all(len(writes))) {
		var keys, argv []string
		for _, i := range call {
			w := writes[i]
			keys = append(keys, f.keys.State(w.Aggregate))
			for _, id := range w.Marks {
				keys = append(keys, f.keys.Seen(w.Aggregate, id))
			}
			argv = append(argv, strconv.Itoa(len(w.Marks)), strconv.FormatInt(w.Expect, 10), strconv.FormatInt(w.Expect+1, 10), string(w.Data))
		}
		cmd := append([]string{"evalsha", f.store.sha, strconv.Itoa(len(keys))}, keys...)
		want = append(want, append(append(cmd, "90000"), argv...))
	}
	if got := log.take(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Commit sent\n%q\nwant\n%q", got, want)
	}

	if _, _, err := f.store.Fetch(ctx, aggs, marks); err != nil {
		t.Fatal(err)
	}
	want = nil
	for _, agg := range aggs {
		want = append(want, []string{"hmget", f.keys.State(agg), "v", "d"})
	}
	var mget []string
	for i, m := range marks {
		if i%marksPerRead == 0 || f.store.cluster && m.Aggregate != marks[i-1].Aggregate {
			if mget != nil {
				want = append(want, mget)
			}
			mget = []string{"mget"}
		}
		mget = append(mget, f.keys.Seen(m.Aggregate, m.EventID))
	}
	want = append(want, mget)
	if got := log.take(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("Fetch sent\n%q\nwant\n%q", got, want)
	}
}

// TestRedisStoreAllocations: the allocations of Fetch and Commit grow with
// their commands (go-redis allocates each and its reply), not with their
// keys: a few hundred aggregates share a script call, and hundreds of marks
// an MGET, but on a Cluster each aggregate has its own.
func TestRedisStoreAllocations(t *testing.T) {
	f := newLoadedFixture(t, time.Hour)
	ctx := context.Background()
	const n = 1000
	_, marks, writes := batch(n, "x", "y") // marks never written
	round := 0
	commit := testing.AllocsPerRun(5, func() {
		for i := range writes {
			writes[i].Expect = int64(round)
			writes[i].Marks[0], writes[i].Marks[1] = strconv.Itoa(2*round), strconv.Itoa(2*round+1)
		}
		round++
		if out, err := f.store.Commit(ctx, writes); err != nil || out[n-1] != Committed {
			t.Fatalf("Commit = %v, %v", out[n-1], err)
		}
	}) - 2*n // the marks' IDs made above
	calls := len(f.store.calls(writes, all(n)))
	if want := float64(50 + 3*calls); commit > want {
		t.Errorf("Commit of %d writes with %d marks in %d calls: %.0f allocations, want at most %.0f", n, 2*n, calls, commit, want)
	}
	fetch := testing.AllocsPerRun(5, func() {
		if _, _, err := f.store.Fetch(ctx, nil, marks); err != nil {
			t.Fatal(err)
		}
	})
	reads := (len(marks) + marksPerRead - 1) / marksPerRead
	if f.store.cluster {
		reads = n
	}
	if want := float64(50 + 3*reads); fetch > want {
		t.Errorf("Fetch of %d absent marks in %d reads: %.0f allocations, want at most %.0f", len(marks), reads, fetch, want)
	}
}

// all returns the indexes 0..n-1.
func all(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}
