#!/usr/bin/env bash
# Generates helm/streamworker/README.md from README.md.gotmpl and the `# --`
# comments of values.yaml with helm-docs, at the version pinned here (built
# from the Go module proxy on first use).
#
#   bash deploy/helm-docs.sh          rewrite the README
#   bash deploy/helm-docs.sh --check  fail, with a diff, when the committed
#                                     README differs from the generated one
set -euo pipefail
helm_docs=github.com/norwoodj/helm-docs/cmd/helm-docs@v1.14.2
chart="$(cd "$(dirname "$0")/.." && pwd)/helm/streamworker"

gen() {
	(cd "$chart" && go run "$helm_docs" --chart-search-root . --sort-values-order file \
		--skip-version-footer --log-level warning "$@")
}

case "${1:-}" in
"")
	gen
	;;
--check)
	out="$(mktemp)"
	trap 'rm -f "$out"' EXIT
	gen --dry-run >"$out"
	if ! diff -u "$chart/README.md" "$out"; then
		echo "helm/streamworker/README.md differs from what helm-docs generates from README.md.gotmpl and values.yaml (above): run bash deploy/helm-docs.sh" >&2
		exit 1
	fi
	echo "ok: helm/streamworker/README.md is helm-docs' output"
	;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac
