#!/usr/bin/env bash
# AArch64 cross tests on an x86-64 (Debian/Ubuntu) host: builds for
# aarch64-unknown-linux-gnu and runs the kernels' test suite under qemu-user
# three times, once per emulated CPU model, so each kernel family runs where
# its instructions exist and is refused where they do not:
#   cortex-a53   Armv8.0: NEON only
#   neoverse-n1  + dotprod (sdot)
#   max          + dotprod + i8mm (smmla)
# tests/cpu_features.rs asserts the detected feature set for each model, so a
# run cannot silently fall back to a narrower path. The suite includes
# tests/lossy.rs (the NEON -lossy LUT kernels bit for bit against their scalar
# lossy kernels, and their error bound). Under each model it also runs
# `ternbench kernels` and checks the availability it reports, and that the
# lossy LUT kernels are listed, available and exact=false.
#
# Emulation proves correctness only; never quote speeds measured under qemu.
#
# Installs what it needs (apt packages, the rustup target) and fails loudly if
# an install fails. Linker and runner come from .cargo/config.toml.
# Usage: .ci/aarch64-tests.sh   (CARGO_TARGET_DIR is honoured; default: target)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=aarch64-unknown-linux-gnu
CPUS=(cortex-a53 neoverse-n1 max)
APT_PACKAGES=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  SUDO=(sudo)
fi

echo "== cross toolchain and qemu-user"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
else
  echo "already installed: ${APT_PACKAGES[*]}"
fi
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
  if ! command -v "$tool" >/dev/null; then
    echo "error: $tool not found after installing ${APT_PACKAGES[*]}" >&2
    exit 1
  fi
done
if [ ! -d /usr/aarch64-linux-gnu/lib ]; then
  echo "error: /usr/aarch64-linux-gnu/lib missing (libc6-dev-arm64-cross); qemu needs it as -L" >&2
  exit 1
fi
qemu-aarch64 --version | sed -n 1p
# (`-cpu help` exits with status 1 after printing the list.)
models=$(qemu-aarch64 -cpu help || true)
for cpu in "${CPUS[@]}"; do
  if ! grep -qw -- "$cpu" <<<"$models"; then
    echo "error: this qemu-aarch64 does not emulate the CPU model '$cpu'" >&2
    exit 1
  fi
done

echo "== rustup target $TARGET"
rustup target add "$TARGET"

echo "== build the aarch64 test binaries"
cargo test -p ternbench-kernels --target "$TARGET" --no-run

cargo build -p ternbench --target "$TARGET"

# Expected `ternbench kernels` availability per ISA column for a CPU model.
expect_isa() {
  case "$1:$2" in
    *:scalar | *:neon) echo yes ;;
    cortex-a53:dotprod | cortex-a53:i8mm | neoverse-n1:i8mm) echo no ;;
    neoverse-n1:dotprod | max:dotprod | max:i8mm) echo yes ;;
    *) echo "?" ;;
  esac
}

declare -A seconds
for cpu in "${CPUS[@]}"; do
  echo "== kernels test suite under qemu-aarch64 -cpu $cpu"
  start=$SECONDS
  QEMU_CPU=$cpu cargo test -p ternbench-kernels --target "$TARGET"
  seconds[$cpu]=$((SECONDS - start))
  # Show what was detected (the assertions already ran above).
  shown=$(QEMU_CPU=$cpu cargo test -q -p ternbench-kernels --target "$TARGET" --test cpu_features \
    detected_features_match_the_emulated_cpu -- --nocapture)
  grep -E "^(target|detected)" <<<"$shown"

  echo "== ternbench kernels under qemu-aarch64 -cpu $cpu"
  csv=$(QEMU_CPU=$cpu cargo run -q -p ternbench --target "$TARGET" -- kernels --format csv)
  QEMU_CPU=$cpu cargo run -q -p ternbench --target "$TARGET" -- kernels
  bad=0
  while IFS=, read -r name _format isa _bits _exact available; do
    [ "$name" = name ] && continue
    want=$(expect_isa "$cpu" "$isa")
    got=${available%% *}
    if [ "$want" != "?" ] && [ "$got" != "$want" ]; then
      echo "error: QEMU_CPU=$cpu: ternbench kernels says $name available=$available, expected $want" >&2
      bad=1
    fi
  done <<<"$csv"
  for isa in neon dotprod i8mm; do
    if ! grep -q ",$isa," <<<"$csv"; then
      echo "error: ternbench kernels lists no $isa kernels" >&2
      bad=1
    fi
  done
  for format in tl1 tl2 tmac; do
    for isa in scalar neon; do
      name=$format-$isa-lossy
      if ! grep -qx -- "$name,$format,$isa,[^,]*,false,yes" <<<"$csv"; then
        echo "error: QEMU_CPU=$cpu: ternbench kernels does not list $name as exact=false, available" >&2
        bad=1
      fi
    done
  done
  [ "$bad" = 0 ] || exit 1
done

for cpu in "${CPUS[@]}"; do
  echo "kernels test suite under $cpu: ${seconds[$cpu]} s (emulated; not a speed measurement)"
done
echo "== aarch64 tests passed"
