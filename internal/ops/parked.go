package ops

// Parked users (docs/contract.md, "Parked users"): listing them from their
// stored state, and releasing one with a control record.

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamworker/streamworker/dedupe"
	"github.com/streamworker/streamworker/processors"
	"github.com/streamworker/streamworker/state"
	"github.com/streamworker/streamworker/worker"
)

// ErrNotParked is returned by Release for a user that is not parked.
var ErrNotParked = errors.New("the user is not parked")

// ParkedUser is one parked user and its park.
type ParkedUser struct {
	User string
	processors.Park
}

// scanBatch is how many keys one SCAN step asks for, and how many states
// one pipelined read fetches.
const scanBatch = 500

// ListParked calls fn with every parked user of the state namespace keys
// in rc: it scans the state keys (every master of a Cluster) and decodes
// each state. It reads every user's state once, so it takes a while on a
// large namespace, and it does not block Redis for long (SCAN).
func ListParked(ctx context.Context, rc redis.UniversalClient, keys dedupe.Keys, fn func(ParkedUser) error) error {
	scan := func(ctx context.Context, c redis.Cmdable) error { return scanParked(ctx, c, keys, fn) }
	if cc, ok := rc.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	}
	return scan(ctx, rc)
}

func scanParked(ctx context.Context, c redis.Cmdable, keys dedupe.Keys, fn func(ParkedUser) error) error {
	pattern := globEscape(keys.Prefix) + ":{*}:state"
	if keys.Prefix == "" {
		pattern = dedupe.DefaultPrefix + ":{*}:state"
	}
	var cursor uint64
	for {
		found, next, err := c.Scan(ctx, cursor, pattern, scanBatch).Result()
		if err != nil {
			return err
		}
		var users []string
		var cmds []*redis.StringCmd
		pipe := c.Pipeline()
		for _, key := range found {
			if u, ok := keys.ParseState(key); ok {
				users = append(users, u)
				cmds = append(cmds, pipe.HGet(ctx, key, "d"))
			}
		}
		if len(cmds) > 0 {
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return err
			}
		}
		for i, cmd := range cmds {
			data, err := cmd.Bytes()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return err
			}
			var st processors.State
			if err := st.UnmarshalBinary(data); err != nil {
				return fmt.Errorf("state of %q: %w", users[i], err)
			}
			if st.Park != nil {
				if err := fn(ParkedUser{User: users[i], Park: *st.Park}); err != nil {
					return err
				}
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

// globEscape escapes the characters SCAN's MATCH treats specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Release sends the control record that releases user to the input topic,
// on the partition where the user was parked (its held events are on the
// parked partition of that number), after checking in the store that the
// user is parked. It returns the park and the control record as produced.
// The worker applies the release in order with the user's events; a
// release of a user no longer parked by then is a no-op.
func Release(ctx context.Context, cl *kgo.Client, store state.Store, input, user string) (processors.Park, *kgo.Record, error) {
	snaps, _, err := store.Fetch(ctx, []string{user}, nil)
	if err != nil {
		return processors.Park{}, nil, err
	}
	var st processors.State
	if len(snaps[0].Data) > 0 {
		if err := st.UnmarshalBinary(snaps[0].Data); err != nil {
			return processors.Park{}, nil, fmt.Errorf("state of %q: %w", user, err)
		}
	}
	if st.Park == nil {
		return processors.Park{}, nil, fmt.Errorf("%q: %w", user, ErrNotParked)
	}
	rec := &kgo.Record{Topic: input, Partition: st.Park.Partition, Key: []byte(user), Value: []byte(worker.ControlRelease),
		Headers: []kgo.RecordHeader{{Key: worker.ControlHeader, Value: []byte(worker.ControlRelease)}}}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return *st.Park, nil, err
	}
	return *st.Park, rec, nil
}
