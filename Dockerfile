# syntax=docker/dockerfile:1
# Multi-stage build of a static skewproxy binary on a distroless, non-root image.
# The build flags are the Makefile's `release` target (the test suite builds and
# runs the same binary, since no container engine runs in CI).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
# The commit time (git log -1 --format=%cI): the corrected clock never accepts
# a time before it. Empty: no floor (.git is not in the build context).
ARG BUILT=
RUN CGO_ENABLED=0 go build -trimpath \
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
