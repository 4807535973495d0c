"""Held-out round-trip figures of a codec: log-mel distance and SI-SNR at several codebook counts.

Each utterance of a manifest is encoded whole (offline, padded to whole frames), decoded with the first
``k`` codebooks and trimmed back to its length. Figures are means over utterances:

* ``log_mel_l1``: :class:`~delaykit.train.losses.LogMelDistance` (natural-log mel, 80 bands, window 1024),
  lower is better; ~0 for identical audio.
* ``si_snr_db``: scale-invariant SNR of the waveform, higher is better. Codecs trained without a waveform
  -exact objective can sound fine with a low SI-SNR, since phase is free.
* ``voiced_recall``: of the 10 ms frames that YIN (``delaykit.pitch``) finds voiced in the original, the share
  also voiced in the round trip (whispered speech: 0); ``f0_error_pct``: the median of ``|F0 ratio - 1|`` over
  the frames voiced in both, in percent (an octave error counts 50 or 100 %).

:func:`code_stability` measures what a model built on the codes needs: how many codes stay the same when the
audio starts a little later or is quieter. Codes that follow the waveform's fine detail change completely for
a 1 ms shift, and a recognizer trained on them memorises instead of generalising.
"""

from __future__ import annotations

import os
import typing as tp
from pathlib import Path

import numpy as np
import torch

from ..audio import load_audio
from ..codec.model import CodecModel
from ..data.round_trip import round_trip
from ..data.synth import read_manifest
from ..pitch import f0_track
from .losses import LogMelDistance, si_snr


def load_codec_checkpoint(directory: str | os.PathLike) -> CodecModel:
    """The codec of a checkpoint directory, as an eval-mode model."""
    from ..engine import load_engine

    codec = load_engine(str(directory), device="cpu").codec
    if codec is None:
        raise ValueError(f"{directory}: this checkpoint has no codec")
    return codec


@torch.no_grad()
def evaluate_codec(model: CodecModel, manifest: str | Path, count: int = 20,
                   codebooks: tp.Sequence[int] = (8, 4, 2, 1)) -> dict[int, dict[str, float]]:
    """``{k: {"log_mel_l1", "si_snr_db", "voiced_recall", "f0_error_pct"}}`` over the first ``count``
    utterances of ``manifest`` (pitch figures pooled over all their frames)."""
    model = model.eval()
    distance = LogMelDistance(model.sample_rate)
    rows = read_manifest(manifest)[:count]
    totals: dict[int, list[tuple[float, float]]] = {k: [] for k in codebooks}
    pitches: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {k: [] for k in codebooks}  # (original, recon)
    for row in rows:
        audio = torch.from_numpy(load_audio(row["path"], model.sample_rate))[None, None]  # [1, 1, T]
        length = audio.shape[-1]
        original_f0 = f0_track(audio[0, 0], model.sample_rate)  # [frames], NaN: unvoiced
        codes = model.encode(audio, max(codebooks))  # [1, K, frames]
        for k in codebooks:
            recon = model.decode(codes[:, :k])[..., :length]  # [1, 1, T]
            totals[k].append((float(distance(recon, audio)), float(si_snr(recon, audio).mean())))
            pitches[k].append((original_f0, f0_track(recon[0, 0], model.sample_rate)))
    report = {}
    for k, v in totals.items():
        original_f0 = torch.cat([o for o, _ in pitches[k]])
        recon_f0 = torch.cat([r for _, r in pitches[k]])
        voiced = torch.isfinite(original_f0)
        both = voiced & torch.isfinite(recon_f0)
        error = (recon_f0[both] / original_f0[both] - 1).abs()
        report[k] = {"log_mel_l1": float(np.mean([m for m, _ in v])), "si_snr_db": float(np.mean([s for _, s in v])),
                     "voiced_recall": round(float(both.sum() / voiced.sum().clamp_min(1)), 3),
                     "f0_error_pct": round(100 * float(error.median()), 1) if both.any() else None,
                     "utterances": len(v)}
    return report


@torch.no_grad()
def judge_codec(model: CodecModel, manifest: str | Path, judge: tp.Any, count: int = 20,
                codebooks: int | None = None) -> dict:
    """The judge's WER on the originals and on their round trips through ``model`` (``judge``: a
    :class:`~delaykit.evaluation.judge.WhisperJudge`); the issue's target is a ratio of at most 1.2."""
    from ..evaluation.wer import word_error_rate

    model = model.eval()
    rows = read_manifest(manifest)[:count]
    references, originals, round_trips = [], [], []
    for row in rows:
        audio = torch.from_numpy(load_audio(row["path"], model.sample_rate))  # [T]
        recon = round_trip(model, audio, codebooks)  # [T]
        references.append(row["text"])
        originals.append(judge.transcribe(audio.numpy(), model.sample_rate))
        round_trips.append(judge.transcribe(recon.numpy(), model.sample_rate))
    original = word_error_rate(references, originals, numbers=True).wer
    rendered = word_error_rate(references, round_trips, numbers=True).wer
    return {"utterances": len(rows), "codebooks": codebooks or model.num_codebooks,
            "judge_wer_original": round(original, 4), "judge_wer_round_trip": round(rendered, 4),
            "ratio": round(rendered / original, 3) if original > 0 else None,
            "examples": [{"reference": r, "original": o, "round_trip": t}
                         for r, o, t in list(zip(references, originals, round_trips))[:3]]}


@torch.no_grad()
def code_stability(model: CodecModel, manifest: str | Path, count: int = 20, shifts_ms: tp.Sequence[float] = (1, 10),
                   gains_db: tp.Sequence[float] = (-6,)) -> dict[str, list[float]]:
    """Share of codes, per codebook, equal to those of the unchanged audio when the audio is delayed by each
    of ``shifts_ms`` (zeros before it) or scaled by each of ``gains_db``; over the first ``count`` utterances
    of ``manifest``, frames compared by index (a shift under a frame barely moves the content)."""
    model = model.eval()
    rows = read_manifest(manifest)[:count]
    changes = {f"shift_{ms:g}ms": ("shift", ms) for ms in shifts_ms} | {f"gain_{db:+g}dB": ("gain", db)
                                                                         for db in gains_db}
    equal: dict[str, list[torch.Tensor]] = {name: [] for name in changes}
    for row in rows:
        audio = torch.from_numpy(load_audio(row["path"], model.sample_rate))[None, None]  # [1, 1, T]
        base = model.encode(audio)[0]  # [K, F]
        for name, (kind, amount) in changes.items():
            if kind == "shift":
                changed = torch.nn.functional.pad(audio, (round(amount * model.sample_rate / 1000), 0))
            else:
                changed = audio * 10 ** (amount / 20)
            codes = model.encode(changed)[0, :, :base.shape[1]]  # [K, F]
            equal[name].append((codes == base).float())  # [K, F]
    return {name: [round(float(v), 3) for v in torch.cat(parts, dim=1).mean(dim=1)] for name, parts in equal.items()}
