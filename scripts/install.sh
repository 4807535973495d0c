#!/usr/bin/env bash
# Create .venv (if missing) and install delaykit into it, editable, with the extras given as arguments.
#   bash scripts/install.sh          # runtime only
#   bash scripts/install.sh test     # + pytest, ruff and the moshi reference used as a test oracle
# torch==2.13.0 goes first: it is a CPU wheel on this kind of machine, whereas letting pip resolve a bare
# "torch" with nothing installed pulls a multi-GB CUDA build. Safe to run again: it only tops up.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${DELAYKIT_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

"${PIP[@]}" torch==2.13.0
extras="$(IFS=,; echo "$*")"
"${PIP[@]}" -e ".${extras:+[$extras]}"
if [[ ",$extras," == *",test,"* ]]; then
    # moshi pins torch<2.10, so it comes without its dependencies; its light ones are in the test extra.
    "${PIP[@]}" --no-deps moshi==0.2.13
fi
echo "installed delaykit into $VENV (extras: ${extras:-none})" >&2
