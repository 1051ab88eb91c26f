#!/usr/bin/env bash
# Checks the observability assets that docker-compose and the Helm chart ship:
#   deploy/prometheus/alerts.yml              promtool check rules + test rules
#   deploy/grafana/dashboards/streamworker.json
#       generated from code and strictly decoded with the Grafana Foundation
#       SDK (deploy/observability/grafana, its own Go module)
#   both, against the worker's real metric names and labels: every query
#       parsed by Prometheus's PromQL parser after the Grafana variables are
#       replaced (deploy/observability, its own Go module, which builds the
#       worker from this repository through a replace directive and keeps the
#       Prometheus server module out of the worker's dependencies)
#
# Usage:
#   deploy/check-observability.sh                  run every static check
#   deploy/check-observability.sh metrics URL      lint a live /metrics scrape
#                                                  with promtool check metrics
#
# promtool comes from the Debian/Ubuntu "prometheus" package, installed when
# missing (root or sudo needed) without starting the packaged service.
set -euo pipefail

deploy_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_dir=$(cd "$deploy_dir/.." && pwd)

log() { printf '==> %s\n' "$*" >&2; }

as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@"
	else
		echo "need root or sudo to run: $*" >&2
		return 1
	fi
}

# ensure_promtool installs the prometheus package when promtool is missing.
# A policy-rc.d that answers 101 keeps invoke-rc.d and deb-systemd-invoke from
# starting the packaged server; one we create is removed again.
ensure_promtool() {
	command -v promtool >/dev/null 2>&1 && return 0
	log "promtool not found: installing the prometheus package"
	local policy=/usr/sbin/policy-rc.d created=""
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
		as_root chmod 0755 "$policy"
		created=1
	fi
	local rc=0
	as_root env DEBIAN_FRONTEND=noninteractive timeout 600 apt-get update -q </dev/null >&2 || rc=$?
	if [ "$rc" -eq 0 ]; then
		as_root env DEBIAN_FRONTEND=noninteractive timeout 900 \
			apt-get install -y -q --no-install-recommends prometheus </dev/null >&2 || rc=$?
	fi
	if [ -n "$created" ]; then
		as_root rm -f "$policy"
	fi
	if [ "$rc" -ne 0 ] || ! command -v promtool >/dev/null 2>&1; then
		echo "could not install promtool (apt-get exit $rc)" >&2
		return 1
	fi
	promtool --version 2>&1 | head -n 1 >&2
}

# Known, accepted findings of promtool check metrics, one extended regular
# expression per line. franz-go's kprom names two gauges with a _total
# suffix; the names are not ours to change.
known_metric_lint='^streamworker_kafka_buffered_(fetch|produce)_records_total non-counter metrics should not have "_total" suffix$'

# check_metrics URL: scrape URL (the worker's /metrics, the path added when
# missing) and lint it with promtool check metrics. Findings listed in
# known_metric_lint are reported but do not fail.
check_metrics() {
	local url=${1:?usage: check_metrics URL}
	case "$url" in
	*/metrics) ;;
	*) url=${url%/}/metrics ;;
	esac
	ensure_promtool
	log "promtool check metrics < $url"
	local body findings rc=0
	body=$(curl -fsS --max-time 10 "$url") || {
		echo "scrape of $url failed" >&2
		return 1
	}
	findings=$(printf '%s\n' "$body" | promtool check metrics 2>&1) || rc=$?
	if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
		# 3 is "lint problems found"; anything else is a failure to parse.
		printf '%s\n' "$findings" >&2
		return 1
	fi
	local unexpected
	unexpected=$(printf '%s\n' "$findings" | grep -v '^$' | grep -Ev "$known_metric_lint" || true)
	if [ -n "$findings" ]; then
		printf '%s\n' "$findings" >&2
	fi
	if [ -n "$unexpected" ]; then
		echo "promtool check metrics: unexpected findings above" >&2
		return 1
	fi
	log "metrics lint ok ($(printf '%s\n' "$body" | grep -c '^# TYPE') families)"
}

check_rules() {
	ensure_promtool
	log "promtool check rules deploy/prometheus/alerts.yml"
	promtool check rules "$deploy_dir/prometheus/alerts.yml"
	log "promtool test rules deploy/prometheus/alerts_test.yml"
	(cd "$deploy_dir/prometheus" && promtool test rules alerts_test.yml)
}

check_dashboard() {
	log "Grafana Foundation SDK: generated == committed, strict decode, Validate"
	(cd "$deploy_dir/observability/grafana" && go test -count=1 ./...)
}

check_names() {
	log "dashboard and alert queries against the worker's and kprom's metrics"
	(cd "$deploy_dir/observability" && go vet ./... && go test -count=1 ./...)
}

main() {
	case "${1:-all}" in
	all)
		check_rules
		check_dashboard
		check_names
		log "observability assets ok"
		;;
	rules) check_rules ;;
	dashboard) check_dashboard ;;
	names) check_names ;;
	metrics)
		shift
		check_metrics "$@"
		;;
	*)
		echo "usage: $0 [all|rules|dashboard|names|metrics URL]" >&2
		return 2
		;;
	esac
}

main "$@"
