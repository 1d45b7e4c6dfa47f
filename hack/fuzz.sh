#!/usr/bin/env bash
# Runs every native Go fuzz target of the module for FUZZTIME each (default
# 10m), one after the other, then copies the corpus each run grew (kept by
# `go test` under GOCACHE/fuzz) into the package's testdata/fuzz/<Target>/,
# where plain `go test` (and so `make test`) replays every entry as a seed.
#
#   FUZZTIME=10m hack/fuzz.sh                 # every target
#   FUZZTIME=30s hack/fuzz.sh FuzzPolicyCheck # targets whose name matches
#
# FUZZ_PARALLEL (default 1) is the number of fuzzing workers per target: the
# machines are small and shared. A crash makes `go test` write the failing
# input to testdata/fuzz/<Target>/ itself and this script exit non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10m}
FUZZ_PARALLEL=${FUZZ_PARALLEL:-1}
filter=${1:-.}
module=$(go list -m)
cache="$(go env GOCACHE)/fuzz"
failed=0

# "<package dir> <Target>" for every fuzz target in a tracked test file.
targets=$(git ls-files '*_test.go' | xargs grep -H '^func Fuzz[A-Za-z0-9_]*(' |
	sed -E 's#^(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#; s#^[^/ ]*_test\.go:func (Fuzz[A-Za-z0-9_]*)\(.*#. \1#' |
	sort -u)

while read -r dir target; do
	[[ -n "$target" && "$target" =~ $filter ]] || continue
	echo "== $dir $target ($FUZZTIME)"
	if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -parallel "$FUZZ_PARALLEL" "./$dir"; then
		echo "FAIL: $dir $target (the failing input is in $dir/testdata/fuzz/$target/)"
		failed=1
	fi
	pkg=$module/$dir
	[[ "$dir" == "." ]] && pkg=$module
	src="$cache/$pkg/$target"
	if [[ -d "$src" ]]; then
		mkdir -p "$dir/testdata/fuzz/$target"
		cp -n "$src"/* "$dir/testdata/fuzz/$target/" 2>/dev/null || true
		echo "   corpus: $(ls "$dir/testdata/fuzz/$target" | wc -l) entries in $dir/testdata/fuzz/$target"
	fi
done <<<"$targets"
exit $failed
