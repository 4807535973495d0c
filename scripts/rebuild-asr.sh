#!/usr/bin/env bash
# Rebuild the shipped codec and ASR model from nothing (checkpoints/README.md has the figures and timings).
# About 4 hours on 2 CPU cores; every step skips work whose output exists, and training steps resume.
# Needs: bash scripts/install.sh test, and apt-get install espeak-ng flite.
set -euo pipefail
cd "$(dirname "$0")/.."
dk() { python -m delaykit.cli "$@"; }
mkdir -p runs/data runs/codes2 runs/tokenizer runs/eval

# 1. Speech: 4 h x 3 of espeak-ng, 1.5 h with flite's kal voices and room reverberation, and the held-out sets.
for part in "a 10" "b 11" "c 12"; do
  set -- $part
  [ -f "runs/data/train-$1/synth_config.json" ] || dk data synth --out "runs/data/train-$1" --hours 4 --seed "$2"
done
[ -f runs/data/train-e/synth_config.json ] ||
  dk data synth --out runs/data/train-e --hours 1.5 --seed 14 --flite 0.4 --reverb 0.3
[ -f runs/data/heldout/synth_config.json ] || dk data synth --out runs/data/heldout --hours 0.3 --seed 1 --split heldout
[ -f runs/data/flite/manifest.jsonl ] || dk data flite --out runs/data/flite --count 60

# 2. Codec: the first codec (4116 steps on 3 h of seed-0 speech: checkpoints/README.md, "codec v1"), then
#    its semantic encoder and phonetic codebook on top (configs/codec-semantic.toml, init_from = that codec).
[ -f runs/data/train/synth_config.json ] || dk data synth --out runs/data/train --hours 3 --seed 0
if [ ! -f runs/codec-v1-export/config.json ]; then
  dk train codec --data runs/data/train --out runs/codec --set max_steps=4116 --set lr=8e-4 \
    --set model.quantizer.decay=0.95 --set decay_steps=3300 --set warmup_steps=150 --set quantize_after=200 \
    --set quantize_ramp=300 --set log_every=20 $( [ -f runs/codec/checkpoint.pt ] && echo --resume )
  dk train export-codec runs/codec runs/codec-v1-export
fi
dk train codec --config configs/codec-semantic.toml --set init_from=runs/codec-v1-export --data runs/data/train-a \
  --out runs/codec-semantic --minutes 45 $( [ -f runs/codec-semantic/checkpoint.pt ] && echo --resume )
dk train export-codec runs/codec-semantic runs/codec-semantic-export

# 3. Codes and tokenizer.
for part in a b c e; do
  [ -f "runs/codes2/train-$part.npz" ] ||
    dk data encode --data "runs/data/train-$part" --codec runs/codec-semantic-export --out "runs/codes2/train-$part.npz"
done
[ -f runs/tokenizer/bpe1500.model ] ||
  dk train tokenizer --data runs/data/train-a --data runs/data/train-b --data runs/data/train-c --out runs/tokenizer/bpe1500.model

# 4. The recognizer, then its figures.
dk train lm --config configs/asr-default.toml --codes runs/codes2/train-a.npz --codes runs/codes2/train-b.npz \
  --codes runs/codes2/train-c.npz --codes runs/codes2/train-e.npz --tokenizer runs/tokenizer/bpe1500.model \
  --out runs/asr2 --minutes 70 $( [ -f runs/asr2/checkpoint.pt ] && echo --resume )
dk train export-lm runs/asr2 runs/asr2-export --fp16
dk eval asr --model runs/asr2-export --data runs/data/heldout > runs/eval/asr2-heldout.json
dk eval asr --model runs/asr2-export --data runs/data/flite > runs/eval/asr2-flite.json
