package state

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync"
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
