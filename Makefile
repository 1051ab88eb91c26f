# The test command of the README. It needs Go and redis-server on PATH.
.PHONY: test test-short fuzz bench bench-go chaos check-deploy build lint soak

GO ?= go

test:
	$(GO) test -race -count=1 -timeout 15m ./...

test-short:
	$(GO) test -short -count=1 ./...

# Run the fuzzers for a while (their seed corpora also run in `make test`):
# the decoder, the Redis key layout, and the whole per-record path of a
# running worker (FUZZTIME each; the last reported figures are in
# RELIABILITY.md). FuzzRecord runs a record through kfake per execution, so
# minimizing each new input for the default 60s would take the whole run.
FUZZTIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./topics/
	$(GO) test -run '^$$' -fuzz '^FuzzKeys$$' -fuzztime $(FUZZTIME) ./dedupe/
	$(GO) test -run '^$$' -fuzz '^FuzzRecord$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 50x -parallel 1 ./worker/

# Go micro-benchmarks of the hot path.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./topics/ ./processors/ ./sequencing/ ./dedupe/ ./state/

# The end-to-end benchmark (see BENCHMARKS.md).
bench:
	$(GO) run ./cmd/swbench

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/streamworker ./cmd/streamworker

check-deploy:
	bash deploy/check.sh
	bash deploy/check-observability.sh

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# The fault matrix at full length (a seeded short case of each runs in
# `make test`): network faults through a TCP proxy, a 30s blackhole of
# Kafka and of Redis, broker errors, a 2-minute rebalance storm, 20 kill -9.
# The crash, rebalance and outage cases at full size on a single server, a
# Redis Cluster and Sentinel, and the master failover and resharding cases.
# SW_TEST_CHAOS_SEED=N changes the seeds; the figures are in RELIABILITY.md.
CHAOS_TESTS = TestNetworkFaults|TestAmbiguousRedisCommit|TestKafkaBlackhole|TestShutdownDuringKafkaBlackhole|TestRedisBlackhole|TestBrokerFaults|TestRebalanceStorm|TestKillNine|TestCrashRecovery|TestRebalance|TestRedisOutage|TestMasterFailover|TestLossWithoutReplicaAcks|TestReshard
chaos:
	SW_TEST_CHAOS=1 $(GO) test -count=1 -run '^($(CHAOS_TESTS))$$' -timeout 60m -v ./worker/

# The hostile soak for 10 minutes (a seeded short case runs in `make test`).
soak:
	SW_SOAK_FOR=10m $(GO) test -count=1 -run '^TestHostileSoak$$' -timeout 40m -v ./worker/
