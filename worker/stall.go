package worker

import "time"

// StallBound is how long a call to Kafka may hang, or Kafka stay silent,
// before the worker reports not ready: the group session timeout
// (kafka.session_timeout), after which the coordinator gives the member's
// partitions away anyway.
func StallBound(opts Options) time.Duration { return opts.SessionTimeout }
