#!/usr/bin/env bash
# Trains the bundled model models/esm3-rs-small from the shipped data, end to end, and writes its
# model card numbers. Every step is an `esm3` command; see the README section "Training".
# Usage: tools/train-bundled-model.sh [ESM3_BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
ESM3=${1:-target/release/esm3}
[ -x "$ESM3" ] || cargo build --release
DATA=data/dataset-v1
[ -f $DATA/manifest.json ] || "$ESM3" data build --promod3 ../shared/data/promod3_structdb \
    --exclude-structures ../shared/data/structures --seed 1 -o $DATA
[ -f runs/vqvae-s1/final/structure_encoder/config.json ] || \
    "$ESM3" train vqvae configs/vqvae-small.toml -o runs/vqvae-s1
[ -f runs/vqvae-s2/final/structure_decoder/config.json ] || \
    "$ESM3" train vqvae configs/vqvae-stage2.toml -o runs/vqvae-s2 --init runs/vqvae-s1/final
[ -f runs/vqvae-s2b/final/structure_decoder/config.json ] || \
    "$ESM3" train vqvae configs/vqvae-stage2b.toml -o runs/vqvae-s2b --init runs/vqvae-s2/final
"$ESM3" data tokenize $DATA --structure-encoder runs/vqvae-s2b/final/structure_encoder
[ -f runs/esm3/final/config.json ] || "$ESM3" train esm3 configs/esm3-small.toml -o runs/esm3
[ -f runs/esm3-s2/final/config.json ] || \
    "$ESM3" train esm3 configs/esm3-small-stage2.toml -o runs/esm3-s2 --init runs/esm3/final
OUT=models/esm3-rs-small
rm -rf $OUT.new && mkdir -p $OUT.new
cp runs/esm3-s2/final/config.json runs/esm3-s2/final/model.safetensors $OUT.new/
cp -r runs/vqvae-s2b/final/structure_encoder runs/vqvae-s2b/final/structure_decoder $OUT.new/
[ -f $OUT/MODEL_CARD.md ] && cp $OUT/MODEL_CARD.md $OUT.new/
rm -rf $OUT && mv $OUT.new $OUT
"$ESM3" train evaluate --model-dir $OUT --dataset $DATA --json $OUT/evaluation.json
