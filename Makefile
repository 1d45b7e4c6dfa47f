# z8r Makefile. `make help` lists the targets.
SHELL := /usr/bin/env bash
GO ?= go
# Tests that need real components carry build tags:
#   platform: real ZFS (zfs-fuse test nodes, the OpenZFS qemu guest)
#   kube:     a real kube-apiserver/etcd (envtest) and the snapshot-controller
#   e2e:      everything together (agents in network namespaces, controller, apiserver)
TEST_TAGS ?= platform,kube,e2e

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z0-9_.-]+:.*## /{printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build every binary into bin/.
	$(GO) build -o bin/ ./cmd/...

.PHONY: lint
lint: ## gofmt -l and go vet (all build tags, pods and scale included).
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags $(TEST_TAGS),pods,scale ./...

.PHONY: kube-tools
kube-tools: ## Build kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, etcd, kubectl and snapshot-controller into .cache/
	hack/build-kube-tools.sh

.PHONY: ozguest-image
ozguest-image: ## Build the OpenZFS qemu guest image into .cache/
	hack/ozguest/build-image.sh

.PHONY: deps
deps: ## Install the Debian packages the tests and the demo need (root).
	bash hack/install-deps.sh

.PHONY: demo
demo: deps kube-tools ## Run the main job: 3 zfs-fuse nodes, agents, controller, seed annotations, replication.
	$(GO) run ./hack/demo

.PHONY: demo-pods
demo-pods: deps kube-tools ## make demo's story through real pods: kubelet nodes, locally built images, deploy/ applied through the test bed's overlay (root).
	$(GO) run ./hack/demo-pods

.PHONY: test-unit
test-unit: ## Pure unit tests: no root, no ZFS, no apiserver.
	$(GO) test ./...

.PHONY: test
test: lint kube-tools ozguest-image controller-gen test-promrules ## Every test: unit, real ZFS, real control plane, end to end.
	$(GO) test -tags $(TEST_TAGS) -count=1 -timeout 50m ./...

# Real kubelet nodes (containerd, runc, CNI) running real pods
# (internal/testbed/kubenode, issue 12). Not part of `make test` yet.
.PHONY: test-pods
test-pods: deps kube-tools ## Kubelet nodes in network namespaces run real pods from locally built images (root).
	$(GO) test -tags pods -count=1 -timeout 15m -v ./internal/testbed/kubenode/

# A module of its own (hack/promrules/go.mod): github.com/prometheus/prometheus
# must not enter z8r's go.mod.
.PHONY: test-promrules
test-promrules: ## Check config/prometheus and config/grafana with Prometheus's rule parser and PromQL engine (docs/metrics.md).
	cd hack/promrules && $(GO) vet ./... && $(GO) test -count=1 ./...

# The crash-anywhere chaos suite (issue 15, docs/chaos.md). `make test` runs a
# short fixed-seed version; this runs a long one with a new seed (printed).
CHAOS_ITERATIONS ?= 30
CHAOS_SEED ?= $(shell date +%s)

.PHONY: chaos
chaos: deps kube-tools ## Chaos suite: CHAOS_ITERATIONS (30) seeded faults, CHAOS_SEED to replay; summary in .cache/chaos-report.md.
	@mkdir -p .cache
	$(GO) test -tags e2e -count=1 -timeout 3h -v -run '^TestChaos' ./e2e/chaos/ \
		-chaos.seed=$(CHAOS_SEED) -chaos.iterations=$(CHAOS_ITERATIONS) -chaos.report=$(CURDIR)/.cache/chaos-report.md

# Native Go fuzzing (issue 13). Each target runs FUZZTIME; what it finds that
# widens coverage is copied into the package's testdata/fuzz/, which plain
# `go test` (and so `make test`) replays. FUZZ narrows the targets (a regexp).
FUZZTIME ?= 10m
FUZZ ?= .

.PHONY: fuzz
fuzz: ## Fuzz every Go fuzz target for FUZZTIME (10m) each and grow the committed corpus (testdata/fuzz).
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh '$(FUZZ)'

# Code generators and install artifacts (issue 8).
CONTROLLER_GEN_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(CURDIR)/.cache/bin/controller-gen

.PHONY: controller-gen
controller-gen: ## Install controller-gen (CONTROLLER_GEN_VERSION) into .cache/bin if missing.
	@if ! "$(CONTROLLER_GEN)" --version 2>/dev/null | grep -qx 'Version: $(CONTROLLER_GEN_VERSION)'; then \
		echo "installing controller-gen $(CONTROLLER_GEN_VERSION) into .cache/bin"; \
		GOBIN=$(CURDIR)/.cache/bin $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION); \
	fi

.PHONY: manifests
manifests: controller-gen kube-tools ## Regenerate CRDs and the controller's ClusterRole from the Go markers; render deploy/z8r.yaml.
	CONTROLLER_GEN=$(CONTROLLER_GEN) hack/manifests.sh

.PHONY: generate
generate: controller-gen ## Regenerate the deepcopy functions of the API types (api/.../zz_generated.deepcopy.go).
	$(CONTROLLER_GEN) object paths=./api/...

# Container images without Docker or a registry (issue 12, docs/images.md).
.PHONY: images
images: ## Build the controller and agent images as archives in .cache/images/ (ctr -n k8s.io images import / docker load).
	$(GO) run ./hack/images -out $(CURDIR)/.cache/images

.PHONY: plugin
plugin: ## Build the kubectl plugin into bin/kubectl-z8r (put it on PATH: kubectl z8r ...).
	$(GO) build -o bin/kubectl-z8r ./cmd/kubectl-z8r

.PHONY: bench
bench: deps ## Benchmarks against real zfs-fuse nodes and agents (see docs/benchmarks.md).
	$(GO) test -tags e2e -run '^$$' -bench . -benchtime 3x -timeout 60m ./internal/agent/ ./internal/replicate/

# Scale benchmark (issue 14): 200 datasets × 2 targets on 3 nodes, 1,000
# VolumeSnapshots through the real snapshot-controller. Not part of `make test`.
.PHONY: bench-scale
bench-scale: deps kube-tools ## Controller at scale: API requests per reconcile, RSS, cycle time, VolumeSnapshot readiness p99 (docs/benchmarks.md).
	$(GO) test -tags scale -count=1 -timeout 60m -v -run '^Test(Scale_|Classify)' ./e2e/scale/
