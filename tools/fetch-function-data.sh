#!/usr/bin/env bash
# Fetches the function-annotation data files (keyword vocabulary, IDF, InterPro→keyword map,
# InterPro entry list and hierarchy) from the official `esm` wheel on PyPI into data/function/.
#
# The wheel is pinned by version and sha256; only the five data files (and the wheel's licence,
# the Cambrian Open License, which covers them) are extracted. Nothing is committed: data/ is
# git-ignored. Idempotent: exits at once when the files are already there.
#
# Usage: tools/fetch-function-data.sh [DEST]   (default DEST: data/function under the repo root)
set -euo pipefail

VERSION="3.2.1.post1"
WHEEL="esm-${VERSION}-py3-none-any.whl"
SHA256="94aa1cfc9876124ade08d951da7252f03b8a26fd7ac87d05e52d36c2e94865ec"
FILES=(
  keyword_vocabulary_safety_filtered_58641.txt
  keyword_idf_safety_filtered_58641.npy
  interpro_29026_to_keywords_58641.csv
  entry_list_safety_29026.list
  ParentChildTreeFile.txt
)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="${1:-$root/data/function}"

complete=1
for f in "${FILES[@]}" LICENSE.md; do
  [[ -s "$dest/$f" ]] || complete=0
done
if [[ $complete == 1 ]]; then
  echo "function data already present in $dest"
  exit 0
fi

python="${PYTHON:-python3}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "esm==${VERSION}"
echo "${SHA256}  $tmp/${WHEEL}" | sha256sum --check --quiet - || {
  echo "error: $WHEEL does not have the pinned sha256 ${SHA256}" >&2
  exit 1
}
mkdir -p "$dest"
# A wheel is a zip; Python's zipfile is always there, unzip may not be.
"$python" - "$tmp/$WHEEL" "$dest" "${FILES[@]}" <<'PY'
import sys, zipfile
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with open(f"{dest}/{name}", "wb") as out:
            out.write(z.read(f"esm/data/{name}"))
    lic = [n for n in z.namelist() if n.endswith(".dist-info/licenses/LICENSE.md")]
    with open(f"{dest}/LICENSE.md", "wb") as out:
        out.write(z.read(lic[0]))
PY
echo "function data from esm ${VERSION} written to $dest"
