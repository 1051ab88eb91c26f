// Package admin provisions the topics of streamworker: it creates the ones
// that are missing and checks the ones that exist, never altering them.
//
// An existing topic with more partitions than configured is accepted with a
// warning (partitions were added out of band, for example to scale out;
// Kafka cannot remove them again). One with fewer is an error naming the
// fix, because the configured count is what the replicas and autoscaling
// were sized for.
package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/streamworker/streamworker/topics"
)

// ErrMismatch is wrapped by every *MismatchError.
var ErrMismatch = errors.New("existing topic does not match its spec")

// MismatchError reports an existing topic with fewer partitions than its
// spec, or whose cleanup policy differs from its spec. Ensure never alters
// an existing topic: the operator decides (adding partitions moves users
// between partitions, and a compacted topic turned to delete loses state).
type MismatchError struct {
	Topic   string
	Setting string // "partitions" or "cleanup.policy"
	Want    string
	Got     string
}

// Error implements error. For partitions it names both counts, the command
// that adds the missing ones and what adding them does to per-user order.
func (e *MismatchError) Error() string {
	if e.Setting == settingPartitions {
		return fmt.Sprintf("topic %s: %s partitions, fewer than the %s configured (topics.partitions): "+
			"add them with `kafka-topics --bootstrap-server <broker> --alter --topic %s --partitions %s`, "+
			"or set topics.partitions to %s. Adding partitions moves keys (users) to other partitions: "+
			"a user's records produced before and after the change may be processed out of order, "+
			"so drain the topic's backlog first (existing topics are never altered by streamworker)",
			e.Topic, e.Got, e.Want, e.Topic, e.Want, e.Got)
	}
	return fmt.Sprintf("topic %s: %s is %s, want %s (existing topics are never altered)", e.Topic, e.Setting, e.Got, e.Want)
}

const settingPartitions = "partitions"

// Unwrap returns ErrMismatch.
func (e *MismatchError) Unwrap() error { return ErrMismatch }

// Result is what Ensure found or did for one topic.
type Result struct {
	Topic string
	// Created reports that Ensure created the topic; false means it
	// existed already (or creating it failed: see Err).
	Created bool
	// Partitions and ReplicationFactor are the topic's actual values (0
	// when unknown).
	Partitions        int32
	ReplicationFactor int16
	// CleanupPolicy is the topic's actual cleanup.policy, when it was
	// checked.
	CleanupPolicy string
	// Warning, when not empty, is something an operator should know that
	// is not an error: the topic has more partitions than its spec.
	Warning string
	// Err is nil when the topic exists as specified, a *MismatchError when
	// it exists otherwise, or the error that prevented creating or
	// checking it.
	Err error
}

// Ensure creates every topic in specs that does not exist, with its
// partitions, replication factor and configs, and checks every topic that
// exists: fewer partitions than the spec's (unless the spec's is -1) or a
// cleanup.policy (when the spec sets one) that differs is reported as a
// *MismatchError naming the topic; more partitions than the spec's is
// accepted and noted in the Result's Warning. Existing topics are never
// altered.
//
// It returns one Result per spec, in order, and an error joining every
// Result's Err; a failure to reach the cluster at all returns no results.
// Ensure is idempotent, and safe against another process creating the same
// topics at the same time.
//
// Its metadata requests bypass the client's metadata cache, so a topic just
// created (by this process or another) is seen.
func Ensure(ctx context.Context, adm *kadm.Client, specs []topics.Spec) ([]Result, error) {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := listTopics(ctx, adm, names...)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}

	results := make([]Result, len(specs))
	var existing []int // indexes of specs whose topic exists
	for i, s := range specs {
		r := &results[i]
		r.Topic = s.Name
		d, ok := details[s.Name]
		switch {
		case ok && d.Err == nil:
			existing = append(existing, i)
			continue
		case ok && !errors.Is(d.Err, kerr.UnknownTopicOrPartition):
			r.Err = fmt.Errorf("describe topic %s: %w", s.Name, d.Err)
			continue
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, s.ReplicationFactor, s.Configs, s.Name)
		switch {
		case err == nil:
			r.Created = true
			r.Partitions, r.ReplicationFactor = resp.NumPartitions, resp.ReplicationFactor
		case errors.Is(err, kerr.TopicAlreadyExists):
			// Created by someone else in the meantime: check it.
			existing = append(existing, i)
		default:
			r.Err = fmt.Errorf("create topic %s: %w%s", s.Name, err, errMessage(resp.ErrMessage))
		}
	}

	if len(existing) > 0 {
		check(ctx, adm, specs, existing, details, results)
	}

	var errs []error
	for _, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return results, errors.Join(errs...)
}

