# syntax=docker/dockerfile:1
# Multi-stage build of a static skewproxy binary on a distroless, non-root image.
# The build flags are the Makefile's `release` target (the test suite builds and
# runs the same binary, since no container engine runs in CI; the ARM builds run
# there under qemu-user).
# Multi-arch: the compiler runs on the build machine and cross-compiles for the
# target (no emulation), e.g.
#   docker buildx build --platform linux/amd64,linux/arm64,linux/arm/v7 \
#     --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse --short HEAD) \
#     --build-arg BUILT=$(git log -1 --format=%cI) -t skewproxy .
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# The commit time (git log -1 --format=%cI): the corrected clock never accepts
# a time before it. Empty: no floor (.git is not in the build context).
ARG BUILT=
# Set by BuildKit from --platform (linux/arm/v7: arm and v7); empty with the
# legacy builder, which builds for the machine it runs on.
ARG TARGETOS=linux
ARG TARGETARCH
ARG TARGETVARIANT
RUN if [ "${TARGETARCH}" = arm ]; then export GOARM="${TARGETVARIANT#v}"; fi; \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -tags urfave_cli_no_docs \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT} -X main.built=${BUILT}" \
      -o /out/skewproxy ./cmd/skewproxy

# distroless static: CA certificates, tzdata, /etc/passwd with nonroot (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/skewproxy /usr/local/bin/skewproxy
USER 65532:65532
ENV SKEWPROXY_STATE_DIR=/var/lib/skewproxy
# Containers of one pod (Kubernetes) or one awsvpc task (ECS) share loopback,
# so the defaults (127.0.0.1:8080 and 127.0.0.1:9090) serve a sidecar as is.
# To serve other containers or hosts set SKEWPROXY_LISTEN=0.0.0.0:8080 with
# SKEWPROXY_PROXY_AUTH=user:pass (or SKEWPROXY_ALLOW_UNAUTHENTICATED=true).
EXPOSE 8080 9090
VOLUME ["/var/lib/skewproxy"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/skewproxy", "healthcheck", "--admin-listen", "127.0.0.1:9090"]
ENTRYPOINT ["/usr/local/bin/skewproxy"]
CMD ["serve"]
