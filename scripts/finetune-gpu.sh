#!/usr/bin/env bash
# Fine-tune the shipped ASR, TTS and dialogue LMs on one GPU for a fixed time, each from its shipped weights:
# three processes side by side (the models are small; one alone leaves most of the GPU idle). The learning rate
# decays over the time budget (decay_minutes), the forward runs under bf16 autocast, and each run keeps the
# weights of its lowest loss on a held-out corpus in best.pt, which `delaykit train export-lm RUN OUT --best`
# exports (checkpoints/README.md says what a run of this script gave and how it was measured).
#
# Usage: scripts/finetune-gpu.sh DATA RUNS MINUTES
#   DATA/init/{asr,tts,dialogue}/  the shipped checkpoints to start from (config.json, model.safetensors,
#                                  tokenizer.model; training needs no codec)
#   DATA/codes/{asr,tts,dialogue}-*.npz   training corpora (`delaykit data encode`)
#   DATA/codes/valid-{asr,tts,dialogue}.npz  held-out corpora (new sentences; for ASR and dialogue, voices
#                                  training never uses)
#   RUNS/{asr,tts,dialogue}/       run directories; RUNS/*.log their progress
# Environment: BATCH (windows per step, default 64), VALID_EVERY (steps, default 100), PYTHON, JOBS (default
# "asr tts dialogue"), DEVICE (default cuda; cpu to try the script on a few steps).
set -euo pipefail
cd "$(dirname "$0")/.."
data=$1 runs=$2 minutes=$3
python=${PYTHON:-python3}
mkdir -p "$runs"
decay=$("$python" -c "print(0.9 * $minutes)")  # of training time, which leaves out validation and checkpoints
common=(--set device="${DEVICE:-cuda}" --set precision=bf16 --set batch_size="${BATCH:-64}" --set threads=2
        --set minutes="$minutes" --set decay_minutes="$decay" --set max_steps=null --set warmup_steps=100
        --set valid_every="${VALID_EVERY:-100}" --set valid_batches=8 --set checkpoint_minutes=3)
codes() { for f in "$data"/codes/"$1"-*.npz; do printf -- '--codes\n%s\n' "$f"; done; }

train() {  # NAME CONFIG LR: one run, from DATA/init/NAME
  local name=$1 config=$2 lr=$3
  mapfile -t corpora < <(codes "$name")
  "$python" -m delaykit.cli train lm --config "$config" "${corpora[@]}" \
    --valid-codes "$data/codes/valid-$name.npz" --tokenizer "$data/init/$name/tokenizer.model" \
    --out "$runs/$name" --set warm_start=null --set init_from="$data/init/$name" --set lr="$lr" "${common[@]}" \
    > "$runs/$name.log" 2>&1
  echo "$name: exit $?" >> "$runs/status"
}

declare -A config=([asr]=configs/asr-default-stage4.toml [tts]=configs/tts-clean.toml
                   [dialogue]=configs/dialogue-default.toml)
declare -A lr=([asr]=4e-4 [tts]=5e-4 [dialogue]=5e-4)
for name in ${JOBS:-asr tts dialogue}; do
  train "$name" "${config[$name]}" "${lr[$name]}" || echo "$name: failed" >> "$runs/status" &
done
wait
cat "$runs/status"
