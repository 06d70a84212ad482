#!/usr/bin/env bash
# Golden mkdssp output for DSSP over a whole complex: 2BEG (Aβ fibril, five chains forming one
# β-sheet across chains; NMR, first model), from ../shared/data. Needs Debian's `dssp` (mkdssp
# 4.2.2): apt-get install -y dssp. Writes fixtures/dssp/2BEG_model1_mkdssp.tsv
# (chain, residue number, insertion code, DSSP-8 with mkdssp's blank and P written as C).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/../shared/data/structures/format_pairs/biopython/2BEG.pdb.gz"
out="$root/fixtures/dssp/2BEG_model1_mkdssp.tsv"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# mkdssp needs a HEADER record and reads every model; keep model 1's ATOM/TER records.
{
  echo "HEADER    AMYLOID                                 01-JAN-00   2BEG              "
  zcat "$src" | awk '/^MODEL/{m++} m<=1 && /^(ATOM|TER)/'
  echo "END"
} > "$tmp/2beg.pdb"
mkdssp --version | head -1 >&2
mkdssp --output-format dssp "$tmp/2beg.pdb" "$tmp/2beg.dssp"
{
  printf 'chain\tresnum\ticode\tdssp8\n'
  awk 'f && substr($0,14,1) != "!" {
         ss = substr($0,17,1); if (ss == " " || ss == "P") ss = "C";
         ic = substr($0,11,1); if (ic == " ") ic = "";
         printf "%s\t%d\t%s\t%s\n", substr($0,12,1), substr($0,6,5), ic, ss
       }
       /  #  RESIDUE/ {f=1}' "$tmp/2beg.dssp"
} > "$out"
echo "wrote $out ($(($(wc -l < "$out") - 1)) residues)" >&2
