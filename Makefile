# Postern's one entry point. `make run` is the quickstart, `make test` is CI.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO        ?= go
CACHE     ?= $(HOME)/.cache/postern
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
GOLANGCI_VERSION := v2.15.0
GOLANGCI  := $(CACHE)/bin/golangci-lint-$(GOLANGCI_VERSION)
FUZZTIME  ?= 5s

.PHONY: all build run cluster cluster-down cluster-check test lint unit fuzz e2e conformance bench bench-scale bench-micro bench-convergence tools clean chart dockerfile-lint

all: build

build: ## build bin/postern and the demo backend bin/echo
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/postern ./cmd/postern
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/echo ./cmd/echo

run: build ## the quickstart: demo backends + postern on examples/quickstart
	./examples/quickstart/run.sh

cluster: ## a local cluster with two Nodes, left running (source .cluster/env for kubectl; make cluster-down stops it)
	./test/testbed/cluster.sh up

cluster-down: ## stop the cluster of make cluster
	./test/testbed/cluster.sh down

cluster-check: ## make cluster, used as the README says, then cluster-down (skipped if one is running)
	./test/testbed/check.sh

test: lint unit fuzz chart dockerfile-lint e2e conformance cluster-check ## everything CI runs
	@echo "make test: all checks passed"

lint: tools ## gofmt, go vet, golangci-lint
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	  if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags e2e,chart ./...
	$(GOLANGCI) run --build-tags e2e,chart ./...
	cd test/conformance && $(GO) vet -tags conformance ./... && $(GOLANGCI) run --build-tags conformance ./...

unit: ## unit and integration tests, with the race detector (the proxy's over every engine)
	$(GO) test -race -count=1 ./...

fuzz: ## run every native fuzz target briefly ($(FUZZTIME) each; a run lost to Go's fuzztime race is run again)
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./test/fuzz/run.sh

chart: ## helm lint and helm template of charts/postern with each ci/*-values.yaml, and checks of what they render (helm built once, cached)
	helm="$$(./test/chart/helm.sh)"; POSTERN_HELM="$$helm" $(GO) test -tags chart -count=1 ./test/chart

dockerfile-lint: tools ## BuildKit's own Dockerfile checks, offline; the Dockerfile's go build line is the Makefile's, and builds
	cd test/dockerfile && $(GO) vet ./... && $(GOLANGCI) run ./... && $(GO) test -count=1 ./...

e2e: ## end-to-end tests on the cluster of make cluster: real control plane + two Nodes (built once, cached)
	./test/e2e/run.sh

conformance: ## the Gateway API conformance suite v1.6.3 (GATEWAY-HTTP, GATEWAY-GRPC) on the test cluster; the report goes to test/conformance/reports/
	./test/conformance/run.sh

bench-convergence: ## API write -> routed request, 1,000 Ingresses, real kube-apiserver
	./test/bench/convergence.sh

bench: ## Postern vs nginx, HAProxy, Caddy, Traefik: req/s, latency, CPU/request, RSS (QUICK=1 for a short run; POSTERN_BASELINE=<rev> adds Postern built at rev)
	./test/bench/peers/run.sh

bench-scale: build ## build time, table size, lookup cost at 1k/10k/50k Ingresses; binary start-to-ready at 10k
	$(GO) run ./test/bench/scale -postern $(BIN)/postern

bench-micro: ## micro-benchmarks (routing lookup, balancers, handler)
	$(GO) test -run '^$$' -bench . -benchmem ./proxy/...

tools: $(GOLANGCI)

$(GOLANGCI):
	@mkdir -p $(CACHE)/bin
	GOBIN=$(CACHE)/bin.tmp $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	mv $(CACHE)/bin.tmp/golangci-lint $(GOLANGCI)
	rmdir $(CACHE)/bin.tmp

clean:
	rm -rf $(BIN)
