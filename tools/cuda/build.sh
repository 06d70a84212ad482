#!/usr/bin/env bash
# Builds `esm3` with the CUDA backend against the toolkit of tools/cuda/setup.sh (run first):
#   bash tools/cuda/setup.sh && bash tools/cuda/build.sh [extra cargo args, e.g. --tests]
# Output goes to target/cuda/ so the CPU build in target/ is left alone. CUDA_COMPUTE_CAP (default
# 90: H100/H200) picks the GPU generation candle-kernels compiles for. On a GPU machine, run the
# result with LD_LIBRARY_PATH=$CUDA_ROOT/lib so cuBLAS/nvrtc/cuRAND come from the same wheels.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[ -f "$here/.venv/env.sh" ] || { echo "build.sh: run tools/cuda/setup.sh first" >&2; exit 1; }
# shellcheck disable=SC1091
source "$here/.venv/env.sh"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/cuda}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$ESM3_CUDA_LINK_DIR"
cargo build --release --features esm3-cli/cuda "$@"
