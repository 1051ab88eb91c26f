package topics

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Names holds the topic names the worker reads and writes.
type Names struct {
	Input      string // user-activity events (input)
	Aggregates string // per-user aggregated state (compacted)
	Milestones string // milestones reached
	Anomalies  string // anomalies detected
	DLQ        string // records that could not be processed
	Gaps       string // sequence gaps given up on
	Parked     string // events held for parked users (input.on_poison: park)
}

// DefaultNames returns the default topic names.
func DefaultNames() Names {
	return Names{
		Input:      "user.activity",
		Aggregates: "user.activity.aggregated",
		Milestones: "user.milestone.reached",
		Anomalies:  "anomaly.detected",
		DLQ:        "user.activity.dlq",
		Gaps:       "user.activity.gaps",
		Parked:     "user.activity.parked",
	}
}

// ErrInvalidTopicName is wrapped by the errors of Names.Validate.
var ErrInvalidTopicName = errors.New("invalid topic name")

// Validate checks that every name is a legal Kafka topic name (1 to 249
// characters of [a-zA-Z0-9._-], not "." or "..") and that the names are
// distinct.
func (n Names) Validate() error {
	var errs []error
	seen := make(map[string]string, 6)
	for _, f := range n.fields() {
		if err := validTopicName(f.name); err != nil {
			errs = append(errs, fmt.Errorf("topics.%s: %w", f.key, err))
			continue
		}
		if other, dup := seen[f.name]; dup {
			errs = append(errs, fmt.Errorf("topics.%s: %w: %q is also topics.%s", f.key, ErrInvalidTopicName, f.name, other))
			continue
		}
		seen[f.name] = f.key
	}
	return errors.Join(errs...)
}

type namedField struct{ key, name string }

// fields returns the names with their config keys, in a fixed order.
func (n Names) fields() []namedField {
	return []namedField{
		{"input", n.Input},
		{"aggregates", n.Aggregates},
		{"milestones", n.Milestones},
		{"anomalies", n.Anomalies},
		{"dlq", n.DLQ},
		{"gaps", n.Gaps},
		{"parked", n.Parked},
	}
}

func validTopicName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopicName)
	case len(s) > 249:
		return fmt.Errorf("%w: longer than 249 characters", ErrInvalidTopicName)
	case s == "." || s == "..":
		return fmt.Errorf("%w: %q", ErrInvalidTopicName, s)
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q has a character outside [a-zA-Z0-9._-]", ErrInvalidTopicName, s)
		}
	}
	return nil
}

// Spec is the desired shape of a topic.
type Spec struct {
	Name string
	// Partitions is the partition count; -1 means the broker default (and
	// is not checked on an existing topic).
	Partitions int32
	// ReplicationFactor is the replication factor; -1 means the broker
	// default.
	ReplicationFactor int16
	// Configs are the topic configs set on creation (cleanup.policy,
	// retention.ms, ...).
	Configs map[string]*string
}

// Topic config keys and values used by Specs.
const (
	ConfigCleanupPolicy = "cleanup.policy"
	ConfigRetentionMs   = "retention.ms"
	CleanupDelete       = "delete"
	CleanupCompact      = "compact"
)

// Retention of the delete-policy topics created by Specs.
const (
	// Retention is the retention of the input and of the output event
	// topics: long enough to replay a week.
	Retention = 7 * 24 * time.Hour
	// RetentionDLQ is the retention of the DLQ and gap topics, longer so
	// that an operator back from a long weekend can still inspect and
	// redrive.
	RetentionDLQ = 14 * 24 * time.Hour
)

// Specs returns the specs of every topic in n, each with the given partition
// count and replication factor. The aggregates topic is compacted (it holds
// the latest state per user, keyed by user ID); the other topics use the
// delete policy with Retention, except the DLQ and gaps topics which keep
// records for RetentionDLQ, and the parked topic keeps its records until
// they are deleted by hand (retention.ms -1): a held event must outlive its
// park, however long that lasts. The input, the parked topic and the aggregates topics should have
// the same partition count so that one user's records share a partition
// number in all three (the worker holds a user's events on the parked
// partition of the same number as their input partition).
func Specs(n Names, partitions int32, rf int16) []Spec {
	del := func(name string, retention time.Duration) Spec {
		return Spec{Name: name, Partitions: partitions, ReplicationFactor: rf, Configs: map[string]*string{
			ConfigCleanupPolicy: ptr(CleanupDelete),
			ConfigRetentionMs:   ptr(strconv.FormatInt(retention.Milliseconds(), 10)),
		}}
	}
	return []Spec{
		del(n.Input, Retention),
		{Name: n.Aggregates, Partitions: partitions, ReplicationFactor: rf, Configs: map[string]*string{
			ConfigCleanupPolicy: ptr(CleanupCompact),
		}},
		del(n.Milestones, Retention),
		del(n.Anomalies, Retention),
		del(n.DLQ, RetentionDLQ),
		del(n.Gaps, RetentionDLQ),
		{Name: n.Parked, Partitions: partitions, ReplicationFactor: rf, Configs: map[string]*string{
			ConfigCleanupPolicy: ptr(CleanupDelete),
			ConfigRetentionMs:   ptr("-1"),
		}},
	}
}

func ptr(s string) *string { return &s }
