# Omega Reach. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
TOOLS := $(CURDIR)/.tools
BUF := $(TOOLS)/node_modules/.bin/buf
BUF_VERSION := 1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
CONNECT_VERSION := v1.21.1
GOLANGCI_VERSION := v2.15.0
LINT := $(TOOLS)/golangci-lint-$(GOLANGCI_VERSION)/golangci-lint

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: run
run: build build-dev ## bring up the stack and Omega Reach with the demo journey; prints where things are
	deploy/local/run.sh

.PHONY: up
up: build-dev ## start the local stack alone (Temporal + UI, Kafka, Redis, PostgreSQL)
	deploy/local/stack.sh up

.PHONY: down
down: ## stop every process make run / make up started (data stays)
	deploy/local/stack.sh down

.PHONY: status
status: ## show what the local stack runs
	deploy/local/stack.sh status

.PHONY: build
build: ## build bin/omega (api, cep, worker, receiver, migrate)
	$(GO) build -o bin/omega ./cmd/omega

.PHONY: build-dev
build-dev: ## build bin/omega-dev (Temporal server, UI and Kafka broker for the local stack; heavy when cold)
	$(GO) build -o bin/omega-dev ./cmd/omega-dev

# The packages whose code runs goroutines of its own (the CEP stage, the audit batcher, the fault
# proxy, rate limiters, readiness, backfills), and the end-to-end tests that run CEP replicas in-process, are
# also tested under the race detector.
RACE_PKGS := ./cep/ ./backfill/ ./audit/ ./internal/... ./activities/... ./worker/
RACE_E2E := TestPatterns|TestJoinAcrossReplicas|TestSharedStateHoldsNoEvents|TestCrashPoints|TestAbsenceDecidedInEventTime|TestFanOut|TestBackfill

.PHONY: test
test: check-generate breaking vet lint build-dev chromium ## everything: generated code, the wire contract, vet, unit tests, integration + e2e tests on a fresh stack, and the race detector on the concurrent parts
	deploy/local/test.sh bash -c '$(GO) test -count=1 -timeout 20m ./... && \
	  $(GO) test -race -count=1 -timeout 10m $(RACE_PKGS) && \
	  $(GO) test -race -count=1 -timeout 10m -run "^($(RACE_E2E))$$" ./e2e/'

.PHONY: chromium
chromium: ## install Debian's chromium when missing (the console's browser test; ~40 s with apt-get update)
	@command -v chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }

.PHONY: console-screenshots
console-screenshots: build-dev chromium ## the console's browser test on a fresh stack, saving each page to docs/img/console-*.png
	OMEGA_CONSOLE_SCREENSHOTS=1 deploy/local/test.sh $(GO) test -count=1 -run TestConsoleInChromium ./console/

.PHONY: console-bench
console-bench: build-dev ## each console page's server time over 100,000 audit rows (BenchmarkPages; not part of make test)
	deploy/local/test.sh $(GO) test -run '^$$' -bench Pages -benchtime 20x -count 3 ./console/

.PHONY: breaking
breaking: $(BUF) ## fail when proto/ breaks the wire contract of the previous commit (buf breaking)
	@if git rev-parse -q --verify HEAD~1 >/dev/null; then \
	  cd proto && $(BUF) breaking --against '../.git#ref=HEAD~1,subdir=proto'; \
	else echo "breaking: no previous commit in this clone (shallow?): skipped"; fi

.PHONY: test-short
test-short: ## unit tests only, no servers
	$(GO) test -short ./...

.PHONY: screenshot
screenshot: ## with make run up: start a retargeting run and save the Temporal UI's view of it in docs/img
	deploy/local/screenshot.sh

.PHONY: record-histories
record-histories: build-dev ## record one workflow history per journey shape into workflows/testdata (replayed by make test)
	OMEGA_RECORD_HISTORIES=1 deploy/local/test.sh $(GO) test -count=1 -run TestRecordHistories ./e2e

