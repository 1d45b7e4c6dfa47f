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
lint: ## gofmt -l and go vet (all build tags).
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags $(TEST_TAGS) ./...

.PHONY: kube-tools
kube-tools: ## Build kube-apiserver, etcd, kubectl and snapshot-controller into .cache/
	hack/build-kube-tools.sh

.PHONY: test-unit
test-unit: ## Pure unit tests: no root, no ZFS, no apiserver.
	$(GO) test ./...

.PHONY: test
test: lint kube-tools ## Every test: unit, real ZFS, real control plane, end to end.
	$(GO) test -tags $(TEST_TAGS) -count=1 -timeout 50m ./...
