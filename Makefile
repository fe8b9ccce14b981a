# shoal — build, test, benchmark.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
BIN := bin/shoal

.PHONY: image check-recipes all build test unit e2e lint deps lab lab-down bench bench-store bench-pods bench-sched bench-lb chaos fuzz proto clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/shoal

# The test command of the README and of .ci/run: unit tests, in-process
# cluster tests, then end-to-end tests of the built binary.
test: deps lint check-recipes unit e2e

unit:
	$(GO) test -race -count=1 ./api/... ./cluster/... ./scheduler/... ./agent/... ./lb/... ./lab/... ./cmd/...

# The short chaos run goes on its own, verbose, so that its seeds and its
# summary (operations checked, faults, acknowledged-then-lost) are printed
# also when it passes.
e2e: build
	SHOAL_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 20m -skip '^TestChaosShort$$' ./e2e/...
	SHOAL_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 10m -run '^TestChaosShort$$' -v ./e2e/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Installs the Debian packages the tests and benchmarks need (as root).
deps:
	@bash hack/deps.sh

# The quick start: a 3-host lab cluster in network namespaces on this
# machine (as root), the example Deployment and Service applied, each pod
# answering. It stays up until `make lab-down`.
lab: deps build
	@bash hack/lab.sh up

lab-down:
	@bash hack/lab.sh down

bench: bench-store bench-pods bench-sched bench-lb

# Writes/s and p50/p99 of small object writes through the API of a 3-node
# loopback cluster against etcd 3.4 (one member and three), same run, fsync
# on for both, then SIGKILL of each leader to the next accepted write. Prints
# a markdown table with ratios: a figure, never a test. About 2.5 minutes.
#   make bench-store BENCH_STORE_FLAGS="-duration 20s -out store.md"
#   make bench-store BENCH_STORE_FLAGS="-profile /tmp/prof"
BENCH_STORE_FLAGS ?=
bench-store: build
	$(GO) run ./e2e/bench/storebench -shoal $(CURDIR)/$(BIN) $(BENCH_STORE_FLAGS)

# Pods on one node of an in-process cluster with a private containerd, pod
# network and registry (as root, with the packages of `make deps`): apply →
# Running+Ready of one pod, p50/p99 over 30 runs, interleaved with `ctr run
# --rm` of the same image against the same containerd, with the ratio and
# where the time goes; then 30 pods in one Apply until all are Ready, 3
# rounds. Prints markdown tables: a figure, never a test. About 1 minute.
# It uses the API address of the agent package's tests (127.0.10.1:7443):
# not while those run.
#   make bench-pods BENCH_PODS_FLAGS="-bench-pods-runs 50 -bench-pods-out $PWD/pods.md"
#   make bench-pods BENCH_PODS_FLAGS="-bench-pods-burst 50 -bench-pods-rounds 5"
BENCH_PODS_FLAGS ?=
bench-pods:
	$(GO) test ./agent -run '^$$' -bench 'BenchmarkPods' -benchtime 1x -count 1 -timeout 15m -args $(BENCH_PODS_FLAGS)

# The container image: the agent on Debian 12 slim with the CNI plugins and
# iptables. Needs Docker with BuildKit (buildx, or Docker 20.10) and network
# access to pull golang:1.26-bookworm and debian:bookworm-slim.
IMAGE ?= shoal
image:
	DOCKER_BUILDKIT=1 docker build --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) .

# Checks the Vagrantfile, the multipass recipe, provision.sh and the
# Dockerfile on a machine that cannot run them (hack/check-recipes.sh).
check-recipes: deps
	@bash hack/check-recipes.sh

# Scheduler at scale: a real leader (one agent in its own process, raft with
# its bbolt log and fsync, the controllers) with 500 and then 5,000 hollow
# nodes (e2e/bench/hollow), 100,000 pods in 100 Deployments applied at once:
# pods/s bound and committed, p50/p99 creation → bound, the leader's CPU and
# memory; then, on a 3-host lab (as root), a rolling update of 50 pods 5 at
# a time with immediate stop, and the recovery from a killed host. Prints
# figures, never a test. About 4 minutes. It uses 127.0.0.61 (and .62/.63
# with -voters 3) on the default ports, plus 6061.
#   make bench-sched BENCH_SCHED_FLAGS="-nodes 5000 -pods 20000 -out sched.md"
#   make bench-sched BENCH_SCHED_FLAGS="-profile /tmp/prof -voters 3"
BENCH_SCHED_FLAGS ?=
bench-sched: build
	$(GO) run ./e2e/bench/schedbench $(BENCH_SCHED_FLAGS)
	SHOAL_BIN=$(CURDIR)/$(BIN) $(GO) test ./e2e -run '^$$' -bench BenchmarkLabRollout -benchtime 1x -count 1 -timeout 15m -v 2>&1 | grep -E 'figure|^ok|FAIL'

# Requests/s and p50/p99 with wrk on a 3-host lab to one pod: directly,
# through the virtual IP (nftables), through the userspace proxy, and
# through HAProxy in TCP mode, with keep-alive and with a new connection per
# request; each as a ratio to direct. Prints a markdown table, never a test.
# About 2 minutes.
#   make bench-lb BENCH_LB_ROUNDS=5 BENCH_LB_DURATION=10s BENCH_LB_OUT=$PWD/lb.md
bench-lb: build
	@bash hack/deps.sh
	SHOAL_BIN=$(CURDIR)/$(BIN) $(GO) test ./e2e -run '^$$' -bench BenchmarkLabLB -benchtime 1x -count 1 -timeout 15m 2>&1 | grep -vE '^(goos|goarch|pkg|cpu|PASS)'
	$(GO) test ./lb/nft -run '^$$' -bench . -benchtime 3x -count 1

# The chaos suite (issue 7, as root): SEEDS seeds of 30 s of load and faults
# on a 3-host lab, histories checked with porcupine (README, "Testing:
# chaos"). CHAOS_DURATION, CHAOS_HOSTS, CHAOS_SEED, CHAOS_FAULTS pass through.
SEEDS ?= 10
chaos: build
	CHAOS_SEEDS=$(SEEDS) SHOAL_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 0 -run 'TestChaos$$' -v ./e2e/

# Runs every Go fuzz target for FUZZTIME each (default 60s), one after the
# other: each run uses every core. A failing input is written to the
# package's testdata/fuzz/<Target>/ and stops the loop.
FUZZTIME ?= 60s
FUZZ_PKGS ?= ./api ./cluster
fuzz:
	@set -e; for pkg in $(FUZZ_PKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$f ($$pkg, $(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
		done; \
	done

proto:
	cd api && protoc -I. -I/usr/include --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative shoal.proto
	cd cluster/storepb && protoc -I. -I../../api -I/usr/include --go_out=. --go_opt=paths=source_relative --go_opt=Mshoal.proto=github.com/shoalproj/shoal/api store.proto

clean:
	rm -rf bin
