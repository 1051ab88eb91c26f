#!/usr/bin/env bash
# Offline checks of the deployment files: the Helm chart, docker-compose.yml,
# the Prometheus configuration and the Dockerfile's build. Needs Go; installs
# what else it needs (helm from source at the version pinned in
# deploy/check/go.mod, promtool and file from Debian). No Docker engine and
# no Kubernetes cluster are used.
#
#   bash deploy/check.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
chart=helm/streamworker
testdata=deploy/check/testdata
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

start=$SECONDS
step() { printf '\n== %s (%ds)\n' "$*" $((SECONDS - start)); }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# need COMMAND DEBIAN-PACKAGE: installs the package when COMMAND is missing.
# A policy-rc.d answering 101 keeps the package's service (prometheus has
# one) from starting; one created here is removed again.
apt_updated=
need() {
	command -v "$1" >/dev/null 2>&1 && return
	local policy=/usr/sbin/policy-rc.d created=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && created=1
	fi
	if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" </dev/null >/dev/null
	[ -z "$created" ] || rm -f "$policy"
	command -v "$1" >/dev/null 2>&1 || fail "installing $2 gave no $1"
}

# helm, without the loader's note on each symlink it follows (files/ links
# to the dashboard and alert rules under deploy/).
h() { helm "$@" 2> >(grep -v 'found symbolic link in path' >&2); }

# expect_fail PATTERN COMMAND...: COMMAND must fail with PATTERN in its output.
expect_fail() {
	local pattern=$1 out
	shift
	if out=$("$@" 2>&1); then
		fail "expected failure, but it passed: $*"
	fi
	grep -q -- "$pattern" <<<"$out" || fail "$* failed without mentioning '$pattern':
$out"
	local shown="$*"
	echo "ok (rejected as expected): ${shown/#h /helm }"
}

step "helm"
if ! command -v helm >/dev/null 2>&1; then
	# Built from source in deploy/check's module, which pins helm.sh/helm/v3
	# (its tool directive): the same packages as the Go checks below, so they
	# compile once. The -X flags are those of Helm's release builds: without
	# them helm reports version v3.22 and assumes Kubernetes 1.20.
	gobin="$(go env GOPATH)/bin"
	(
		cd deploy/check
		ver=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
		kminor=$(go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
		x=''
		for pkg in pkg/chartutil pkg/lint/rules; do
			x="$x -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$kminor"
		done
		go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$ver$x" \
			-o "$gobin/helm" helm.sh/helm/v3/cmd/helm
	)
	PATH="$gobin:$PATH"
fi
helm version --short

step "helm lint --strict, helm template"
for values in "" "$chart/ci/all-enabled-values.yaml"; do
	args=()
	[ -n "$values" ] && args=(-f "$values")
	h lint --strict "${args[@]}" "$chart"
	out=$(h template streamworker "$chart" "${args[@]}" --kube-version 1.30.0 \
		--api-versions monitoring.coreos.com/v1 --api-versions keda.sh/v1alpha1)
	grep -q '^kind: Deployment$' <<<"$out" || fail "helm template ${args[*]}: no Deployment"
done
h lint --strict --set autoscaling.enabled=true "$chart"

step "values the chart must reject"
expect_fail replicaCount h lint --strict --set-string replicaCount=two "$chart"
expect_fail replicaCount h template "$chart" -f "$testdata/replica-count-string.yaml"
expect_fail limts h lint --strict -f "$testdata/misspelled-resources.yaml" "$chart"
expect_fail gruop h lint --strict -f "$testdata/config-typo.yaml" "$chart"
expect_fail password h template "$chart" --set config.kafka.sasl.password=secret
expect_fail 'mutually exclusive' h template "$chart" --set keda.enabled=true --set autoscaling.enabled=true

step "render, strict-decode into Kubernetes 1.30 / prometheus-operator / KEDA types, cross-checks, compose (deploy/check)"
(cd deploy/check && go vet ./... && go test -count=1 ./...)

step "configuration keys in docker-compose.yml and the chart's values (deploy)"
go test -count=1 ./deploy/

step "promtool check config (Prometheus of docker-compose)"
need promtool prometheus
promtool check config deploy/prometheus/prometheus.yml

step "Dockerfile: every base image pinned by digest"
# unpinned FILE: prints each FROM (and the # syntax= frontend) of FILE whose
# image is not pinned by @sha256:<64 hex>; a FROM naming an earlier stage
# needs none.
unpinned() {
	awk '
	BEGIN { IGNORECASE = 1 }
	NR == 1 && /^#[[:space:]]*syntax[[:space:]]*=/ {
		if ($0 !~ /@sha256:[0-9a-f]{64}[[:space:]]*$/) print FILENAME ":" NR ": " $0
		next
	}
	/^[[:space:]]*FROM[[:space:]]/ {
		image = ""
		for (i = 2; i <= NF; i++) if ($i !~ /^--/) { image = $i; break }
		for (i = 1; i < NF; i++) if (tolower($i) == "as") stage[tolower($(i + 1))] = 1
		if (!(tolower(image) in stage) && image !~ /@sha256:[0-9a-f]{64}$/) print FILENAME ":" NR ": " $0
	}' "$1"
}
bad=$(unpinned Dockerfile)
[ -z "$bad" ] || fail "base images not pinned by digest (see the Dockerfile's comment on refreshing digests):
$bad"
grep -E '^[[:space:]]*FROM[[:space:]]' Dockerfile
# The check itself: an unpinned FROM, a digest of the wrong length and an
# unpinned frontend are each found.
for edit in '/^FROM --platform/s/@sha256:[0-9a-f]*//' 's/\(nonroot@sha256:[0-9a-f]*\)[0-9a-f]/\1/' '1s/@sha256:[0-9a-f]*//'; do
	sed "$edit" Dockerfile >"$work/Dockerfile.bad"
	[ -n "$(unpinned "$work/Dockerfile.bad")" ] || fail "the digest check missed an unpinned image (sed '$edit')"
