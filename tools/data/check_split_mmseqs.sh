#!/usr/bin/env bash
# Independent check of a dataset's split (dev only, not in CI): mmseqs2 easy-search of the held-out
# splits (test, valid, external) against train, counting hits with >= 30 % identity and >= 50 %
# coverage. Needs Debian's mmseqs2 (apt-get install -y mmseqs2).
#
#   tools/data/check_split_mmseqs.sh data/dataset-v1 [THREADS]
#
# Two coverage readings are counted: both sequences covered >= 50 % (mmseqs --cov-mode 0) and the
# shorter one covered >= 50 % (our link criterion: max(qcov, tcov) when the shorter is covered).
# mmseqs identity (fident) is matches over alignment columns, as ours. Expected: ~0 for both.
set -euo pipefail
dir=${1:?usage: $0 DATASET_DIR [THREADS]}
threads=${2:-2}
command -v mmseqs >/dev/null || { echo "mmseqs not found: apt-get install -y mmseqs2" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for split in test valid external excluded; do
  q="$dir/$split.fasta"
  [ -s "$q" ] || continue
  mmseqs easy-search "$q" "$dir/train.fasta" "$tmp/$split.m8" "$tmp/work" \
    --threads "$threads" -s 7.5 -e 0.001 --min-seq-id 0.3 --max-seqs 1000 \
    --format-output query,target,fident,alnlen,qstart,qend,qlen,tstart,tend,tlen,evalue,bits \
    >"$tmp/$split.log" 2>&1 || { cat "$tmp/$split.log" >&2; exit 1; }
  awk -F'\t' -v name="$split" '
    { qcov = ($6 - $5 + 1) / $7; tcov = ($9 - $8 + 1) / $10
      short = ($7 <= $10) ? qcov : tcov
      if ($3 >= 0.3 && qcov >= 0.5 && tcov >= 0.5) both++
      if ($3 >= 0.3 && short >= 0.5) { shorter++; if (shown < 5) { print "  " $0; shown++ } } }
    END { printf "%s vs train: %d hits >= 30%% id with both covered >= 50%%; %d with the shorter covered >= 50%%\n", name, both + 0, shorter + 0 }
  ' "$tmp/$split.m8"
done
