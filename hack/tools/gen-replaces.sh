#!/usr/bin/env bash
# gen-replaces.sh prints the replace block of hack/tools/go.mod: k8s.io/kubernetes' own
# go.mod replaces its staging modules with ./staging/src/k8s.io/X, which only work inside
# its repository, so the tools module points each one at the published k8s.io/X module
# of the matching v0 version.
#
#   hack/tools/gen-replaces.sh [v1.37.2]
#
# Paste the output over the replace block in go.mod, then run `go mod tidy` in hack/tools.
set -euo pipefail

version=${1:-v1.37.2}
staging=v0.${version#v1.}
mod=$(GOWORK=off GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$version" |
	sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')

echo "// One line per staging module of k8s.io/kubernetes $version (its go.mod points them"
echo "// at ./staging/...); regenerate with hack/tools/gen-replaces.sh."
echo "replace ("
awk -v v="$staging" '$2 == "=>" && $3 ~ /^\.\/staging\// { printf "\t%s => %s %s\n", $1, $1, v }' "$mod"
echo ")"
