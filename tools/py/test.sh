#!/usr/bin/env bash
# Builds the esm3rs wheel, installs it into a brand-new venv and runs its pytest suite there.
#
#   bash tools/py/test.sh            # dev-profile wheel (reuses `cargo test`'s dependency builds)
#   ESM3_WHEEL_PROFILE=release bash tools/py/test.sh
#
# The build tools (maturin, pytest, numpy) live in tools/py/.venv; the wheel is tested in
# target/py-test-venv, created afresh each run, so it proves that `pip install` of the wheel
# alone works. Optional extras are used when present: the reference `esm` SDK
# (tools/reference/.venv) for the SDK conversions, ray for the Ray example.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
profile="${ESM3_WHEEL_PROFILE:-dev}"
tools="tools/py/.venv"
if [ ! -x "$tools/bin/maturin" ]; then
    python3 -m venv "$tools"
    "$tools/bin/pip" install -q "maturin>=1.5,<2" pytest numpy
fi
rm -rf target/wheels-test
"$tools/bin/maturin" build -q -m crates/esm3-py/Cargo.toml --profile "$profile" --out target/wheels-test
# The CLI the answers are checked against, from the same sources and profile.
if [ -z "${ESM3_BIN:-}" ]; then
    cargo build -q -p esm3-cli
    export ESM3_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/esm3"
fi
venv="target/py-test-venv"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q target/wheels-test/esm3rs-*.whl pytest
# Run from outside the source tree so the installed wheel is what gets imported.
cd crates/esm3-py/tests
export ESM3_REPO="$root"
"$root/$venv/bin/python" -m pytest -q -rs "$@"
# The SDK conversions need `esm` and torch: run them with the reference venv where it exists
# (tools/reference/setup.sh, plus pytest), the wheel installed beside it in a folder of its own.
ref="$root/tools/reference/.venv/bin/python"
if [ -x "$ref" ] && [ $# -eq 0 ]; then
    rm -rf "$root/target/py-test-sdk"
    "$root/$venv/bin/pip" install -q --no-deps --target "$root/target/py-test-sdk" "$root"/target/wheels-test/esm3rs-*.whl
    if "$ref" -c "import pytest" 2>/dev/null; then
        PYTHONPATH="$root/target/py-test-sdk" "$ref" -m pytest -q -rs test_sdk.py
    else
        echo "SKIPPED test_sdk.py with the reference venv: no pytest there ($ref -m pip install pytest)"
    fi
fi
# The Ray example on a local Ray instance, where the build venv has ray (pip install 'ray[data]'
# pyarrow into tools/py/.venv); a plain CI machine skips it.
if [ $# -eq 0 ] && "$root/$tools/bin/python" -c "import ray, pyarrow" 2>/dev/null; then
    "$root/$tools/bin/pip" install -q --force-reinstall --no-deps "$root"/target/wheels-test/esm3rs-*.whl
    "$root/$tools/bin/python" -m pytest -q -rs test_ray.py
fi
