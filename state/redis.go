package state

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/streamworker/streamworker/dedupe"
)

//go:embed commit.lua
var commitLua string

// Observer is told about every round trip to Redis; op is "fetch",
// "commit" or "script_load". Implementations must be safe for concurrent use
// and fast (e.g. observe a Prometheus histogram and count errors).
type Observer interface {
	ObserveRedis(op string, d time.Duration, err error)
}

// Option configures a RedisStore.
type Option func(*RedisStore)

// WithObserver reports every round trip to o (nil: none).
func WithObserver(o Observer) Option { return func(s *RedisStore) { s.obs = o } }

// WithReplicaAcks makes every Commit end with WAIT n timeout on each master
// it wrote to, in the same pipeline as its writes (WAIT counts the writes of
// its own connection), and fail with ErrReplicas when fewer than n replicas
// acknowledged them within timeout. n <= 0 does not wait.
func WithReplicaAcks(n int, timeout time.Duration) Option {
	return func(s *RedisStore) { s.acks, s.ackTimeout = max(n, 0), timeout }
}

// ErrReplicas is returned by Commit when fewer replicas than WithReplicaAcks
// asks for acknowledged its writes in time. The writes are on the master
// but may be lost if it fails now; retrying the Commit is safe (it finds
// its own writes, writes them again and waits again).
var ErrReplicas = errors.New("state: too few replicas acknowledged the commit")

// RedisStore is the Store on Redis: the state of aggregate u-42 is the hash
// sw:{u-42}:state (fields v, the version, and d, the data), the mark of
// event e is the string sw:{u-42}:seen:e with a TTL. One Lua script per
// aggregate checks and writes them, and all keys of an aggregate share its
// hash tag, so it works on a single server, Sentinel and Cluster alike. On
// a single server or Sentinel one script call commits up to 256 aggregates;
// on a Cluster one call commits the aggregates of one hash slot (up to 256).
//
// Fetch and Commit each take one pipelined round trip (one per node on a
// Cluster). Commit calls the script with EVALSHA; when Redis lost it (a
// restart, a failover, SCRIPT FLUSH) Commit loads it and retries the
// affected writes once, transparently.
//
// RedisStore is safe for concurrent use.
type RedisStore struct {
	client  redis.UniversalClient
	keys    dedupe.Keys
	ttlMS   string
	sha     string // of commitLua
	obs     Observer
	cluster bool // the client is a ClusterClient
	// acks replicas must acknowledge each Commit within ackTimeout (WAIT).
	acks       int
	ackTimeout time.Duration
	bufs       sync.Pool // of *scratch
}

// writesPerCall bounds the aggregates of one script call on a single server
// or Sentinel, so that no call holds Redis for long.
const writesPerCall = 256

// marksPerRead bounds the marks one MGET reads on a single server or
// Sentinel.
const marksPerRead = 512

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store on client with the given key names; marks
// expire after ttl (DefaultMarkTTL when ttl <= 0, at least 1ms). It does
// no I/O; call Load to check the connection and load the script up front.
func NewRedisStore(client redis.UniversalClient, keys dedupe.Keys, ttl time.Duration, opts ...Option) *RedisStore {
	if ttl <= 0 {
		ttl = DefaultMarkTTL
	}
	s := &RedisStore{
		client: client,
		keys:   keys,
		ttlMS:  strconv.FormatInt(max(ttl.Milliseconds(), 1), 10),
		sha:    redis.NewScript(commitLua).Hash(),
	}
	_, s.cluster = client.(*redis.ClusterClient)
	for _, o := range opts {
		o(s)
	}
	return s
}

// Load loads the commit script into Redis (every node of a Cluster).
// Commit does it on demand; calling Load at startup surfaces a connection or
// permission problem early.
func (s *RedisStore) Load(ctx context.Context) error {
	start := time.Now()
	sha, err := s.client.ScriptLoad(ctx, commitLua).Result()
	if err == nil && sha != s.sha {
		err = fmt.Errorf("SCRIPT LOAD returned %s, want %s", sha, s.sha)
	}
	s.observe("script_load", start, err)
	if err != nil {
		return fmt.Errorf("state: load commit script: %w", err)
	}
	return nil
}

