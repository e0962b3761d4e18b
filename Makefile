# skewproxy — see README.md. `make run` starts the proxy, `make test` runs the whole suite.
SHELL := /bin/bash
# Go may live in /usr/local/go without being on PATH; MinIO is go-installed; chronyd is in /usr/sbin.
export PATH := /usr/local/go/bin:$(PATH)
export PATH := $(shell PATH="$(PATH)" go env GOPATH)/bin:/usr/sbin:$(PATH)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
# The build time the clock never goes below (the commit's time: reproducible).
BUILT   ?= $(shell git log -1 --format=%cI 2>/dev/null)
# Exactly the flags the Dockerfile builds the release binary with.
# urfave_cli_no_docs drops the CLI's man/markdown generators (unused; 0.26 MB).
# Add otlpgrpc to RELEASE_TAGS for OTLP over gRPC (default: http/protobuf).
RELEASE_TAGS  ?= urfave_cli_no_docs
RELEASE_FLAGS := -trimpath -tags "$(RELEASE_TAGS)" -ldflags "-s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.built=$(BUILT)"
# Release platforms: linux/amd64, linux/arm64, linux/arm/v7 (GOARM=7).
RELEASE_BINS  := dist/skewproxy-linux-amd64 dist/skewproxy-linux-arm64 dist/skewproxy-linux-armv7
BIN := bin/skewproxy
# Fuzz budgets are execution counts, not durations: with a duration, Go 1.26's
# fuzz coordinator can fail a clean run with a bare "context deadline exceeded"
# when the deadline races its workers (go.dev/issue/75804, fixed in Go 1.27).
FUZZTIME ?= 10000x

.PHONY: all build release run demo test test-go fuzz-short fuzz deps lint bench soak clean

all: build

build:
	go build -o $(BIN) ./cmd/skewproxy

# The release binaries, built as the Dockerfile builds them: static, trimmed,
# version stamped; dist/SHA256SUMS for `sha256sum -c`. Always rebuilt.
release:
	@mkdir -p dist
	@set -e; for out in $(RELEASE_BINS); do \
	  plat=$${out#dist/skewproxy-linux-}; arch=$$plat; goarm=; \
	  if [ "$$plat" = armv7 ]; then arch=arm; goarm=7; fi; \
	  echo "build $$out (GOARCH=$$arch$${goarm:+ GOARM=$$goarm})"; \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$goarm go build $(RELEASE_FLAGS) -o $$out ./cmd/skewproxy; \
	done
	cd dist && sha256sum $(notdir $(RELEASE_BINS)) > SHA256SUMS
	@ls -l $(RELEASE_BINS)

# Start the proxy with sane defaults: 127.0.0.1:8080 (proxy), 127.0.0.1:9090 (admin).
run: build
	./$(BIN) serve

# See it work: a host 20 minutes behind, S3 (MinIO) and NTP (chrony) on loopback,
# the AWS CLI refused straight and served through skewproxy (under a minute).
demo: deps build
	./deploy/demo/demo.sh

# Install what the tests need (idempotent: skips what is present).
deps:
	./.ci/install-deps

# The whole suite: dependencies, unit + end-to-end tests with the race detector,
# the demo (it must pass too), short fuzz runs.
test: deps test-go demo fuzz-short

test-go:
	go test -race -count=1 -timeout 12m ./...

# Each fuzz target runs $(FUZZTIME) executions (seed corpora also run in test-go).
fuzz-short:
	@set -e; for pkg in $$(go list ./...); do \
	  for t in $$(go test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$t ($(FUZZTIME))"; \
	    go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg > /tmp/skewproxy-fuzz.log 2>&1 || { cat /tmp/skewproxy-fuzz.log; exit 1; }; \
	  done; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=200000x

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	@command -v staticcheck >/dev/null || go install honnef.co/go/tools/cmd/staticcheck@latest
	staticcheck ./...

bench:
	./.ci/install-deps --bench
	./.ci/bench

soak: deps
	SKEWPROXY_SOAK=1 go test -run 'TestSoak|TestPresignE2EClampedURLLivesUntilSessionEnd' -count=1 -timeout 25m -v ./proxy/ ./cmd/skewproxy/

clean:
	rm -rf bin dist