// check fills the results of the existing topics specs[i], i in idx, and
// compares them with their specs.
func check(ctx context.Context, adm *kadm.Client, specs []topics.Spec, idx []int, details kadm.TopicDetails, results []Result) {
	names := make([]string, 0, len(idx))
	var relist []string
	for _, i := range idx {
		names = append(names, specs[i].Name)
		if d, ok := details[specs[i].Name]; !ok || d.Err != nil {
			relist = append(relist, specs[i].Name)
		}
	}
	if len(relist) > 0 {
		fresh, err := listTopics(ctx, adm, relist...)
		if err != nil {
			for _, i := range idx {
				results[i].Err = fmt.Errorf("describe topic %s: %w", specs[i].Name, err)
			}
			return
		}
		for t, d := range fresh {
			details[t] = d
		}
	}
	configs, configsErr := adm.DescribeTopicConfigs(ctx, names...)

	for _, i := range idx {
		s, r := specs[i], &results[i]
		d := details[s.Name]
		if d.Err != nil {
			r.Err = fmt.Errorf("describe topic %s: %w", s.Name, d.Err)
			continue
		}
		r.Partitions = int32(len(d.Partitions))
		if len(d.Partitions) > 0 {
			r.ReplicationFactor = int16(len(d.Partitions.Sorted()[0].Replicas))
		}
		var errs []error
		switch {
		case s.Partitions <= 0:
		case r.Partitions < s.Partitions:
			errs = append(errs, &MismatchError{Topic: s.Name, Setting: settingPartitions,
				Want: fmt.Sprint(s.Partitions), Got: fmt.Sprint(r.Partitions)})
		case r.Partitions > s.Partitions:
			r.Warning = fmt.Sprintf("topic %s: %d partitions, more than the %d configured (topics.partitions): "+
				"accepted; set topics.partitions to %d for replica ceilings and autoscaling to follow",
				s.Name, r.Partitions, s.Partitions, r.Partitions)
		}
		if want := s.Configs[topics.ConfigCleanupPolicy]; want != nil {
			got, err := cleanupPolicy(configs, configsErr, s.Name)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("describe configs of topic %s: %w", s.Name, err))
			case !samePolicy(got, *want):
				errs = append(errs, &MismatchError{Topic: s.Name, Setting: topics.ConfigCleanupPolicy, Want: *want, Got: got})
			}
			r.CleanupPolicy = got
		}
		r.Err = errors.Join(errs...)
	}
}

// listTopics lists topics with a direct metadata request rather than the
// client's metadata cache (kadm bypasses the cache when authorized
// operations are requested), so that a topic created moments ago is seen.
func listTopics(ctx context.Context, adm *kadm.Client, names ...string) (kadm.TopicDetails, error) {
	return adm.ListTopics(kadm.WithAuthorizedOps(ctx), names...)
}

// cleanupPolicy returns the cleanup.policy of topic in configs.
func cleanupPolicy(configs kadm.ResourceConfigs, err error, topic string) (string, error) {
	if err != nil && len(configs) == 0 {
		return "", err
	}
	rc, err := configs.On(topic, nil)
	if err != nil {
		return "", err
	}
	if rc.Err != nil {
		return "", fmt.Errorf("%w%s", rc.Err, errMessage(rc.ErrMessage))
	}
	for _, c := range rc.Configs {
		if c.Key == topics.ConfigCleanupPolicy {
			return c.MaybeValue(), nil
		}
	}
	return topics.CleanupDelete, nil // Kafka's default
}

// String describes r on one line: what was found or done, and whether it
// has a warning or an error (their texts are in Warning and Err).
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", r.Topic)
	switch {
	case r.Created:
		b.WriteString("created")
	case r.Partitions > 0:
		b.WriteString("exists")
	default:
		b.WriteString("unknown")
	}
	if r.Partitions > 0 {
		fmt.Fprintf(&b, ", %d partitions, replication factor %d", r.Partitions, r.ReplicationFactor)
	}
	if r.CleanupPolicy != "" {
		fmt.Fprintf(&b, ", cleanup.policy %s", r.CleanupPolicy)
	}
	switch {
	case r.Err != nil:
		b.WriteString(" (error)")
	case r.Warning != "":
		b.WriteString(" (warning)")
	default:
		b.WriteString(" (ok)")
	}
	return b.String()
}

// samePolicy compares two cleanup.policy lists ("compact,delete") as sets.
func samePolicy(a, b string) bool {
	split := func(s string) []string {
		var out []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(split(a), split(b))
}

func errMessage(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}
