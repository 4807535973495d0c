#!/usr/bin/env bash
# Rebuild the shipped codec (checkpoints/default, codec v3: step 1) and the harmonic-decoder candidate that was
# measured and not shipped (v4: step 2) from codec v2, which scripts/rebuild-asr.sh makes
# (runs/codec-semantic-export). Both train only the decode path, so every code, and every model trained on the
# codes, is the same as with v2. About 2.7 hours on 2 CPU cores (checkpoints/README.md has the figures).
# Needs: bash scripts/install.sh test, runs/data/train-{a,e,h} and runs/data/heldout, runs/codec-semantic-export.
set -euo pipefail
cd "$(dirname "$0")/.."
dk() { python -m delaykit.cli "$@"; }
data="--data runs/data/train-a --data runs/data/train-e --data runs/data/train-h"
mkdir -p runs/eval

# 1. Codec v3: a spectral decoder (inverse STFT) in place of v2's SEANet decoder, 80 minutes.
dk train codec --config configs/codec-spectral.toml --set init_from=runs/codec-semantic-export $data \
  --out runs/codec-spectral --minutes 80 $( [ -f runs/codec-spectral/checkpoint.pt ] && echo --resume )
[ -d runs/codec-spectral-export ] || dk train export-codec runs/codec-spectral runs/codec-spectral-export

# 2. Codec v4 candidate: the harmonic-plus-noise decoder, its trunk from v3, 78 minutes; the decode path stored in fp16.
dk train codec --config configs/codec-harmonic.toml --set init_from=runs/codec-spectral-export $data \
  --out runs/codec-harmonic --minutes 78 $( [ -f runs/codec-harmonic/checkpoint.pt ] && echo --resume )
[ -d runs/codec-harmonic-export ] || dk train export-codec runs/codec-harmonic runs/codec-harmonic-export --fp16-decoder

# 3. Figures: spectrum, pitch and the judge's WER on 30 held-out utterances, v3 and v4 in one session.
for version in spectral harmonic; do
  dk eval codec "runs/codec-$version-export" --data runs/data/heldout --count 30 --codebooks 8,4 --judge \
    > "runs/eval/codec-$version-heldout30.json"
done
