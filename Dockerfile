# syntax=docker/dockerfile:1
#
# streamworker image: a static Go binary on distroless (no shell, no package
# manager), run as a non-root numeric user.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t streamworker .
#
# No HEALTHCHECK: Kubernetes probes /livez and /readyz on :9464, and the
# image has no shell or HTTP client to run one with.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X github.com/streamworker/streamworker/internal/buildinfo.Version=${VERSION}" \
      -o /out/streamworker ./cmd/streamworker

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="streamworker" \
      org.opencontainers.image.description="Kafka stream-processing workers: dedupe, sequencing, aggregation, anomalies, milestones" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/streamworker /streamworker
# 65532 is distroless's nonroot user; numeric so that runAsNonRoot can verify it.
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/streamworker"]
CMD ["run"]