.PHONY: bench
bench: build build-dev ## the benchmarks: the CEP partition's own work per event (BenchmarkCompute, no servers) and a snapshot's (BenchmarkSnapshotPiece), then on a fresh stack (Temporal on PostgreSQL): CEP stage vs a decode ceiling, the previous engine and the obvious design (medians of 3 passes, latency at half the preloaded peak, a live ramp and latency at half its peak, memory-flat test), then the whole pipeline against Temporal's bare-workflow floor, with and without eager start, vs Temporal-only and scale-out; writes bench/results/*.md and docs/img/pipeline-latency.svg (~30 min; PIPELINE_FLAGS=-phases=floor,omega,eager for less; not part of make test)
	@mkdir -p bench/results
	$(GO) test -run '^$$' -bench Compute -benchtime 400x -count 10 ./cep/ > bench/results/cep-compute.txt
	$(GO) test -run '^$$' -bench SnapshotPiece -benchtime 10x -count 5 ./cep/ > bench/results/cep-snapshot.txt
	OMEGA_TEMPORAL_DB=postgres OMEGA_TEMPORAL_PPROF_PORT=17299 deploy/local/test.sh bash -c '$(GO) run ./bench/cep -events 300000 -latency-seconds 20 > bench/results/cep.md && \
	  $(GO) run ./bench/pipeline -flush-redis $(PIPELINE_FLAGS)'
	@cat bench/results/cep.md

.PHONY: vet
vet: ## go vet
	$(GO) vet ./...

.PHONY: lint
lint: $(LINT) ## golangci-lint at the pinned version, with .golangci.yml's short list of bug finders
	$(LINT) run ./...

$(LINT):
	GOBIN=$(dir $(LINT)) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)

$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TOOLS) @bufbuild/buf@$(BUF_VERSION)

$(TOOLS)/bin/protoc-gen-go:
	GOBIN=$(TOOLS)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(TOOLS)/bin/protoc-gen-connect-go:
	GOBIN=$(TOOLS)/bin $(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(CONNECT_VERSION)

.PHONY: tools
tools: $(BUF) $(TOOLS)/bin/protoc-gen-go $(TOOLS)/bin/protoc-gen-connect-go ## install buf and the protoc plugins into .tools/ (make lint installs golangci-lint)

.PHONY: generate
generate: tools ## regenerate proto/gen from proto/ (lint first)
	cd proto && $(BUF) lint && $(BUF) generate

.PHONY: check-generate
check-generate: generate ## fail when the committed generated code differs from what make generate makes
	@git diff --exit-code --stat -- proto/gen && test -z "$$(git ls-files --others --exclude-standard -- proto/gen)" || \
		{ git status --short -- proto/gen; echo "proto/gen differs from what make generate makes: run make generate and commit"; exit 1; }

.PHONY: fuzz
FUZZTIME ?= 2m
FUZZ_TARGETS = ./event:FuzzDecode ./event:FuzzParseType ./cep:FuzzRecord ./cep:FuzzParseRule ./cep:FuzzRuleCondition ./journey:FuzzParseJourney ./journey:FuzzRender
fuzz: ## run every fuzz target for FUZZTIME (2m) and keep the corpus it grows in <pkg>/testdata/fuzz (commit it)
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  mkdir -p $$pkg/testdata/fuzz/$$name; \
	  cp -n $$($(GO) env GOCACHE)/fuzz/github.com/omegareach/omega/$${pkg#./}/$$name/* $$pkg/testdata/fuzz/$$name/ 2>/dev/null || true; \
	done

.PHONY: test-faults
test-faults: build-dev ## the fault suite in full (60 s without PostgreSQL, 30 s without Temporal, the CEP process killed at every batch step ...) on a fresh stack; writes docs/faults.md
	OMEGA_FAULTS=full OMEGA_FAULTS_REPORT=$(CURDIR)/docs/faults.md deploy/local/test.sh \
	  $(GO) test -count=1 -timeout 25m -run '^(TestFaults|TestCrashPoints)$$' -v ./e2e/

.PHONY: deploy-check
deploy-check: ## validate deploy/k8s (strictly against the Kubernetes API types) and deploy/compose
	$(GO) run ./cmd/deploycheck deploy
