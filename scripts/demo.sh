#!/usr/bin/env bash
# Install delaykit into .venv and run the main jobs on the embedded default checkpoints: streaming speech
# recognition of a WAV file with the shipped ASR model, a round trip through the shipped codec (encode to
# tokens, decode back to audio), and streaming speech synthesis of examples/script.txt with the shipped TTS model.
# The input, examples/speech.wav, is 9.7 s of espeak-ng speech at 22050 Hz (so the resampler to the codec's
# 24 kHz runs too); pass another audio file as the first argument. Results go to artifacts/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
VENV="${DELAYKIT_VENV:-.venv}"
OUT=artifacts/demo
mkdir -p "$OUT"

INPUT="${1:-examples/speech.wav}"
"$VENV/bin/delaykit" asr "$INPUT" | tee "$OUT/transcript.txt"
echo "wrote $OUT/transcript.txt (the words recognised in $INPUT)" >&2
"$VENV/bin/delaykit" codec roundtrip "$INPUT" -o "$OUT/roundtrip.wav" --force
echo "wrote $OUT/roundtrip.wav (the round trip of $INPUT)" >&2
"$VENV/bin/delaykit" tts examples/script.txt -o "$OUT/speech.wav" --seed 0 --timings "$OUT/speech.timings.json" --force
echo "wrote $OUT/speech.wav and $OUT/speech.timings.json (examples/script.txt spoken, with each word's time)" >&2
"$VENV/bin/delaykit" dialogue examples/questions.flac -o "$OUT/dialogue.wav" --seed 0 --force | tee "$OUT/dialogue.txt"
echo "wrote $OUT/dialogue.wav (the user of examples/questions.flac left, the agent's answers right)" >&2
