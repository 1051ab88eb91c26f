// Command arguments built in one pooled buffer per call, so that a pipeline of
// thousands of keys costs a few allocations.

package state

import (
	"context"
	"slices"
	"strconv"

	"github.com/redis/go-redis/v9"
)

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
