#!/usr/bin/env bash
# Shows that the CI regression gate (`ternbench check`, issue 8) works; .ci/run runs it.
#
# 1. Ten unchanged runs in a row of `ternbench check --config configs/ci.toml
#    --baseline reports/baselines/ci.csv` must all pass (exit 0), and their
#    instruction counts must be identical (callgrind counts are deterministic).
#    Wall-clock speedups are informational by default; how many of them fell
#    beyond their threshold is printed.
# 2. A build with the test-only feature ternbench-kernels/slow-for-gate-test
#    (i2s-avx2's GEMV inner loop does about 3% more instructions) must fail the
#    check with exit 1, and the failing metrics must be i2s-avx2's.
#
# Needs valgrind. GATE_PROOF_RUNS overrides the ten runs (e.g. 2 for a quick try).
# The slowed binary is built into the same target directory (only the two
# project crates are recompiled) and copied out; the normal binary is rebuilt
# afterwards, so target/release/ternbench is the unchanged one at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${GATE_PROOF_RUNS:-10}
config=configs/ci.toml
baseline=reports/baselines/ci.csv
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== gate proof: building the release binary"
cargo build --release -p ternbench
cp target/release/ternbench "$work/ternbench"

echo "== gate proof: $runs unchanged runs must pass"
informational=0
for i in $(seq 1 "$runs"); do
  start=$(date +%s)
  if ! "$work/ternbench" check --config "$config" --baseline "$baseline" --out "$work/run$i" \
      >"$work/run$i.txt" 2>&1; then
    cat "$work/run$i.txt"
    echo "FAIL: unchanged run $i of $runs raised an alarm"
    exit 1
  fi
  grep '^instructions/' "$work/run$i/check.csv" | cut -d, -f1,7 >"$work/counts$i"
  if [ ! -s "$work/counts$i" ]; then
    cat "$work/run$i.txt"
    echo "FAIL: run $i counted no instructions"
    exit 1
  fi
  if ! cmp -s "$work/counts1" "$work/counts$i"; then
    diff "$work/counts1" "$work/counts$i" || true
    echo "FAIL: run $i counted different instructions than run 1"
    exit 1
  fi
  slower=$(grep -c 'slower (informational)' "$work/run$i.txt" || true)
  informational=$((informational + slower))
  echo "run $i/$runs: pass ($(wc -l <"$work/counts$i") instruction counts identical to run 1," \
    "$slower wall-clock speedups beyond threshold, $(( $(date +%s) - start )) s)"
done
if [ "$runs" -gt 0 ]; then
  cat "$work/run1.txt"
fi
echo "unchanged runs: $runs of $runs passed; informational wall-clock alarms: $informational"

echo "== gate proof: the slowed variant (ternbench-kernels/slow-for-gate-test) must fail"
cargo build --release -p ternbench --features ternbench-kernels/slow-for-gate-test
cp target/release/ternbench "$work/ternbench-slow"
cargo build --release -p ternbench
set +e
"$work/ternbench-slow" check --config "$config" --baseline "$baseline" >"$work/slow.txt" 2>&1
code=$?
set -e
cat "$work/slow.txt"
if [ "$code" != 1 ]; then
  echo "FAIL: the slowed variant exited $code; expected 1 (a regression)"
  exit 1
fi
regressions=$(grep ' REGRESSION$' "$work/slow.txt" || true)
if [ -z "$regressions" ] || echo "$regressions" | grep -qv '^instructions/i2s-avx2/'; then
  echo "FAIL: expected regressions of instructions/i2s-avx2/... only, got:"
  echo "$regressions"
  exit 1
fi
echo "slowed variant caught: $(echo "$regressions" | wc -l) regressions, all of i2s-avx2"
echo "== gate proof passed"
