package state

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
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

// RedisStore is the Store on Redis: the state of aggregate u-42 is the hash
// sw:{u-42}:state (fields v, the version, and d, the data), the mark of
// event e is the string sw:{u-42}:seen:e with a TTL. One Lua script per
// aggregate checks and writes them, and all keys of an aggregate share its
// hash tag, so it works on a single server, Sentinel and Cluster alike. On
// a single server or Sentinel one script call commits up to 256 aggregates;
// on a Cluster one call commits one.
//
// Fetch and Commit each take one pipelined round trip (one per node on a
// Cluster). Commit calls the script with EVALSHA; when Redis lost it (a
// restart, a failover, SCRIPT FLUSH) Commit loads it and retries the
// affected writes once, transparently.
//
// RedisStore is safe for concurrent use.
type RedisStore struct {
	client redis.UniversalClient
	keys   dedupe.Keys
	ttlMS  string
	script *redis.Script
	obs    Observer
	// perCall is how many aggregates one script call commits: one on a
	// Cluster (a script's keys must share a slot), more elsewhere.
	perCall int
}

// writesPerCall bounds the aggregates of one script call on a single server
// or Sentinel, so that no call holds Redis for long.
const writesPerCall = 256

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store on client with the given key names; marks
// expire after ttl (DefaultMarkTTL when ttl <= 0, at least 1ms). It does
// no I/O; call Load to check the connection and load the script up front.
func NewRedisStore(client redis.UniversalClient, keys dedupe.Keys, ttl time.Duration, opts ...Option) *RedisStore {
	if ttl <= 0 {
		ttl = DefaultMarkTTL
	}
	s := &RedisStore{
		client:  client,
		keys:    keys,
		ttlMS:   strconv.FormatInt(max(ttl.Milliseconds(), 1), 10),
		script:  redis.NewScript(commitLua),
		perCall: writesPerCall,
	}
	if _, cluster := client.(*redis.ClusterClient); cluster {
		s.perCall = 1
	}
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
	if err == nil && sha != s.script.Hash() {
		err = fmt.Errorf("SCRIPT LOAD returned %s, want %s", sha, s.script.Hash())
	}
	s.observe("script_load", start, err)
	if err != nil {
		return fmt.Errorf("state: load commit script: %w", err)
	}
	return nil
}

// Fetch implements Store with one pipeline of HMGET v d per aggregate and
// EXISTS per mark.
func (s *RedisStore) Fetch(ctx context.Context, aggs []string, marks []Mark) ([]Snapshot, []bool, error) {
	snaps := make([]Snapshot, len(aggs))
	exists := make([]bool, len(marks))
	if len(aggs)+len(marks) == 0 {
		return snaps, exists, nil
	}
	pipe := s.client.Pipeline()
	hm := make([]*redis.SliceCmd, len(aggs))
	for i, agg := range aggs {
		hm[i] = pipe.HMGet(ctx, s.keys.State(agg), "v", "d")
	}
	ex := make([]*redis.IntCmd, len(marks))
	for i, m := range marks {
		ex[i] = pipe.Exists(ctx, s.keys.Seen(m.Aggregate, m.EventID))
	}
	start := time.Now()
	_, err := pipe.Exec(ctx)
	s.observe("fetch", start, err)
	if err != nil {
		return nil, nil, fmt.Errorf("state: fetch %d aggregates, %d marks: %w", len(aggs), len(marks), err)
	}
	for i, cmd := range hm {
		if snaps[i], err = snapshot(cmd.Val()); err != nil {
			return nil, nil, fmt.Errorf("state: fetch %s: %w", aggs[i], err)
		}
	}
	for i, cmd := range ex {
		exists[i] = cmd.Val() == 1
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

// Commit implements Store with one pipeline of EVALSHA per write (plus a
// SCRIPT LOAD and a second pipeline for the writes that met NOSCRIPT).
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
// s.perCall to a script call.
func (s *RedisStore) commit(ctx context.Context, writes []Write, idx []int, out []Outcome) (noScript []int, err error) {
	if idx == nil {
		idx = make([]int, len(writes))
		for i := range idx {
			idx[i] = i
		}
	}
	pipe := s.client.Pipeline()
	var calls [][]int // the write indexes of each call
	var cmds []*redis.Cmd
	for lo := 0; lo < len(idx); lo += s.perCall {
		call := idx[lo:min(lo+s.perCall, len(idx))]
		var keys []string
		args := []any{s.ttlMS}
		for _, i := range call {
			w := writes[i]
			keys = append(keys, s.keys.State(w.Aggregate))
			for _, id := range w.Marks {
				keys = append(keys, s.keys.Seen(w.Aggregate, id))
			}
			args = append(args, len(w.Marks), strconv.FormatInt(w.Expect, 10), strconv.FormatInt(w.Expect+1, 10), w.Data)
		}
		calls = append(calls, call)
		cmds = append(cmds, s.script.EvalSha(ctx, pipe, keys, args...))
	}
	start := time.Now()
	_, _ = pipe.Exec(ctx) // errors are per command
	d := time.Since(start)
	defer func() {
		if s.obs != nil {
			s.obs.ObserveRedis("commit", d, err) // NOSCRIPT is no failure
		}
	}()
	for c, cmd := range cmds {
		call := calls[c]
		codes, cerr := cmd.Int64Slice()
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
	return noScript, err
}

func (s *RedisStore) observe(op string, start time.Time, err error) {
	if s.obs != nil {
		s.obs.ObserveRedis(op, time.Since(start), err)
	}
}
