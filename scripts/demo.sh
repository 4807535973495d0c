#!/usr/bin/env bash
# Install delaykit into .venv and run the main job on the embedded default checkpoint: a round trip of a
# WAV file through the shipped codec (encode to tokens, decode back to audio).
# The input is spoken by espeak-ng when it is installed, else a synthesized chirp; both are at 22050 Hz,
# so the resampler to the codec's 24 kHz is exercised too. Results go to artifacts/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh
VENV="${DELAYKIT_VENV:-.venv}"
OUT=artifacts/demo
mkdir -p "$OUT"

if command -v espeak-ng >/dev/null 2>&1; then
    espeak-ng -v en-us -s 160 -w "$OUT/input.wav" \
        "Delayed streams let one model listen and speak at the same time."
else
    "$VENV/bin/python" - "$OUT/input.wav" <<'PY'
import sys

import numpy as np
import soundfile

rate, seconds = 22050, 3.0
t = np.arange(int(rate * seconds)) / rate
f0, f1 = 120.0, 3000.0  # exponential chirp with a slow tremolo, at -6 dBFS
phase = 2 * np.pi * f0 * seconds / np.log(f1 / f0) * ((f1 / f0) ** (t / seconds) - 1)
signal = 0.5 * np.sin(phase) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
soundfile.write(sys.argv[1], signal.astype(np.float32), rate, subtype="PCM_16")
PY
fi

"$VENV/bin/delaykit" codec roundtrip "$OUT/input.wav" -o "$OUT/roundtrip.wav"
echo "wrote $OUT/input.wav and $OUT/roundtrip.wav" >&2