// Fetch implements Store with one pipeline of HMGET v d per aggregate and
// MGET of the marks (up to 512 a command on a single server or Sentinel; on
// a Cluster one command per run of marks of the same aggregate, whose keys
// share a slot).
func (s *RedisStore) Fetch(ctx context.Context, aggs []string, marks []Mark) ([]Snapshot, []bool, error) {
	snaps := make([]Snapshot, len(aggs))
	exists := make([]bool, len(marks))
	if len(aggs)+len(marks) == 0 {
		return snaps, exists, nil
	}
	b := s.getScratch()
	defer s.putScratch(b)
	for _, agg := range aggs {
		b.arena = s.keys.AppendState(b.arena, agg)
		b.end()
	}
	// A new MGET starts every marksPerRead marks and, on a Cluster, with
	// every aggregate.
	newRead := func(i int) bool {
		return i%marksPerRead == 0 || s.cluster && marks[i].Aggregate != marks[i-1].Aggregate
	}
	reads := 0
	for i, m := range marks {
		if newRead(i) {
			reads++
		}
		b.arena = s.keys.AppendSeen(b.arena, m.Aggregate, m.EventID)
		b.end()
	}
	b.seal(4*len(aggs) + reads + len(marks))

	pipe := s.client.Pipeline()
	hm := make([]*redis.SliceCmd, len(aggs))
	for i := range aggs {
		hm[i] = redis.NewSliceCmd(ctx, b.command("hmget", b.next(), "v", "d")...)
		hm[i].SetFirstKeyPos(1)
		_ = pipe.Process(ctx, hm[i])
	}
	mg := make([]*redis.StringSliceCmd, 0, reads)
	for i := range marks {
		if newRead(i) {
			if i > 0 {
				mg = append(mg, b.mget(ctx, pipe))
			}
			b.start("mget")
		}
		b.args = append(b.args, b.next())
	}
	if len(marks) > 0 {
		mg = append(mg, b.mget(ctx, pipe))
	}
	start := time.Now()
	_, err := pipe.Exec(ctx)
	s.observe("fetch", start, err)
	if err != nil {
		s.reloadSlots(ctx, err)
		return nil, nil, fmt.Errorf("state: fetch %d aggregates, %d marks: %w", len(aggs), len(marks), err)
	}
	for i, cmd := range hm {
		if snaps[i], err = snapshot(cmd.Val()); err != nil {
			return nil, nil, fmt.Errorf("state: fetch %s: %w", aggs[i], err)
		}
	}
	i := 0
	for _, cmd := range mg {
		for _, v := range cmd.Val() {
			exists[i] = v != "" // a mark's value is "1"; "" is a missing key
			i++
		}
	}
	if i != len(marks) {
		return nil, nil, fmt.Errorf("%w: MGET returned %d values for %d marks", ErrCorrupt, i, len(marks))
	}
	return snaps, exists, nil
}

// snapshot decodes the reply of HMGET v d.
func snapshot(vals []any) (Snapshot, error) {
	var snap Snapshot
	if len(vals) != 2 {
		return snap, fmt.Errorf("%w: HMGET returned %d values", ErrCorrupt, len(vals))
	}
	if v, ok := vals[0].(string); ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return snap, fmt.Errorf("%w: version %q", ErrCorrupt, v)
		}
		snap.Version = n
	}
	if d, ok := vals[1].(string); ok {
		snap.Data = []byte(d)
	}
	return snap, nil
}

