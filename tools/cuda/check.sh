#!/usr/bin/env bash
# CI's check that `--features cuda` still compiles: installs the toolkit of setup.sh (once) and
# type-checks the whole workspace with the CUDA backend, no GPU needed. candle-kernels' build
# script compiles its PTX with the toolkit's nvcc, so the CUDA kernels are compiled too; only
# the final link (done by build.sh) is left out. Output in target/cuda-check/.
#   bash tools/cuda/check.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
if [ ! -f "$here/.venv/env.sh" ]; then
    bash "$here/setup.sh"
fi
# shellcheck disable=SC1091
source "$here/.venv/env.sh"
cd "$repo"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/cuda-check}"
cargo check --workspace --features esm3-cli/cuda
echo "cuda check: the workspace compiles with --features esm3-cli/cuda"
