module github.com/streamworker/streamworker/deploy/observability/grafana

go 1.26.0

require github.com/grafana/grafana-foundation-sdk/go v0.0.12
