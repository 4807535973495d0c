"""How many speech phonemes a codec's semantic codes name: the accuracy of a fixed linear probe, by voice.

The probe is the phoneme classifier of a ``semantic_only`` codec run whose encoder never moved (its head warm-up
outlasts the run), so it has learnt only what each code of the semantic codebook means. Another run's semantic
encoder can be measured through the same probe (the codebook is shared), which is how the model card compares the
ASR model's front ends:

    delaykit train codec --config configs/codec-semantic-voices.toml --data runs/data/train-r1 \
        --out runs/codec-probe --set head_warmup_steps=100000 --set max_steps=1500 --set warmup_steps=50 \
        --set decay_steps=6000
    python scripts/phoneme_probe.py runs/codec-probe runs/data/valid [runs/codec-stage9]

DATA is a corpus whose manifest rows carry ``phonemes`` (``delaykit data synth``; with ``--flite DIR`` it is
flite's evaluation set, spoken again with its phones: for measuring only, never for training or choosing).
Accuracy counts the speech slots (4 a frame) whose class the probe names right, silence left out.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import soundfile as sf
import torch

from delaykit.audio import load_audio
from delaykit.codec.model import CodecModel
from delaykit.data.flite import flite_speech
from delaykit.data.synth import read_manifest
from delaykit.train.codec import CodecTrainConfig
from delaykit.train.phonemes import IGNORE, PhonemeInventory, PhonemeTimeline, slot_targets


def respeak_flite(source: Path, target: Path) -> None:
    """``source``'s flite sentences spoken again by the same voices, with their phones, into ``target``."""
    (target / "wavs").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, row in enumerate(read_manifest(source)):
        try:
            audio, rate, _, phonemes = flite_speech(row["text"], row["voice"].removeprefix("flite-"))
        except ValueError:  # phones and words that do not line up: left out
            continue
        sf.write(target / "wavs" / f"{i:06d}.wav", audio, rate)
        rows.append({"path": f"wavs/{i:06d}.wav", "text": row["text"], "voice": row["voice"],
                     "duration": len(audio) / rate, "phonemes": [[name, start] for name, start in phonemes]})
    (target / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def load_probe(run: Path, encoder_run: Path | None) -> tuple[CodecModel, torch.nn.Linear, PhonemeInventory, int]:
    """The probe run's codec (with ``encoder_run``'s semantic encoder when given), its classifier, classes and
    slots a frame."""
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    config = CodecTrainConfig.from_dict(state["config"])
    model = CodecModel(config.model).eval()
    model.load_state_dict(state["model"])
    if encoder_run is not None:
        other = torch.load(encoder_run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]
        model.load_state_dict({k: v for k, v in other.items() if k.startswith("semantic_encoder.")}, strict=False)
    inventory = PhonemeInventory(state["phonemes"])
    assert inventory.names == list(state["phonemes"]), "the run's classes, in its order"
    head = torch.nn.Linear(config.model.quantizer.output_dimension, config.phoneme_slots * len(inventory.names))
    head.load_state_dict(state["phoneme_head"])
    return model, head, inventory, config.phoneme_slots


@torch.no_grad()
def accuracy_by_voice(model: CodecModel, head: torch.nn.Linear, inventory: PhonemeInventory, slots: int,
                      data: Path, lookahead_frames: int = 0) -> dict[str, tuple[int, int]]:
    """(right, total) speech slots for all of ``data`` and for each voice (the part after ``+``, if any); with
    ``lookahead_frames`` = k each frame's codes are read as naming the sounds of frame t - k (an encoder trained
    with ``phoneme_lookahead_frames``)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    frame_size, rate = model.frame_size, model.sample_rate
    for row in read_manifest(data):
        if not row.get("phonemes"):
            continue
        audio = torch.from_numpy(load_audio(row["path"], rate))
        frames = audio.shape[-1] // frame_size
        codes = model.encode(audio[: frames * frame_size].reshape(1, 1, -1), 1)  # [1, 1, frames]
        semantic = model.quantizer.rvq_first.decode(codes).transpose(1, 2)  # [1, frames, D]
        predicted = head(semantic).view(frames, slots, -1).argmax(-1)  # [frames, slots]
        timeline = PhonemeTimeline(row["phonemes"], inventory)
        targets = torch.from_numpy(slot_targets(timeline, 0.0, frames, frame_size / rate, slots,
                                                frames * frame_size / rate, lookahead_frames))  # [frames, slots]
        speech = (targets != 0) & (targets != IGNORE)  # class 0 is silence; IGNORE: before the audio
        right = int((predicted == targets)[speech].sum())
        for key in ("all", row.get("voice", "?").split("+")[-1]):
            counts[key][0] += right
            counts[key][1] += int(speech.sum())
    return {key: (right, total) for key, (right, total) in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("probe_run", type=Path)
    parser.add_argument("data", type=Path, help="corpus with phonemes, or with --flite the place to write one")
    parser.add_argument("encoder_run", type=Path, nargs="?", help="measure this run's semantic encoder instead")
    parser.add_argument("--flite", type=Path, help="flite evaluation set to speak again into DATA first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lookahead", type=int, default=0,
                        help="frames the measured encoder's codes trail its sounds (phoneme_lookahead_frames)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.flite is not None and not (args.data / "manifest.jsonl").exists():
        respeak_flite(args.flite, args.data)
    model, head, inventory, slots = load_probe(args.probe_run, args.encoder_run)
    results = accuracy_by_voice(model, head, inventory, slots, args.data, args.lookahead)
    for key, (right, total) in sorted(results.items(), key=lambda item: -item[1][1]):
        print(f"{key:20s} {right / total:.3f} ({total} speech slots)")


if __name__ == "__main__":
    main()