// Commit implements Store with one pipeline of EVALSHA calls, each for up to
// 256 writes (on a Cluster, of one hash slot), plus a SCRIPT LOAD and a
// second pipeline for the writes that met NOSCRIPT. With WithReplicaAcks
// each pipeline ends with WAIT; on a Cluster it then goes to each master
// the writes' slots map to, and a write that meets MOVED or ASK (slots
// moving) fails retryably after the client reloads the slot map.
func (s *RedisStore) Commit(ctx context.Context, writes []Write) ([]Outcome, error) {
	out := make([]Outcome, len(writes))
	if len(writes) == 0 {
		return out, nil
	}
	retry, err := s.commit(ctx, writes, nil, out)
	if err != nil || len(retry) == 0 {
		return out, err
	}
	if err := s.Load(ctx); err != nil {
		return out, fmt.Errorf("state: commit %d writes: %w", len(writes), err)
	}
	retry, err = s.commit(ctx, writes, retry, out)
	if err == nil && len(retry) > 0 {
		err = fmt.Errorf("state: commit %d writes: %w", len(retry), redis.ErrNoScript)
	}
	return out, err
}

// commit sends the writes at indexes idx (all writes when idx is nil) in one
// pipeline, fills out, and returns the indexes that met NOSCRIPT. Writes go
// to script calls as s.calls groups them.
func (s *RedisStore) commit(ctx context.Context, writes []Write, idx []int, out []Outcome) (noScript []int, err error) {
	if idx == nil {
		idx = make([]int, len(writes))
		for i := range idx {
			idx[i] = i
		}
	}
	b := s.getScratch()
	defer s.putScratch(b)
	// The pieces of every call, in the order its arguments take them:
	// numkeys, the keys of each write, then three numbers per write.
	nargs := 0
	calls := s.calls(writes, idx)
	for _, call := range calls {
		nkeys := 0
		for _, i := range call {
			nkeys += 1 + len(writes[i].Marks)
		}
		b.number(int64(nkeys))
		for _, i := range call {
			w := &writes[i]
			b.arena = s.keys.AppendState(b.arena, w.Aggregate)
			b.end()
			for _, id := range w.Marks {
				b.arena = s.keys.AppendSeen(b.arena, w.Aggregate, id)
				b.end()
			}
		}
		for _, i := range call {
			w := &writes[i]
			b.number(int64(len(w.Marks)))
			b.number(w.Expect)
			b.number(w.Expect + 1)
		}
		nargs += 4 + nkeys + 4*len(call) // evalsha, sha, numkeys, ttl, the keys, 4 per write
	}
	b.seal(nargs)
	b.data = slices.Grow(b.data, len(idx))

	cmds := make([]*redis.IntSliceCmd, 0, len(calls))
	var firstKeys []string // of each call, to find its master (Cluster with WAIT)
	for _, call := range calls {
		b.start("evalsha")
		b.args = append(b.args, &s.sha, b.next())
		for _, i := range call {
			for range 1 + len(writes[i].Marks) {
				b.args = append(b.args, b.next())
			}
		}
		b.args = append(b.args, &s.ttlMS)
		for _, i := range call {
			b.data = append(b.data, rawArg{writes[i].Data})
			b.args = append(b.args, b.next(), b.next(), b.next(), &b.data[len(b.data)-1])
		}
		cmd := redis.NewIntSliceCmd(ctx, b.take()...)
		cmd.SetFirstKeyPos(3)
		cmds = append(cmds, cmd)
		if s.cluster && s.acks > 0 {
			firstKeys = append(firstKeys, *cmd.Args()[3].(*string))
		}
	}
	start := time.Now()
	waitErr := s.exec(ctx, cmds, firstKeys)
	d := time.Since(start)
	defer func() {
		if s.obs != nil {
			s.obs.ObserveRedis("commit", d, err) // NOSCRIPT is no failure
		}
		s.reloadSlots(ctx, err)
	}()
	for c, call := range calls {
		codes, cerr := cmds[c].Result()
		if redis.HasErrorPrefix(cerr, "NOSCRIPT") {
			noScript = append(noScript, call...)
			continue
		}
		if cerr == nil && len(codes) != len(call) {
			cerr = fmt.Errorf("%w: commit script returned %d codes for %d writes", ErrCorrupt, len(codes), len(call))
		}
		for j, i := range call {
			if cerr == nil && (codes[j] < int64(Committed) || codes[j] > int64(MarkConflict)) {
				cerr = fmt.Errorf("%w: commit script returned %d", ErrCorrupt, codes[j])
			}
			if cerr != nil {
				if err == nil {
					err = fmt.Errorf("state: commit %s: %w", writes[i].Aggregate, cerr)
				}
				continue
			}
			out[i] = Outcome(codes[j])
		}
	}
	if err == nil && len(noScript) == 0 && waitErr != nil {
		err = fmt.Errorf("state: commit %d writes: %w", len(idx), waitErr)
	}
	return noScript, err
}

