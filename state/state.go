// Package state stores each aggregate's state together with the dedupe marks
// of the events applied to it, and changes both atomically: a mark exists
// exactly when its event's effect is durable, and a version check fences a
// worker that lost its partition but still writes (docs/contract.md,
// "Delivery guarantees", points 2 and 6).
//
// Store is the interface the runtime uses; RedisStore is the production
// implementation and MemoryStore the one for unit tests. Both pass the same
// conformance tests.
package state

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultMarkTTL is how long a dedupe mark lives when the store is given no
// positive TTL (the dedupe.ttl default).
const DefaultMarkTTL = 24 * time.Hour

// ErrCorrupt is returned when a stored state is not one this package wrote
// (e.g. a version that is not an integer). Retrying does not help.
var ErrCorrupt = errors.New("state: corrupt stored state")

// Mark identifies one applied event of one aggregate.
type Mark struct{ Aggregate, EventID string }

// Snapshot is an aggregate's stored state: Version 0 and nil Data when
// absent.
type Snapshot struct {
	Version int64
	Data    []byte
}

// Write is one aggregate's atomic change: new Data at version Expect+1
// together with the dedupe marks of the events applied, only if the stored
// version is still Expect and none of the marks exist yet.
type Write struct {
	Aggregate string
	Expect    int64
	Data      []byte
	Marks     []string // event IDs
}

// Outcome is the result of one Write.
type Outcome uint8

// The outcomes of a Write. The zero Outcome is Unknown, so that an outcome
// never learned is not mistaken for success.
const (
	// Unknown means the write may or may not have been applied (Commit
	// returned an error).
	Unknown Outcome = iota
	// Committed means the store holds the write's Data at version Expect+1
	// and all its marks. A write retried after a lost reply finds its own
	// Data and marks at Expect+1 and is reported Committed again (as is the
	// same write made by another worker that applied exactly the same
	// events), so retrying an ambiguous Commit is safe.
	Committed
	// VersionConflict means the stored version is not Expect: another
	// owner wrote the aggregate (this worker is fenced, e.g. after a
	// rebalance) or the caller's snapshot is stale. Nothing was written.
	VersionConflict
	// MarkConflict means one of the marks already exists: one of the events
	// was applied before. Nothing was written.
	MarkConflict
)

// String returns the outcome's name.
func (o Outcome) String() string {
	switch o {
	case Committed:
		return "committed"
	case VersionConflict:
		return "version_conflict"
	case MarkConflict:
		return "mark_conflict"
	default:
		return "unknown"
	}
}

// Store loads and atomically changes aggregate state and dedupe marks.
// Implementations are safe for concurrent use.
type Store interface {
	// Fetch loads the snapshots of aggs and reports, for each mark, whether
	// it exists, in one round trip. Results are in the order of the
	// arguments.
	Fetch(ctx context.Context, aggs []string, marks []Mark) ([]Snapshot, []bool, error)
	// Commit applies every write atomically per aggregate, in one round
	// trip for all writes, and returns their outcomes in order. Writes are
	// applied in order, so a second write of the same aggregate in one call
	// sees the first one's version. On error the outcomes learned so far
	// are returned with it; the others are Unknown, and an Unknown write
	// may have been applied: the caller fetches again before retrying.
	Commit(ctx context.Context, writes []Write) ([]Outcome, error)
	// Ping reports whether the store answers.
	Ping(ctx context.Context) error
}

// decide is the commit rule, shared by MemoryStore and mirrored by the Lua
// script of RedisStore.
func decide(cur Snapshot, w Write, marked func(id string) bool) Outcome {
	if cur.Version != w.Expect {
		if cur.Version == w.Expect+1 && string(cur.Data) == string(w.Data) && allMarked(w.Marks, marked) {
			return Committed // this very write, already applied
		}
		return VersionConflict
	}
	for _, id := range w.Marks {
		if marked(id) {
			return MarkConflict
		}
	}
	return Committed
}

func allMarked(ids []string, marked func(string) bool) bool {
	for _, id := range ids {
		if !marked(id) {
			return false
		}
	}
	return true
}

// IsRetryable reports whether err is worth retrying with backoff: the
// store is unreachable, loading, failing over or busy (network errors,
// timeouts, connection refused or reset, LOADING, CLUSTERDOWN, TRYAGAIN,
// MASTERDOWN, READONLY, BUSY, OOM, max clients, a pool timeout, MOVED or
// ASK while slots move, ErrReplicas). It is false
// for a canceled context, a closed client, ErrCorrupt, authentication and
// permission errors and script errors, which need a person or a shutdown.
func IsRetryable(err error) bool {
	switch {
	case err == nil,
		errors.Is(err, context.Canceled),
		errors.Is(err, redis.ErrClosed),
		errors.Is(err, ErrCorrupt),
		redis.IsAuthError(err),
		redis.IsPermissionError(err):
		return false
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, redis.ErrPoolTimeout),
		errors.Is(err, redis.ErrPoolExhausted),
		errors.Is(err, ErrReplicas),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		redis.IsLoadingError(err),
		redis.IsClusterDownError(err),
		redis.IsTryAgainError(err),
		redis.IsMasterDownError(err),
		redis.IsReadOnlyError(err),
		redis.IsMaxClientsError(err),
		redis.IsOOMError(err),
		redis.HasErrorPrefix(err, "BUSY"),
		redis.HasErrorPrefix(err, "MOVED"),
		redis.HasErrorPrefix(err, "ASK"),
		redis.HasErrorPrefix(err, "NOSCRIPT"):
		return true
	}
	var ne net.Error
	return errors.As(err, &ne)
}
