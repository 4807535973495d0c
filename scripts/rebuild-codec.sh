#!/usr/bin/env bash
# Rebuild the shipped codec (checkpoints/default, codec v3: step 1) and the two decoder candidates that were
# measured and not shipped (harmonic: step 2; adversarial: step 4) from codec v2, which scripts/rebuild-asr.sh makes
# (runs/codec-semantic-export). All three train only the decode path, so every code, and every model trained on the
# codes, is the same as with v2. About 4.5 hours on 2 CPU cores (checkpoints/README.md has the figures).
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

# 4. Another v4 candidate, measured and not shipped (2026-12-07): the shipped codec's decode path fine-tuned
#    against a multi-resolution STFT discriminator (half its default channels), decoding 4 codebooks, 55 minutes
#    on new data; then heard through `--decoder` beside the shipped decoder on the same codes.
[ -f runs/data/codec-a/manifest.jsonl ] || dk data synth --out runs/data/codec-a --hours 3 --seed 90 --random-variants 0.5
[ -f runs/data/codec-b/manifest.jsonl ] || dk data synth --out runs/data/codec-b --hours 1.5 --seed 91 --flite 0.3 \
  --festival 0.2 --reverb 0.3
dk train codec --config configs/codec-adversarial.toml --data runs/data/codec-a --data runs/data/codec-b \
  --out runs/codec-adv --minutes 55 $( [ -f runs/codec-adv/checkpoint.pt ] && echo --resume )
[ -d runs/codec-adv-export ] || dk train export-codec runs/codec-adv runs/codec-adv-export --fp16-decoder
[ -f runs/data/dialogue-heldout/manifest.jsonl ] || dk data dialogues --out runs/data/dialogue-heldout \
  --count 60 --seed 900 --split heldout
mkdir -p runs/eval/adv
for decoder in shipped adv; do
  with=$( [ $decoder = adv ] && echo "--decoder runs/codec-adv-export" || true )
  codec=$( [ $decoder = adv ] && echo runs/codec-adv-export || echo checkpoints/default )
  dk eval codec $codec --data runs/data/heldout --count 100 --codebooks 4 --judge > runs/eval/adv/codec-$decoder.json
  dk eval tts --model default-tts --data runs/data/valid --count 100 --seed 100 --asr default --threads 2 \
    --voice en-us --judge $with > runs/eval/adv/tts-$decoder-valid.json
  dk eval dialogue --model default-dialogue --data runs/data/dialogue-heldout --count 60 --threads 2 --judge \
    --agent codec $with > runs/eval/adv/dlg-ceiling-$decoder.json
  dk eval dialogue --model default-dialogue --data runs/data/dialogue-heldout --count 60 --threads 2 --judge \
    $with > runs/eval/adv/dlg-$decoder.json
done