// calls groups the writes at idx into script calls of up to writesPerCall
// writes, in order; on a Cluster a call holds the writes of one hash slot
// (a script's keys must share one), keeping their order within it.
func (s *RedisStore) calls(writes []Write, idx []int) [][]int {
	if !s.cluster {
		return slices.Collect(slices.Chunk(idx, writesPerCall))
	}
	var calls [][]int
	open := map[uint16]int{} // slot -> its call being filled
	for _, i := range idx {
		slot := s.keys.Slot(writes[i].Aggregate)
		c, ok := open[slot]
		if !ok || len(calls[c]) == writesPerCall {
			c = len(calls)
			calls = append(calls, nil)
			open[slot] = c
		}
		calls[c] = append(calls[c], i)
	}
	return calls
}

// exec sends the script calls and, with WithReplicaAcks, the WAIT after
// them, and returns the WAIT's failure (the calls' own errors are in cmds).
func (s *RedisStore) exec(ctx context.Context, cmds []*redis.IntSliceCmd, firstKeys []string) error {
	if s.acks == 0 || !s.cluster {
		pipe := s.client.Pipeline()
		for _, cmd := range cmds {
			_ = pipe.Process(ctx, cmd)
		}
		var wait *redis.IntCmd
		if s.acks > 0 {
			wait = s.wait(ctx, pipe)
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		if wait == nil {
			return nil
		}
		return s.checkWait(wait, "")
	}
	// A Cluster client would send a WAIT to any node: send each master the
	// calls of its slots, then the WAIT, on one connection of its own.
	cc := s.client.(*redis.ClusterClient)
	byNode := map[*redis.Client][]*redis.IntSliceCmd{}
	for i, cmd := range cmds {
		node, err := cc.MasterForKey(ctx, firstKeys[i])
		if err != nil {
			cmd.SetErr(err)
			continue
		}
		byNode[node] = append(byNode[node], cmd)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		waitErr error
		moved   atomic.Bool
	)
	for node, cmds := range byNode {
		wg.Go(func() {
			pipe := node.Pipeline()
			for _, cmd := range cmds {
				_ = pipe.Process(ctx, cmd)
			}
			wait := s.wait(ctx, pipe)
			_, _ = pipe.Exec(ctx)
			for _, cmd := range cmds {
				if err := cmd.Err(); redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") {
					moved.Store(true)
				}
			}
			if err := s.checkWait(wait, node.Options().Addr); err != nil {
				mu.Lock()
				waitErr = cmp.Or(waitErr, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if moved.Load() {
		cc.ReloadState(ctx)
	}
	return waitErr
}

// wait queues WAIT acks timeout (whose reply comes within the client's
// read timeout: the configuration keeps ackTimeout below it).
func (s *RedisStore) wait(ctx context.Context, pipe redis.Pipeliner) *redis.IntCmd {
	cmd := redis.NewIntCmd(ctx, "wait", s.acks, max(s.ackTimeout.Milliseconds(), 1))
	_ = pipe.Process(ctx, cmd)
	return cmd
}

// checkWait turns a WAIT reply into nil or an error.
func (s *RedisStore) checkWait(wait *redis.IntCmd, node string) error {
	n, err := wait.Result()
	switch {
	case err != nil:
		return fmt.Errorf("WAIT %d on %s: %w", s.acks, cmp.Or(node, "the master"), err)
	case n < int64(s.acks):
		return fmt.Errorf("%w: %d of %d within %v on %s", ErrReplicas, n, s.acks, s.ackTimeout, cmp.Or(node, "the master"))
	}
	return nil
}

// Ping implements Store with a PING (on a Cluster, of the node the client
// routes it to; the fetch and commit pipelines report the other nodes'
// failures).
func (s *RedisStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := s.client.Ping(ctx).Err()
	s.observe("ping", start, err)
	s.reloadSlots(ctx, err)
	return err
}

// reloadSlots has a Cluster client reload its slot map (in the background)
// after a failure Redis did not answer with a redirect: the Cluster client
// reloads it by itself only on MOVED, READONLY, or once a minute, so without
// this it keeps sending a dead master's slots to the dead master for up to a
// minute after its replica took them over.
func (s *RedisStore) reloadSlots(ctx context.Context, err error) {
	if s.cluster && err != nil && IsRetryable(err) {
		s.client.(*redis.ClusterClient).ReloadState(ctx)
	}
}

func (s *RedisStore) observe(op string, start time.Time, err error) {
	if s.obs != nil {
		s.obs.ObserveRedis(op, time.Since(start), err)
	}
}

// scratch holds the arguments of one Fetch or Commit: the keys and numbers
// of its commands are appended to one arena, which becomes one string whose
// pieces the commands take as *string arguments (a pointer fits in an
// interface without an allocation). A batch so costs a few allocations
// instead of a string, a boxed interface and a copy per key. RedisStore
// pools them; nothing in one outlives the call that used it (go-redis has
// written the commands and read the replies by the time Exec returns).
type scratch struct {
	arena []byte
	ends  []int    // end of each piece in arena
	strs  []string // the pieces, once sealed
	n     int      // pieces handed out by next
	args  []any    // arguments of every command; each command owns a window
	from  int      // where the command being built starts in args
	data  []rawArg // the writes' data, addressed from args
}

// rawArg hands go-redis a []byte argument through a pointer, which fits in
// an interface without an allocation (a slice does not).
type rawArg struct{ b []byte }

// MarshalBinary returns the bytes unchanged; go-redis writes them as a bulk
// string.
func (r *rawArg) MarshalBinary() ([]byte, error) { return r.b, nil }

// end closes the piece appended to the arena since the previous end.
func (b *scratch) end() { b.ends = append(b.ends, len(b.arena)) }

// number appends n in decimal as a piece.
func (b *scratch) number(n int64) {
	b.arena = strconv.AppendInt(b.arena, n, 10)
	b.end()
}

// seal turns the pieces into strings, all sharing one allocation, and
// makes room for nargs command arguments so that the windows handed to
// commands are never moved.
func (b *scratch) seal(nargs int) {
	all := string(b.arena)
	from := 0
	for _, e := range b.ends {
		b.strs = append(b.strs, all[from:e])
		from = e
	}
	b.args = slices.Grow(b.args, nargs)
}

// next returns the next piece as a command argument.
func (b *scratch) next() *string {
	b.n++
	return &b.strs[b.n-1]
}

// start begins a command named name (lower case, as go-redis expects).
func (b *scratch) start(name string) {
	b.from = len(b.args)
	b.args = append(b.args, name)
}

// take returns the arguments of the command begun by start.
func (b *scratch) take() []any { return b.args[b.from:len(b.args):len(b.args)] }

// command returns the arguments of one command.
func (b *scratch) command(name string, rest ...any) []any {
	b.start(name)
	b.args = append(b.args, rest...)
	return b.take()
}

// mget queues an MGET of the marks appended since start.
func (b *scratch) mget(ctx context.Context, pipe redis.Pipeliner) *redis.StringSliceCmd {
	cmd := redis.NewStringSliceCmd(ctx, b.take()...)
	cmd.SetFirstKeyPos(1)
	_ = pipe.Process(ctx, cmd)
	return cmd
}

func (s *RedisStore) getScratch() *scratch {
	if b, ok := s.bufs.Get().(*scratch); ok {
		return b
	}
	return new(scratch)
}

// putScratch forgets what b points to (the arena's string, the callers' data)
// and pools it.
func (s *RedisStore) putScratch(b *scratch) {
	clear(b.strs)
	clear(b.args)
	clear(b.data)
	*b = scratch{arena: b.arena[:0], ends: b.ends[:0], strs: b.strs[:0], args: b.args[:0], data: b.data[:0]}
	s.bufs.Put(b)
}
