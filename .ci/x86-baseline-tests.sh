#!/usr/bin/env bash
# Proves the runtime dispatch never executes AVX/AVX2/AVX-512 code on a CPU
# without them: the kernels' tests and the ternbench binary run under
# `qemu-x86_64 -cpu Nehalem` (SSE4.2, no AVX). kernels/tests/cpu_features.rs
# asserts that only scalar kernels are offered there and that calling a SIMD
# kernel directly panics instead of dying of SIGILL.
# Installs qemu-user if missing; fails loudly otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

if ! command -v qemu-x86_64 >/dev/null; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo); fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y qemu-user
fi
command -v qemu-x86_64 >/dev/null || { echo "error: qemu-x86_64 not found after installing qemu-user" >&2; exit 1; }
QEMU=(qemu-x86_64 -cpu Nehalem)

echo "== kernels tests under ${QEMU[*]}"
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="${QEMU[*]}" TERNBENCH_EXPECT_CPU=nehalem \
  cargo test -p ternbench-kernels --lib --test cpu_features --test exactness -- --nocapture 2>&1 \
  | grep -E "^(detected|  [a-z0-9_]+-|test result|test .*(ok|FAILED)$)"
# (the pipe hides cargo's status; run again quietly to get it)
CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="${QEMU[*]}" TERNBENCH_EXPECT_CPU=nehalem \
  cargo test -q -p ternbench-kernels --lib --test cpu_features --test exactness >/dev/null

echo "== ternbench under ${QEMU[*]}"
cargo build -q -p ternbench
bin=$CARGO_TARGET_DIR/debug/ternbench
"${QEMU[@]}" "$bin" kernels
if "${QEMU[@]}" "$bin" kernels --format csv | awk -F, 'NR > 1 && $3 != "scalar" && $6 == "yes"' | grep -q .; then
  echo "error: a SIMD kernel is listed as available on Nehalem" >&2
  exit 1
fi
# A small read probe: by default it reads 8x the last-level cache, which
# under emulation takes minutes where the LLC is hundreds of MiB.
TERNBENCH_PROBE_MIB=64 "${QEMU[@]}" "$bin" layer --kernel all --shape 64x300 --batch 1,3 --reps 2 --warmup-ms 1 --min-sample-ms 1 >/dev/null
set +e
err=$("${QEMU[@]}" "$bin" layer --kernel i2s-avx2 --shape 8x8 2>&1 >/dev/null)
code=$?
set -e
if [ "$code" != 2 ] || ! grep -q "avx2" <<<"$err"; then
  echo "error: asking for i2s-avx2 on Nehalem gave exit $code: $err" >&2
  exit 1
fi
echo "refused as expected: $err"
echo "== x86 baseline (Nehalem) tests passed"
