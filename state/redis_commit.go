// The commit: per aggregate and atomically, the new state with the dedupe
// marks of the events applied, fenced by the expected version (commit.lua);
// grouped by hash slot on a Cluster, and ended with WAIT when replicas must
// acknowledge it.

package state

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

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
