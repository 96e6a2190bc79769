#!/usr/bin/env bash
# Packages every crate of the workspace as crates.io would receive it and builds each one from its package
# alone, so that a file a crate reads from outside its own folder (an `include_str!` of `../../..`), a file
# left out of the package or missing metadata fails here, not at publish time. Cargo >= 1.90 verifies crates
# that depend on each other through a temporary local registry, so nothing needs to be on crates.io first.
# Slow (a clean build of every crate); not part of .ci/run. Extra arguments go to `cargo package`
# (e.g. --allow-dirty to check uncommitted changes).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(cargo --version)
minor=$(sed -E 's/^cargo 1\.([0-9]+).*/\1/' <<<"$version")
if ! [[ $minor =~ ^[0-9]+$ ]] || ((minor < 90)); then
    echo "release-check: needs cargo >= 1.90 to verify the workspace's crates together (have: $version)" >&2
    exit 2
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
status=0
cargo package --workspace "$@" 2>&1 | tee "$log" || status=$?
elapsed=$((SECONDS - start))
packaged=$(grep -c '^ *Packaged ' "$log" || true)
verified=$(grep -c '^ *Verifying ' "$log" || true)
if ((status == 0)); then
    echo "release-check: PASS: $packaged crates packaged, $verified verified, in ${elapsed} s ($version)"
else
    echo "release-check: FAIL (cargo package exit $status) after ${elapsed} s: $packaged crates packaged, $verified verifying started; see above"
    exit 1
fi
