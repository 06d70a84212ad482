#!/usr/bin/env bash
# Create (or reuse) the reference Python environment for esm3-rs fixture generation.
#
#   bash tools/reference/setup.sh            # idempotent: a no-op when the venv is up to date
#   FORCE=1 bash tools/reference/setup.sh    # wipe and rebuild the venv
#
# The venv lives in tools/reference/.venv (git-ignored). Everything is installed from
# requirements.txt with --no-deps (fully pinned, see the comments in that file).
# Needs network access to PyPI only. ~6 GB on disk, ~3 minutes (see README.md).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

want="$(sha256sum "$REQ" | cut -d' ' -f1)"

check_import() {
    "$VENV/bin/python" - <<'EOF'
import esm, torch, transformers, safetensors, numpy
import esm.models.esm3, esm.models.esmc
from esm.utils.structure.protein_chain import ProteinChain  # noqa: F401
print(f"ok: esm {esm.__version__}, torch {torch.__version__}, "
      f"transformers {transformers.__version__}, numpy {numpy.__version__}")
EOF
}

if [[ "${FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    if check_import; then
        echo "setup.sh: $VENV is up to date"
        exit 0
    fi
    echo "setup.sh: existing venv is broken, rebuilding" >&2
fi

start=$(date +%s)
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade "pip==24.3.1"
"$VENV/bin/python" -m pip install --no-deps --no-cache-dir -r "$REQ"
check_import
echo "$want" > "$STAMP"
echo "setup.sh: done in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"