done
echo "ok: every FROM is pinned; an unpinned copy is caught"

step "static binary, built as the Dockerfile builds it, from the context .dockerignore leaves"
flags='-s -w -X github.com/streamworker/streamworker/internal/buildinfo.Version='
for want in 'CGO_ENABLED=0' 'go build -trimpath' "$flags" './cmd/streamworker'; do
	grep -qF -- "$want" Dockerfile || fail "Dockerfile's build no longer has: $want"
done
# tar excludes a pattern at any depth, Docker only where it is anchored, so
# the copy lacks at least what the image's build context lacks.
sed -e '/^#/d' -e '/^[[:space:]]*$/d' -e 's|^\*\*/||' .dockerignore >"$work/exclude"
mkdir "$work/context"
tar -C "$root" --exclude-from="$work/exclude" -cf - . | tar -C "$work/context" -xf -
(cd "$work/context" && CGO_ENABLED=0 go build -trimpath -ldflags "${flags}check" -o "$work/streamworker" ./cmd/streamworker)
need file file
kind=$(file -b "$work/streamworker")
echo "$kind"
grep -q 'statically linked' <<<"$kind" || fail "streamworker is not statically linked: $kind"
"$work/streamworker" version | grep -q check || fail "streamworker version does not print the stamped version"

step "the chart's rendered configuration passes streamworker config check"
h template streamworker "$chart" --show-only templates/configmap.yaml >"$work/configmap.yaml"
awk '/^  config.yaml: \|/ {on=1; next} on && /^    / {print substr($0, 5); next} on {exit}' \
	"$work/configmap.yaml" >"$work/config.yaml"
[ -s "$work/config.yaml" ] || fail "no config.yaml in the rendered ConfigMap"
"$work/streamworker" config check --config "$work/config.yaml" >"$work/config-check.out" ||
	fail "streamworker config check rejects the chart's default configuration: $(cat "$work/config-check.out")"
echo "ok: streamworker config check --config <rendered ConfigMap>"

printf '\ndeploy/check.sh: all checks passed in %ds\n' $((SECONDS - start))
