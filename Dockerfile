# syntax=docker/dockerfile:1@sha256:ecfaec9ed6d810b56388c508f4121597bfbba70d41a6dfeee4d8cad5f295fc32
#
# streamworker image: a static Go binary on distroless (no shell, no package
# manager), run as a non-root numeric user.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t streamworker .
#
# No HEALTHCHECK: Kubernetes probes /livez and /readyz on :9464, and the
# image has no shell or HTTP client to run one with.
#
# Every base image is pinned by digest (deploy/check.sh fails on a FROM
# without one), so a rebuild uses the same bytes. The digests are those of
# the multi-platform indexes of the tags written before them; the tag is
# kept for the reader. To move to a newer build of a tag, read its current
# index digest and replace the one here, then rebuild and run the tests:
#
#   docker buildx imagetools inspect golang:1.26.8 --format '{{json .Manifest.Digest}}'
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot --format '{{json .Manifest.Digest}}'
#   docker buildx imagetools inspect docker/dockerfile:1 --format '{{json .Manifest.Digest}}'
#
# (crane digest IMAGE:TAG gives the same.) Keep the golang tag at or above
# the go directive of go.mod: the official image sets GOTOOLCHAIN=local.

FROM --platform=$BUILDPLATFORM golang:1.26.8@sha256:0f063af2d465d8dcae54cce04278ada488b96f77b42449c8d071e47d016cc65a AS build
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

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
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
