#!/usr/bin/env bash
# Rebuild the shipped codec (checkpoints/default, codec v3: step 1) and the candidates that were measured and not
# shipped (harmonic decoder: step 2; adversarial decoder: step 4; log-mel acoustic encoder: step 5) from codec v2,
# which scripts/rebuild-asr.sh makes (runs/codec-semantic-export). Steps 1-4 train only the decode path, so every
# code, and every model trained on the codes, is the same as with v2; step 5 keeps the first codebook's codes only.
# About 6 hours on 2 CPU cores (checkpoints/README.md has the figures).
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

# 5. Codec v4 candidate, measured, better on every set, not yet shippable (2026-12-07): v3 with a log-mel acoustic
#    encoder in place of SEANet and 4 codebooks, semantic side frozen, 75 minutes; then judged beside v3 on four
#    sets (the TTS and dialogue models speak v3's acoustic codes: shipping it means fine-tuning them on its codes).
[ -f runs/data/tts-open-l/manifest.jsonl ] || dk data synth --out runs/data/tts-open-l --hours 7 --seed 46 --clean \
  --voices en-us+f2,en-us,en-us+m3,en-gb+f3 --vocabulary open
[ -f runs/data/tts-open-m/manifest.jsonl ] || dk data synth --out runs/data/tts-open-m --hours 7 --seed 47 --clean \
  --voices en-us+f2,en-us,en-us+m3,en-gb+f3 --vocabulary open
[ -f runs/data/tts-open-m/en-us-100.jsonl ] || grep '"voice": "en-us"' runs/data/tts-open-m/manifest.jsonl \
  | head -100 > runs/data/tts-open-m/en-us-100.jsonl
[ -f runs/data/f2-eval/manifest.jsonl ] || dk data synth --out runs/data/f2-eval --hours 0.1 --seed 994 \
  --split heldout --voices en-us+f2 --clean --workers 1
[ -f runs/data/kal16-eval/manifest.jsonl ] || dk data synth --out runs/data/kal16-eval --hours 0.2 --seed 993 \
  --split heldout --voices flite:kal16 --clean --workers 1
dk train codec --config configs/codec-mel.toml --data runs/data/codec-a --data runs/data/codec-b \
  --data runs/data/tts-open-l --out runs/codec-mel --minutes 75 $( [ -f runs/codec-mel/checkpoint.pt ] && echo --resume )
[ -d runs/codec-mel-export ] || dk train export-codec runs/codec-mel runs/codec-mel-export --fp16-decoder
mkdir -p runs/eval/mel
for set in heldout:runs/data/heldout f2:runs/data/f2-eval kal16:runs/data/kal16-eval \
    enus:runs/data/tts-open-m/en-us-100.jsonl; do
  for codec in mel:runs/codec-mel-export v3:checkpoints/default; do
    dk eval codec "${codec#*:}" --data "${set#*:}" --count 100 --codebooks 4 --judge \
      > "runs/eval/mel/${codec%%:*}-${set%%:*}.json"
  done
done
